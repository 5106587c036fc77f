"""ONNX exports, checked against the torch model they come from (fp32, CPU, the same uint8 batch)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json

import numpy as np
import pytest

from vecmetric.errors import ExportError

TINY = "timm:test_efficientnet@random"
CLIP = "open_clip:ViT-S-32-alt@random"
MODELS = [
    pytest.param("default", marks=pytest.mark.slow),
    TINY,
    "l2-head",
    pytest.param(CLIP, marks=pytest.mark.slow),
]


def cosines(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(params=MODELS)
def model_export(request, exported):
    spec = request.getfixturevalue("l2_head_checkpoint") if request.param == "l2-head" else request.param
    return exported(spec)


def test_image_vectors_match_torch(model_export, mixed_images):
    from vecmetric.images import load_image_array
    from vecmetric.runtime import load_export

    encoder, info = model_export
    assert info.ok, info.reason
    onnx = load_export(info.folder, encoder.fingerprint)
    batch = np.stack([load_image_array(p, encoder.preprocess) for p in mixed_images])
    expected = encoder.embed_tensors(batch)
    got = onnx.embed_tensors(batch)
    assert got.dtype == np.float32 and got.shape == (len(batch), encoder.dim)
    assert cosines(got, expected).min() >= 0.9999
    # also what tells images apart (a near-constant output would pass the line above)
    centre = expected.mean(0)
    assert cosines(got - centre, expected - centre).min() >= 0.999
    relative = np.linalg.norm(got - expected, axis=1) / np.linalg.norm(expected, axis=1)
    assert relative.max() <= 1e-3
    norms = np.linalg.norm(got, axis=1)
    if encoder.metric == "cosine":
        np.testing.assert_allclose(norms, 1.0, atol=1e-5)
    else:  # the l2 checkpoint: no normalisation, so lengths differ and must be kept
        assert encoder.metric == "l2" and np.ptp(norms) > 1e-3 and not np.allclose(norms, 1.0, atol=1e-2)
    # a batch of one (the batch dimension is dynamic) and the path API give the same vectors
    np.testing.assert_allclose(onnx.embed_tensors(batch[:1]), got[:1], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(onnx.embed_paths(mixed_images[-3:]), got[-3:], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_text_vectors_match_torch(exported):
    from vecmetric.runtime import load_export

    encoder, info = exported(CLIP)
    assert info.ok and "text" in info.towers and info.text_reason is None
    onnx = load_export(info.folder, encoder.fingerprint)
    assert onnx.supports_text
    texts = ["a photo of a dog", "Ça va? Très bien!", "🚀 to the moon", "", "word " * 100, "UPPER lower 123"]
    got = onnx.embed_texts(texts)
    expected = encoder.embed_texts(texts)
    assert got.shape == (len(texts), encoder.dim)
    assert cosines(got, expected).min() >= 0.9999
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    # different texts give different vectors (the tower is not constant)
    assert cosines(got[:1], got[1:2])[0] < 0.999


def test_export_json_describes_the_files(exported):
    import onnxruntime
    import torch

    from vecmetric.runtime import ExportInfo, read_export_info

    encoder, info = exported(TINY)
    data = json.loads((info.folder / "export.json").read_text())
    assert data["format"] == "vecmetric-export" and data["format_version"] == 1 and data["status"] == "ok"
    assert (data["spec"], data["fingerprint"], data["dim"], data["metric"]) == (encoder.spec, encoder.fingerprint, encoder.dim, "cosine")
    assert data["preprocess"] == json.loads(json.dumps(encoder.preprocess.to_dict()))
    assert set(data["towers"]) == {"image"} and data["tokenizer"] is None and data["text_reason"] is None
    image = data["towers"]["image"]
    raw = (info.folder / image["file"]).read_bytes()
    assert image["sha256"] == hashlib.sha256(raw).hexdigest() and image["size"] == len(raw)
    assert image["exporter"] == "dynamo" and image["opset"] >= 17 and "failed_exporters" not in image
    assert image["check"]["passed"] and image["check"]["min_cosine"] >= 0.9999 and image["check"]["count"] == 8
    assert data["versions"]["torch"] == importlib.metadata.version("torch")
    assert data["versions"]["onnxruntime"] == onnxruntime.__version__
    bench = data["benchmark"]
    assert bench["batch"] == 16 and bench["threads"] == torch.get_num_threads()
    assert bench["onnxruntime_images_per_s"] > 0 and bench["torch_images_per_s"] > 0
    assert sorted(p.name for p in info.folder.iterdir()) == ["export.json", "image.onnx"]  # no temporaries left
    assert read_export_info(info.folder) == info == ExportInfo.from_dict(info.folder, data)


def _unexportable_encoder():
    """An encoder whose backbone uses an op ONNX has no counterpart for (symmetric eigenvalues)."""
    import torch
    from torch import nn

    from vecmetric.encoders import ArchitectureConfig, PreprocessConfig
    from vecmetric.encoders._encoder import Encoder
    from vecmetric.encoders._model import EmbeddingModel

    class EigenBackbone(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3)

        def forward(self, x):
            flat = x.flatten(2)
            covariance = flat @ flat.transpose(1, 2) / flat.shape[-1]
            return torch.cat([self.conv(x).mean((2, 3)), torch.linalg.eigvalsh(covariance)], dim=1)

    torch.manual_seed(0)
    model = EmbeddingModel(EigenBackbone(), 11).eval()
    preprocess = PreprocessConfig(image_size=32, crop_pct=1.0)
    return Encoder("test:eigen", model, preprocess, ArchitectureConfig("test", "eigen"), "eigen-0", torch.device("cpu"), "fp32")


def test_unexportable_model_is_recorded_as_failed(tmp_path):
    from vecmetric.encoders.export import export_encoder
    from vecmetric.runtime import load_export, read_export_info

    info = export_encoder(_unexportable_encoder(), tmp_path / "export")
    assert info.status == "failed" and not info.ok and info.towers == {}
    assert "dynamo exporter" in info.reason and "torchscript exporter" in info.reason and "eig" in info.reason
    assert read_export_info(tmp_path / "export") == info
    assert [p.name for p in (tmp_path / "export").iterdir()] == ["export.json"]
    with pytest.raises(ExportError, match="failed"):
        load_export(tmp_path / "export")


def test_failed_check_is_recorded(tmp_path, tiny_encoder, monkeypatch):
    from vecmetric.encoders import _export_check
    from vecmetric.encoders.export import export_encoder

    monkeypatch.setattr(_export_check, "MIN_COSINE", 1.5)  # no export can pass: both exporters are tried
    info = export_encoder(tiny_encoder, tmp_path / "export", benchmark=False)
    assert info.status == "failed"
    assert info.reason.count("check failed") == 2 and "torchscript exporter" in info.reason
    assert [p.name for p in (tmp_path / "export").iterdir()] == ["export.json"]


def test_torchscript_exporter_is_the_fallback(tmp_path, tiny_encoder, mixed_images, monkeypatch):
    from vecmetric.encoders import _export_graphs
    from vecmetric.encoders.export import export_encoder
    from vecmetric.images import load_image_array
    from vecmetric.runtime import load_export

    real_export = _export_graphs.export_graph

    def dynamo_fails(graph, example, exporter):
        if exporter == "dynamo":
            raise RuntimeError("dynamo cannot trace this")
        return real_export(graph, example, exporter)

    monkeypatch.setattr(_export_graphs, "export_graph", dynamo_fails)
    info = export_encoder(tiny_encoder, tmp_path / "export", sample_paths=mixed_images[:4], benchmark=False)
    image = info.towers["image"]
    assert info.ok and image["exporter"] == "torchscript" and image["opset"] == 17 and image["check"]["count"] == 4
    assert image["failed_exporters"] == ["dynamo exporter: RuntimeError: dynamo cannot trace this"]
    batch = np.stack([load_image_array(p, tiny_encoder.preprocess) for p in mixed_images])
    got = load_export(info.folder).embed_tensors(batch)
    assert cosines(got, tiny_encoder.embed_tensors(batch)).min() >= 0.9999


def test_default_folder_is_the_user_cache(tmp_path, tiny_encoder, monkeypatch):
    from vecmetric.encoders.export import export_dir, export_encoder

    monkeypatch.setenv("VECMETRIC_CACHE_DIR", str(tmp_path / "cache"))
    info = export_encoder(tiny_encoder, benchmark=False)
    assert info.ok and info.folder == tmp_path / "cache" / "exports" / tiny_encoder.fingerprint == export_dir(tiny_encoder.fingerprint)
    assert (info.folder / "export.json").is_file()
    assert export_dir("hf-hub:org/model-0123") == tmp_path / "cache" / "exports" / "hf-hub_org_model-0123"


def test_only_clips_bpe_tokenizer_is_exported(monkeypatch):
    import open_clip

    from vecmetric.encoders._export_check import clip_tokenizer_settings

    reference, settings, reason = clip_tokenizer_settings("RN50")
    assert reason is None and type(reference).__name__ == "SimpleTokenizer"
    assert settings["context_length"] == 77 and settings["clean"] == "lower" and settings["vocab_path"].endswith(".txt.gz")
    # SigLIP's tokenizer is SentencePiece through Hugging Face: recorded as the reason, not raised
    assert clip_tokenizer_settings("ViT-B-16-SigLIP")[:2] == (None, None)
    assert clip_tokenizer_settings("ViT-B-16-SigLIP")[2]

    class OtherTokenizer:
        pass

    monkeypatch.setattr(open_clip, "get_tokenizer", lambda arch: OtherTokenizer())
    assert clip_tokenizer_settings("RN50")[2] == "its tokenizer is OtherTokenizer; only CLIP's BPE tokenizer (SimpleTokenizer) is exported"
