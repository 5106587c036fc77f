"""``embed_directory(engine="ray")`` keeps a store exactly as the local engine does, on a loopback Ray instance.

The truth is the local engine on the same folder (same runtime: torch fp32 on the CPU), compared
by path: Ray hands rows over in completion order, so row ids may differ.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from vecmetric.store import embed_directory, open_store
from vecmetric.verify import verify_store


def rows_by_path(store_path) -> dict[str, dict]:
    """path -> id, hash, label, vector of a store's rows; fails on duplicate paths or ids."""
    from vecmetric.store import embeddings_to_numpy

    table = open_store(store_path).read_table()
    paths, ids = table.column("path").to_pylist(), table.column("id").to_pylist()
    assert len(set(paths)) == len(paths) and len(set(ids)) == len(ids), "duplicate paths or ids"
    vectors = embeddings_to_numpy(table.column("embedding"))
    columns = zip(paths, ids, table.column("content_hash").to_pylist(), table.column("label").to_pylist(), vectors)
    return {p: {"id": i, "hash": h, "label": lab, "vector": np.asarray(v)} for p, i, h, lab, v in columns}


def assert_same_store(got_path, want_path) -> None:
    got, want = rows_by_path(got_path), rows_by_path(want_path)
    assert sorted(got) == sorted(want)
    for path, row in want.items():
        assert (got[path]["hash"], got[path]["label"]) == (row["hash"], row["label"]), path
        np.testing.assert_allclose(got[path]["vector"], row["vector"], atol=1e-5, err_msg=path)
    skipped = [{(e["path"], e["reason"]) for e in open_store(p).read_errors()} for p in (got_path, want_path)]
    assert skipped[0] == skipped[1]
    for path in (got_path, want_path):
        report = verify_store(path)
        assert report.findings == [], [f.to_dict() for f in report.findings]


def embed(folder, store, model, engine, **kwargs):
    options = {"device": "cpu", "precision": "fp32", "batch_size": 4, "flush_rows": 5}
    if engine == "local":
        options["workers"] = 0  # no DataLoader fork from a process that holds Ray's threads
    return embed_directory(folder, store, model, engine=engine, **options, **kwargs)


def summary(result) -> tuple:
    return (result.found, result.embedded, result.reused, result.unchanged, result.removed, result.rows, len(result.skipped))


@pytest.fixture
def folder(tmp_path, make_images):
    """12 images in 3 classes, one duplicate, one at the top level (no label), and three bad files."""
    root = tmp_path / "images"
    make_images(root, classes=3, per_class=4)
    shutil.copy2(root / "class_00" / "img_000.png", root / "class_02" / "copy.png")
    shutil.copy2(root / "class_01" / "img_001.png", root / "top.png")
    (root / "class_01" / "empty.png").write_bytes(b"")
    (root / "class_01" / "text.jpg").write_bytes(b"this is not an image")
    good = (root / "class_02" / "img_000.png").read_bytes()
    (root / "class_02" / "half.png").write_bytes(good[: len(good) // 2])
    return root


def test_a_ray_store_equals_a_local_store_then_after_an_update(ray_loopback, small_model, folder, tmp_path, make_images):
    local, ray = tmp_path / "local", tmp_path / "ray"
    first = {engine: embed(folder, store, small_model, engine) for engine, store in (("local", local), ("ray", ray))}
    assert summary(first["ray"]) == summary(first["local"]) == (17, 14, 0, 0, 0, 14, 3)
    assert_same_store(ray, local)

    # add two files, change one, rename one, delete one
    make_images(folder / "class_03", classes=1, per_class=2, seed=7)
    changed = folder / "class_00" / "img_001.png"
    changed.write_bytes((folder / "class_01" / "img_003.png").read_bytes())  # new content, a hash the store holds
    os.utime(changed, ns=(10**9, 10**9))
    (folder / "class_02" / "img_002.png").rename(folder / "class_02" / "renamed.png")
    (folder / "class_00" / "img_003.png").unlink()
    again = {engine: embed(folder, store, small_model, engine) for engine, store in (("local", local), ("ray", ray))}
    # 2 new files, 1 changed and 1 renamed planned (the last two reuse stored vectors), the bad files again
    assert summary(again["ray"]) == summary(again["local"]) == (18, 2, 2, 11, 2, 15, 3)
    assert_same_store(ray, local)

    unchanged = embed(folder, ray, small_model, "ray")  # only the bad files are tried again
    assert summary(unchanged) == (18, 0, 0, 15, 0, 15, 3)
    assert_same_store(ray, local)


def test_a_store_made_by_one_engine_is_updated_by_the_other(ray_loopback, small_model, folder, tmp_path, make_images):
    store, reference = tmp_path / "store", tmp_path / "reference"
    embed(folder, store, small_model, "ray")
    make_images(folder / "class_09", classes=1, per_class=3, seed=9)
    result = embed(folder, store, small_model, "local")
    assert (result.embedded, result.unchanged) == (3, 14)
    embed(folder, reference, small_model, "local")
    assert_same_store(store, reference)


def test_an_onnxruntime_store_is_embedded_through_its_export_by_the_ray_engine(ray_loopback, small_model, folder, tmp_path, monkeypatch):
    import vecmetric.encoders as encoders

    local, ray = tmp_path / "local", tmp_path / "ray"
    embed(folder, local, small_model, "local", runtime="onnxruntime")
    result = embed(folder, ray, small_model, "ray", runtime="onnxruntime")
    assert result.runtime == "onnxruntime fp32" and open_store(ray).manifest["runtime"]["name"] == "onnxruntime"
    assert_same_store(ray, local)  # within 1e-5: the same graph made both

    (folder / "class_00" / "img_000.png").unlink()  # the next run embeds one new file, with the export only
    shutil.copy2(folder / "class_01" / "img_000.png", folder / "class_01" / "new.png")
    with (folder / "class_01" / "new.png").open("ab") as fh:
        fh.write(b"\0")  # other bytes, so its vector is computed rather than reused
    monkeypatch.setattr(encoders, "load_encoder", lambda *a, **k: pytest.fail("torch loaded for an onnxruntime store"))
    again = embed(folder, ray, None, "ray")
    assert (again.embedded, again.removed) == (1, 1)
