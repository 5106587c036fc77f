"""The torch-free runtime: loading exports, refusing bad ones, and searching like torch does."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from vecmetric.errors import EncoderError, ExportError

TINY = "timm:test_efficientnet@random"
CLIP = "open_clip:ViT-S-32-alt@random"


@pytest.fixture
def tiny_export_copy(exported, tmp_path):
    """A private copy of the tiny model's export, free to damage."""
    encoder, info = exported(TINY)
    return encoder, shutil.copytree(info.folder, tmp_path / "export")


def test_attributes_mirror_the_encoder(exported):
    from vecmetric.runtime import load_export

    encoder, info = exported(TINY)
    onnx = load_export(info.folder, encoder.fingerprint, threads=1)
    assert (onnx.spec, onnx.fingerprint, onnx.dim, onnx.metric) == (encoder.spec, encoder.fingerprint, encoder.dim, encoder.metric)
    assert onnx.preprocess == encoder.preprocess and onnx.threads == 1 and not onnx.supports_text
    assert onnx.describe() == encoder.describe()
    with pytest.raises(EncoderError, match="no text tower"):
        onnx.embed_texts(["a cat"])
    with pytest.raises(ValueError, match="uint8"):
        onnx.embed_tensors(np.zeros((1, 3, 160, 160), np.float32))
    assert onnx.embed_paths([]).shape == (0, encoder.dim)


def test_sessions_are_created_when_a_tower_is_first_used(exported, monkeypatch, image_folder):
    import onnxruntime

    from vecmetric.runtime import load_export

    created = []
    real_session = onnxruntime.InferenceSession

    def recording_session(data, *args, **kwargs):
        created.append(len(data))
        return real_session(data, *args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", recording_session)
    encoder, info = exported(TINY)
    onnx = load_export(info.folder)
    assert created == []
    images = sorted(image_folder.rglob("*.png"))
    onnx.embed_paths(images[:2])
    onnx.embed_paths(images[2:4])
    assert created == [info.towers["image"]["size"]]


@pytest.mark.parametrize("damage", ["truncated", "flipped byte", "deleted graph", "edited sha256"])
def test_damaged_export_is_refused(tiny_export_copy, damage, image_folder):
    from vecmetric.runtime import load_export

    encoder, folder = tiny_export_copy
    graph = folder / "image.onnx"
    raw = bytearray(graph.read_bytes())
    if damage == "truncated":
        graph.write_bytes(raw[: len(raw) // 2])
    elif damage == "flipped byte":
        raw[len(raw) // 2] ^= 0x01
        graph.write_bytes(bytes(raw))
    elif damage == "deleted graph":
        graph.unlink()
    else:
        doc = json.loads((folder / "export.json").read_text())
        doc["towers"]["image"]["sha256"] = "0" * 64
        (folder / "export.json").write_text(json.dumps(doc))
    with pytest.raises(ExportError, match="damaged|lacks"):
        onnx = load_export(folder, encoder.fingerprint)  # sizes are checked here
        onnx.embed_paths(sorted(image_folder.rglob("*.png"))[:1])  # the sha256 on the bytes onnxruntime would get


def test_prepare_checks_the_graph_before_any_query(tiny_export_copy):
    from vecmetric.runtime import load_export

    encoder, folder = tiny_export_copy
    raw = bytearray((folder / "image.onnx").read_bytes())
    raw[-10] ^= 0x80
    (folder / "image.onnx").write_bytes(bytes(raw))
    onnx = load_export(folder)
    with pytest.raises(ExportError, match="damaged"):
        onnx.prepare()


@pytest.mark.parametrize("edit", ["fingerprint", "crop_pct", "format", "format_version", "not json", "missing"])
def test_edited_or_unreadable_export_json_is_refused(tiny_export_copy, edit):
    from vecmetric.runtime import load_export

    encoder, folder = tiny_export_copy
    path = folder / "export.json"
    doc = json.loads(path.read_text())
    if edit == "fingerprint":
        doc["fingerprint"] = "tf_efficientnet_lite0-0000000000000000"
    elif edit == "crop_pct":  # would change every vector a little, silently
        doc["preprocess"]["crop_pct"] = 0.835
    elif edit == "format":
        doc["format"] = "vecmetric-checkpoint"
    elif edit == "format_version":
        doc["format_version"] = 2
    path.write_text("{not json" if edit == "not json" else json.dumps(doc))
    if edit == "missing":
        path.unlink()
    with pytest.raises(ExportError) as caught:
        load_export(folder, fingerprint=encoder.fingerprint)
    assert caught.value.exit_code == 4
    if edit in ("fingerprint", "crop_pct"):
        assert "digest" in str(caught.value)


def test_export_of_another_model_is_refused(exported, l2_head_checkpoint):
    from vecmetric.runtime import load_export

    tiny, info = exported(TINY)
    other, _ = exported(l2_head_checkpoint)
    with pytest.raises(ExportError, match=f"is of model {tiny.fingerprint}, not {other.fingerprint}"):
        load_export(info.folder, fingerprint=other.fingerprint)
    assert load_export(info.folder, fingerprint=tiny.fingerprint).fingerprint == tiny.fingerprint


@pytest.mark.parametrize("model", [pytest.param("default", marks=pytest.mark.slow), "l2-head"])
def test_top10_neighbours_equal_torch(request, exported, omniglot_root, mixed_images, model):
    from vecmetric.index import exact_search
    from vecmetric.runtime import load_export

    spec = request.getfixturevalue("l2_head_checkpoint") if model == "l2-head" else model
    encoder, info = exported(spec)
    onnx = load_export(info.folder, encoder.fingerprint)
    faces = sorted((omniglot_root.parent / "orl_faces").glob("s*/*.pgm"))
    database, queries = faces[::7][:50], faces[3::11][:8] + mixed_images[:2]
    data = encoder.embed_paths(database)
    torch_ids, _ = exact_search(data, encoder.embed_paths(queries), k=10, metric=encoder.metric)
    onnx_ids, _ = exact_search(data, onnx.embed_paths(queries), k=10, metric=encoder.metric)
    assert torch_ids.shape == (len(queries), 10)
    np.testing.assert_array_equal(onnx_ids, torch_ids)


@pytest.mark.slow
def test_queries_run_without_torch(exported, mixed_images, tmp_path):
    """Import the runtime, load an export, embed an image and texts: no torch, timm, open_clip or torchvision."""
    encoder, info = exported(CLIP)
    texts = ["a photo of a cat", "Ünïcödé 🚲 punctuation?!", ""]
    script = textwrap.dedent(
        """
        import json, sys
        import numpy as np
        from vecmetric.runtime import load_export
        folder, fingerprint, image, out = sys.argv[1:5]
        encoder = load_export(folder, fingerprint)
        np.save(out + "/image.npy", encoder.embed_paths([image]))
        np.save(out + "/text.npy", encoder.embed_texts(json.loads(sys.argv[5])))
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "timm", "open_clip", "torchvision"))))
        """
    )
    args = [str(info.folder), encoder.fingerprint, str(mixed_images[-1]), str(tmp_path), json.dumps(texts)]
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == []
    image, text = np.load(tmp_path / "image.npy"), np.load(tmp_path / "text.npy")
    expected_image, expected_text = encoder.embed_paths(mixed_images[-1:]), encoder.embed_texts(texts)
    assert image.shape == expected_image.shape and text.shape == expected_text.shape
    assert (image * expected_image).sum(1).min() >= 0.9999 and (text * expected_text).sum(1).min() >= 0.9999
