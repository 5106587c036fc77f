"""Model specs: parsing, the registry, errors that name the valid choices, device and precision."""

from __future__ import annotations

import numpy as np
import pytest

from vecmetric.encoders import list_models, load_encoder, parse_spec, resolve_device, resolve_precision
from vecmetric.errors import EncoderError


@pytest.mark.parametrize(
    "spec, kind, prefix, name, tag, canonical",
    [
        (None, "source", "default", "", None, "default"),
        ("", "source", "default", "", None, "default"),
        ("default", "source", "default", "", None, "default"),
        ("timm:resnet18", "source", "timm", "resnet18", None, "timm:resnet18"),
        ("timm:resnet18@random", "source", "timm", "resnet18", "random", "timm:resnet18@random"),
        ("timm:vit_small_patch16_224@augreg_in21k", "source", "timm", "vit_small_patch16_224", "augreg_in21k", "timm:vit_small_patch16_224@augreg_in21k"),
        ("open_clip:ViT-B-32@openai", "source", "open_clip", "ViT-B-32", "openai", "open_clip:ViT-B-32@openai"),
        ("  timm:test_vit@random  ", "source", "timm", "test_vit", "random", "timm:test_vit@random"),
    ],
)
def test_parse_spec(spec, kind, prefix, name, tag, canonical):
    parsed = parse_spec(spec)
    assert (parsed.kind, parsed.prefix, parsed.name, parsed.tag) == (kind, prefix, name, tag)
    assert parsed.canonical == canonical


def test_parse_spec_checkpoint_folder_is_absolute(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    parsed = parse_spec("run")  # relative to cwd (tmp_path)
    assert parsed.kind == "checkpoint"
    assert parsed.path == str(folder.resolve())
    assert parsed.canonical == str(folder.resolve())


@pytest.mark.parametrize(
    "spec, message",
    [
        ("nonsense", "unknown model spec 'nonsense'"),
        ("./no/such/run", "checkpoint folder ./no/such/run does not exist"),
        ("timm:", "unknown model spec 'timm:'"),
        ("hub:resnet", "unknown model source 'hub'"),
    ],
)
def test_parse_spec_errors(spec, message):
    with pytest.raises(EncoderError) as info:
        parse_spec(spec)
    assert message in str(info.value)
    assert info.value.exit_code == 4


def test_unknown_source_lists_valid_prefixes():
    with pytest.raises(EncoderError) as info:
        parse_spec("hub:resnet")
    text = str(info.value)
    assert "timm:" in text and "open_clip:" in text


def test_folder_without_config_is_refused(tmp_path):
    (tmp_path / "plain").mkdir()
    with pytest.raises(EncoderError, match="not a vecmetric checkpoint"):
        parse_spec(str(tmp_path / "plain"))


def test_unknown_timm_model_suggests_close_names():
    with pytest.raises(EncoderError) as info:
        load_encoder("timm:test_efficientnett@random", device="cpu")
    text = str(info.value)
    assert "unknown timm model 'test_efficientnett'" in text
    assert "did you mean" in text and "test_efficientnet" in text


def test_pretrained_timm_offline_is_a_clear_error():
    # HF_HUB_OFFLINE=1 (conftest): no weights cached, so loading must fail cleanly and say how to go on.
    with pytest.raises(EncoderError) as info:
        load_encoder("timm:test_vit", device="cpu")
    assert "timm:test_vit@random" in str(info.value)


def test_open_clip_needs_a_tag():
    pytest.importorskip("open_clip")
    with pytest.raises(EncoderError) as info:
        load_encoder("open_clip:ViT-S-32", device="cpu")
    assert "needs a pretrained tag" in str(info.value)
    with pytest.raises(EncoderError, match="unknown open_clip architecture"):
        load_encoder("open_clip:NoSuchArch@random", device="cpu")


def test_random_models_are_deterministic(tiny_model, tiny_encoder):
    again = load_encoder(tiny_model, device="cpu", precision="fp32")
    assert again.fingerprint == tiny_encoder.fingerprint
    assert again.fingerprint.startswith("test_efficientnet-")
    batch = np.random.default_rng(0).integers(0, 256, size=(3, 3, 160, 160), dtype=np.uint8)
    import torch

    a = tiny_encoder.embed_tensors(torch.from_numpy(batch))
    b = again.embed_tensors(torch.from_numpy(batch))
    np.testing.assert_array_equal(a, b)


def test_encoder_description(tiny_model, tiny_encoder):
    enc = tiny_encoder
    assert enc.spec == tiny_model
    assert enc.dim == 256
    assert enc.metric == "cosine"
    assert enc.preprocess.image_size == 160
    described = enc.describe()
    assert described["spec"] == tiny_model
    assert described["fingerprint"] == enc.fingerprint
    assert described["dim"] == 256
    assert described["architecture"]["source"] == "timm" and described["architecture"]["name"] == "test_efficientnet"
    assert described["preprocess"]["image_size"] == 160


def test_other_models_have_other_fingerprints(tiny_encoder, other_tiny_model):
    other = load_encoder(other_tiny_model, device="cpu")
    assert other.fingerprint != tiny_encoder.fingerprint


def test_embeddings_are_normalised_float32(tiny_encoder, make_images, tmp_path):
    paths = make_images(tmp_path / "imgs", classes=2, per_class=2)
    vectors = tiny_encoder.embed_paths([str(p) for p in paths])
    assert vectors.dtype == np.float32 and vectors.shape == (4, 256)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # Distinct images give distinct vectors.
    assert np.abs(vectors[0] - vectors[3]).max() > 1e-4


def test_embed_paths_reports_the_bad_file(tiny_encoder, tmp_path):
    from vecmetric.errors import InputError

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(InputError, match="bad.png"):
        tiny_encoder.embed_paths([str(bad)])


def test_text_needs_a_text_tower(tiny_encoder):
    assert not tiny_encoder.supports_text
    with pytest.raises(EncoderError, match="no text tower"):
        tiny_encoder.embed_texts(["a cat"])


def test_list_models():
    everything = list_models()
    assert everything[0] == "default"
    assert "timm:tf_efficientnet_lite0" in everything
    assert any(name.startswith("open_clip:") and "@" in name for name in everything)
    lite = list_models("lite0")
    assert "timm:tf_efficientnet_lite0" in lite and all("lite0" in n for n in lite)
    tests = list_models("timm:test_*")
    assert "timm:test_efficientnet" in tests and all(n.startswith("timm:test_") for n in tests)
    assert list_models("no-such-model-anywhere") == []


def test_device_and_precision():
    import torch

    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(EncoderError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(EncoderError, match="CUDA is not available"):
            resolve_device("cuda")
    cpu = torch.device("cpu")
    assert resolve_precision(cpu, "fp32") == "fp32"
    assert resolve_precision(cpu, "bf16") == "bf16"
    assert resolve_precision(cpu, "auto") in ("fp32", "bf16")
    with pytest.raises(EncoderError, match="unknown precision"):
        resolve_precision(cpu, "fp8")


def test_bf16_close_to_fp32(tiny_model, tiny_encoder):
    """The precision the CPU picks (bf16 where it is fast) stays close to fp32."""
    import torch

    bf16 = load_encoder(tiny_model, device="cpu", precision="bf16")
    batch = torch.from_numpy(np.random.default_rng(1).integers(0, 256, size=(4, 3, 160, 160), dtype=np.uint8))
    a, b = tiny_encoder.embed_tensors(batch), bf16.embed_tensors(batch)
    assert b.dtype == np.float32
    cos = (a * b).sum(1)
    assert cos.min() > 0.99


# --- CUDA (skipped without a GPU; run on a GPU machine) -----------------------------------------


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(not _cuda_available(), reason="needs CUDA")
def test_cuda_auto_device_uses_bf16_and_matches_cpu(tiny_model, tiny_encoder):
    import torch

    assert resolve_device("auto").type == "cuda"
    gpu = load_encoder(tiny_model)  # device and precision auto
    assert gpu.device.type == "cuda"
    assert gpu.precision == ("bf16" if torch.cuda.is_bf16_supported() else "fp32")
    assert gpu.fingerprint == tiny_encoder.fingerprint  # same weights wherever they run
    batch = torch.from_numpy(np.random.default_rng(3).integers(0, 256, size=(8, 3, 160, 160), dtype=np.uint8))
    on_gpu, on_cpu = gpu.embed_tensors(batch), tiny_encoder.embed_tensors(batch)
    assert on_gpu.dtype == np.float32 and on_gpu.shape == (8, 256)
    np.testing.assert_allclose(np.linalg.norm(on_gpu, axis=1), 1.0, atol=1e-4)
    assert (on_gpu * on_cpu).sum(1).min() > 0.99
    fp32 = load_encoder(tiny_model, device="cuda", precision="fp32").embed_tensors(batch)
    assert (fp32 * on_cpu).sum(1).min() > 0.9999
