"""Which queries need a model, and which runtime embeds them: stored images embed nothing, the ONNX export
answers like torch, a store without one falls back to torch and says how to make it fast, and a search
with the export never imports torch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from _helpers import TINY_MODEL, RecordingReporter

from vecmetric.query import like_query, parse_arguments, search_store
from vecmetric.runtime import model_dir


def without_export(store):
    shutil.rmtree(model_dir(store), ignore_errors=True)  # embed may write one; these tests decide for themselves
    return store


def with_export(store, exported, spec):
    _, info = exported(spec)
    without_export(store)
    shutil.copytree(info.folder, model_dir(store))
    return store


@pytest.fixture
def tiny_store(image_folder, tmp_path):
    """image_folder (3 classes x 4) embedded with the tiny model, indexed, without an export."""
    from vecmetric.index import build_index
    from vecmetric.store import embed_directory, open_store

    store = tmp_path / "store"
    embed_directory(image_folder, store, model=TINY_MODEL, device="cpu", precision="fp32", workers=0)
    build_index(open_store(store))
    return without_export(store)


def test_stored_images_embed_nothing(tiny_store, image_folder, no_model, monkeypatch):
    stored = sorted(image_folder.rglob("*.png"))
    monkeypatch.chdir(image_folder)
    queries = parse_arguments([str(stored[1])], like="3") + parse_arguments(["@" + str(stored[5]), "+", "2:class_02/img_000.png"])
    results = search_store(tiny_store, queries, k=4)
    assert [len(r) for r in results] == [4, 4, 4]
    assert all(not t.embedded for r in results for t in r.terms)
    own = [{3}, {1}, {5, 8}]
    for result, ids in zip(results, own):
        assert {t.row_id for t in result.terms} == ids and not ids & {h.id for h in result}


def test_a_changed_stored_file_is_embedded_afresh(tiny_store, image_folder, tiny_encoder, monkeypatch):
    import vecmetric.runtime

    opened = []

    def recording(store, tower="image", **kwargs):
        opened.append(tower)
        return tiny_encoder

    monkeypatch.setattr(vecmetric.runtime, "open_query_encoder", recording)
    query = sorted(image_folder.rglob("*.png"))[2]
    (before,) = search_store(tiny_store, [str(query)], k=3, keep_query_images=True)
    assert opened == [] and before[0].path == str(query) and before[0].distance < 1e-6
    shutil.copy(sorted(image_folder.rglob("*.png"))[9], query)  # new content, same path
    (after,) = search_store(tiny_store, [str(query)], k=3, keep_query_images=True)
    assert opened == ["image"] and after.terms[0].embedded and after.terms[0].row_id == before[0].id
    want = tiny_encoder.embed_paths([query])[0]
    from vecmetric.index import exact_search
    from vecmetric.query._rows import read_columns
    from vecmetric.store import embeddings_to_numpy, open_store

    table = read_columns(open_store(tiny_store), ["id", "embedding"])
    ids, _ = exact_search(embeddings_to_numpy(table.column("embedding")), want[None], 3, ids=np.array(table.column("id").to_pylist()))
    assert [h.id for h in after] == ids[0].tolist()


def test_unknown_stored_rows_are_input_errors(tiny_store, no_model):
    from vecmetric.errors import InputError

    with pytest.raises(InputError, match="no stored image has id 999"):
        search_store(tiny_store, [like_query("999")])
    with pytest.raises(InputError, match="is not in the store"):
        search_store(tiny_store, [like_query("/nowhere/x.png")])


def test_onnx_and_torch_searches_agree(exported, l2_head_checkpoint, omniglot_root, mixed_images, tmp_path, monkeypatch):
    """Identical top-10 ids whether the store's export (onnxruntime) or its torch model embeds the queries;
    the torch fallback says once why and how to make it fast.

    Both sides in fp32: on a CPU with bf16 units torch would run in bf16, whose rounding swaps near-ties.
    """
    import vecmetric.encoders._device
    from vecmetric.index import build_index
    from vecmetric.store import embed_directory, open_store

    faces = sorted((omniglot_root.parent / "orl_faces").glob("s*/*.pgm"))
    if not faces:
        pytest.skip("the shared ORL faces are not there")
    (tmp_path / "db" / "faces").mkdir(parents=True)
    for face in faces[::7][:60]:
        shutil.copy(face, tmp_path / "db" / "faces" / f"{face.parent.name}-{face.name}")
    store = tmp_path / "faces-store"
    embed_directory(tmp_path / "db", store, model=l2_head_checkpoint, device="cpu", precision="fp32", workers=0)
    build_index(open_store(store))
    queries = [str(p) for p in faces[3::11][:8] + mixed_images[:2]]

    monkeypatch.setattr(vecmetric.encoders._device, "cpu_supports_bf16", lambda: False)
    torch_side = RecordingReporter()
    by_torch = search_store(without_export(store), queries, k=10, device="cpu", reporter=torch_side)
    assert len(torch_side.warnings) == 1 and f"vecmetric export --store {store}" in torch_side.warnings[0]

    onnx_side = RecordingReporter()
    by_onnx = search_store(with_export(store, exported, l2_head_checkpoint), queries, k=10, reporter=onnx_side)
    assert onnx_side.warnings == []
    assert [[h.id for h in r] for r in by_onnx] == [[h.id for h in r] for r in by_torch]
    assert all(len(r) == 10 for r in by_onnx)


def importing(args: list[str], cwd) -> tuple[set[str], subprocess.CompletedProcess]:
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "vecmetric", *args], capture_output=True, text=True, cwd=cwd, timeout=300)
    modules = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:") and line.count("|") == 2}
    return {m.split(".")[0] for m in modules}, done


def test_search_with_the_export_imports_no_torch(tiny_store, exported, image_folder, tmp_path):
    with_export(tiny_store, exported, TINY_MODEL)
    query = tmp_path / "query.png"
    shutil.copy(sorted(image_folder.rglob("*.png"))[0], query)
    os.utime(query, ns=(1, 1))  # another file than the stored one
    heavy = {"torch", "timm", "open_clip", "torchvision", "pandas"}

    packages, done = importing(["search", str(query), "--store", str(tiny_store), "--k", "3", "--json"], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "onnxruntime" in packages and "numpy" in packages  # the log is real: the export ran
    assert packages & heavy == set()
    assert [json.loads(line)["rank"] for line in done.stdout.splitlines()] == [1, 2, 3]

    packages, done = importing(["search", "--like", "0", "--store", str(tiny_store), "--k", "3", "--json"], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert packages & (heavy | {"onnxruntime", "PIL"}) == set()  # a stored image: no model, no decoding
    assert len(done.stdout.splitlines()) == 3


@pytest.mark.slow
def test_texts_and_images_in_one_query_through_the_export(exported, make_images, tmp_path):
    """'2:a red circle' + image - 'a blue square' on an open_clip store: the export's text and image towers,
    combined as numpy says, from torch's own embeddings of the same terms."""
    from vecmetric.index import build_index, exact_search
    from vecmetric.query import resolve_queries
    from vecmetric.query._rows import read_columns
    from vecmetric.runtime import open_query_encoder
    from vecmetric.store import embed_directory, embeddings_to_numpy, open_store

    clip = "open_clip:ViT-S-32-alt@random"
    encoder, _ = exported(clip)
    make_images(tmp_path / "few", classes=3, per_class=3, size=48)
    store = tmp_path / "clip-store"
    embed_directory(tmp_path / "few", store, model=clip, device="cpu", precision="fp32", workers=0)
    build_index(open_store(store))
    with_export(store, exported, clip)
    query = tmp_path / "query.png"
    shutil.copy(sorted((tmp_path / "few").rglob("*.png"))[4], query)
    queries = parse_arguments(["2:a red circle", "+", str(query), "-", "a blue square"])

    st = open_store(store)
    opened = []

    def open_encoder(tower):
        opened.append(open_query_encoder(st, tower=tower))
        return opened[-1]

    (resolved,) = resolve_queries(st, queries, metric="cosine", stored_vectors=None, open_encoder=open_encoder)
    assert [type(e).__name__ for e in opened] == ["OnnxEncoder"]
    texts, image = encoder.embed_texts(["a red circle", "a blue square"]), encoder.embed_paths([query])[0]
    t = texts / np.linalg.norm(texts, axis=1, keepdims=True)
    want = 2 * t[0] + image / np.linalg.norm(image) - t[1]
    want /= np.linalg.norm(want)
    assert float(resolved.vector @ want) >= 0.9999

    reporter = RecordingReporter()
    (result,) = search_store(store, queries, k=9, exact=True, reporter=reporter)
    assert reporter.warnings == [] and result.source == "2:a red circle + " + str(query) + " - a blue square"
    table = read_columns(st, ["id", "embedding"])
    ids, _ = exact_search(embeddings_to_numpy(table.column("embedding")), resolved.vector[None], 9, ids=np.array(table.column("id").to_pylist()))
    assert [h.id for h in result] == ids[0].tolist()
