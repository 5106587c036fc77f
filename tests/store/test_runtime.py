"""Which runtime makes a store's vectors, and the exported model that travels with the store."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from _helpers import TINY_MODEL

from vecmetric.errors import StoreMismatchError
from vecmetric.runtime import export_state, load_export, model_dir
from vecmetric.store import embed_directory, embeddings_to_numpy, open_store
from vecmetric.verify import verify_store


def embed(folder, store, **kwargs):
    kwargs.setdefault("workers", 0)
    return embed_directory(folder, store, model=kwargs.pop("model", TINY_MODEL), device="cpu", **kwargs)


def vectors_by_path(store):
    table = open_store(store).read_table(["path", "embedding"])
    return dict(zip(table.column("path").to_pylist(), embeddings_to_numpy(table.column("embedding"))))


def test_a_new_cpu_store_embeds_through_its_onnx_export(image_folder, tmp_path, tiny_encoder):
    result = embed(image_folder, tmp_path / "store", runtime="onnxruntime")
    store = open_store(tmp_path / "store")
    assert store.manifest["runtime"] == {"name": "onnxruntime", "precision": "fp32"} and result.runtime == "onnxruntime fp32"
    assert export_state(model_dir(store.path), store.model["fingerprint"])[0] == "ok"
    stored = vectors_by_path(tmp_path / "store")
    paths = sorted(stored)
    exported = load_export(model_dir(store.path), store.model["fingerprint"]).embed_paths(paths)
    np.testing.assert_allclose(np.stack([stored[p] for p in paths]), exported, atol=1e-6)  # the same graph made them
    torch_fp32 = tiny_encoder.embed_paths(paths)
    cosines = (exported * torch_fp32).sum(1) / (np.linalg.norm(exported, axis=1) * np.linalg.norm(torch_fp32, axis=1))
    assert cosines.min() >= 0.9999


def test_bf16_asks_for_torch_and_the_store_keeps_its_runtime(image_folder, tmp_path, make_images):
    embed(image_folder, tmp_path / "store", precision="bf16")
    store = open_store(tmp_path / "store")
    assert store.manifest["runtime"] == {"name": "torch", "precision": "bf16"}
    assert export_state(model_dir(store.path), store.model["fingerprint"])[0] == "ok"  # queries still run without torch
    make_images(image_folder / "more", classes=1, per_class=2, seed=9)
    again = embed(image_folder, tmp_path / "store")  # auto: the store's own way
    assert again.embedded == 2 and again.runtime == "torch bf16"
    with pytest.raises(StoreMismatchError, match="made with torch bf16, not fp32"):
        embed(image_folder, tmp_path / "store", precision="fp32")


def test_an_older_store_gets_an_export_and_keeps_embedding_with_torch(image_folder, tmp_path):
    embed(image_folder, tmp_path / "store", precision="fp32")
    store = open_store(tmp_path / "store")
    manifest = dict(store.manifest)
    del manifest["runtime"]  # as vecmetric wrote it before runtimes were recorded
    (tmp_path / "store" / "_manifest.json").write_text(json.dumps(manifest))
    shutil.rmtree(model_dir(store.path))
    assert [f.kind for f in verify_store(tmp_path / "store").findings] == ["export"]
    with pytest.raises(StoreMismatchError, match="made with torch, not onnxruntime"):  # torch made an older store's vectors
        embed(image_folder, tmp_path / "store", runtime="onnxruntime")

    result = embed(image_folder, tmp_path / "store", precision="fp32")
    store = open_store(tmp_path / "store")
    assert result.embedded == 0 and store.manifest["runtime"] == {"name": "torch", "precision": "fp32"}
    assert export_state(model_dir(store.path), store.model["fingerprint"])[0] == "ok"
    assert verify_store(tmp_path / "store").findings == []


def test_verify_repairs_a_damaged_export_and_never_uses_it(image_folder, tmp_path):
    embed(image_folder, tmp_path / "store")
    graph = model_dir(tmp_path / "store") / "image.onnx"
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: same size, other weights
    graph.write_bytes(bytes(data))
    report = verify_store(tmp_path / "store")
    assert [f.kind for f in report.findings] == ["export"] and "damaged" in report.findings[0].detail
    assert verify_store(tmp_path / "store", repair=True).ok
    assert verify_store(tmp_path / "store").findings == []


def test_a_second_store_of_the_model_copies_the_checked_export(image_folder, tmp_path, monkeypatch):
    embed(image_folder, tmp_path / "first", runtime="onnxruntime")
    import vecmetric.encoders.export as export_module

    def no_export(*args, **kwargs):
        raise AssertionError("exported again although the cache holds a checked export")

    monkeypatch.setattr(export_module, "export_encoder", no_export)
    embed(image_folder, tmp_path / "second", runtime="onnxruntime")
    second = open_store(tmp_path / "second")
    assert export_state(model_dir(second.path), second.model["fingerprint"])[0] == "ok"
    assert second.manifest["runtime"]["name"] == "onnxruntime"


def test_an_unchanged_onnx_store_is_embedded_again_without_torch(image_folder, tmp_path):
    embed(image_folder, tmp_path / "store", runtime="onnxruntime")
    code = (
        "import sys; from vecmetric.store import embed_directory; "
        f"r = embed_directory({str(image_folder)!r}, {str(tmp_path / 'store')!r}, device='cpu', workers=0); "
        "print(r.unchanged, r.runtime, sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'timm', 'open_clip')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split(" ", 1) == ["12", "onnxruntime fp32 []\n"]


@pytest.mark.parametrize("onnxruntime_rate, expected", [(300.0, "onnxruntime fp32"), (100.0, "torch fp32")])
def test_auto_picks_the_runtime_the_export_measured_faster(image_folder, tmp_path, monkeypatch, onnxruntime_rate, expected):
    import vecmetric.encoders.export as export_module

    monkeypatch.setenv("VECMETRIC_CACHE_DIR", str(tmp_path / "cache"))  # no export measured by another test
    rates = {"onnxruntime_images_per_s": onnxruntime_rate, "torch_images_per_s": 200.0}
    monkeypatch.setattr(export_module, "_benchmark", lambda *args: dict(rates, torch_precision="fp32"))
    result = embed(image_folder, tmp_path / "store", precision="fp32")
    assert result.runtime == expected
    assert open_store(tmp_path / "store").manifest["runtime"]["name"] == expected.split()[0]


def test_runtime_torch_keeps_a_new_store_on_torch_and_a_store_keeps_its_runtime(image_folder, tmp_path):
    result = embed(image_folder, tmp_path / "store", runtime="torch", precision="fp32")
    assert result.runtime == "torch fp32"
    assert export_state(model_dir(tmp_path / "store"), open_store(tmp_path / "store").model["fingerprint"])[0] == "ok"
    with pytest.raises(StoreMismatchError, match="made with torch, not onnxruntime"):
        embed(image_folder, tmp_path / "store", runtime="onnxruntime")


@pytest.mark.parametrize(
    "options, message",
    [
        ({"runtime": "tensorrt"}, "--runtime must be one of auto, onnxruntime, torch, not 'tensorrt'"),
        ({"runtime": "onnxruntime", "precision": "bf16"}, "--precision bf16 needs torch"),
        ({"runtime": "onnxruntime", "decode": "device"}, "--decode device needs torch"),
    ],
)
def test_runtime_options_that_cannot_work_are_refused_before_any_work(image_folder, tmp_path, options, message):
    from vecmetric.errors import InputError

    with pytest.raises(InputError, match=message):
        embed(image_folder, tmp_path / "store", **options)
    assert not (tmp_path / "store").exists()
