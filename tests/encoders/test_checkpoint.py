"""Checkpoint folders: safetensors + config.json round trip; pickles are never loaded."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vecmetric.encoders import (
    ArchitectureConfig,
    is_checkpoint_dir,
    load_checkpoint,
    load_encoder,
    read_checkpoint_config,
    save_checkpoint,
)
from vecmetric.errors import EncoderError


@pytest.fixture
def sample_paths(make_images, tmp_path):
    return [str(p) for p in make_images(tmp_path / "imgs", classes=2, per_class=3)]


def test_round_trip_gives_identical_embeddings(tiny_encoder, sample_paths, tmp_path):
    enc = tiny_encoder
    folder = save_checkpoint(tmp_path / "ckpt", enc.model, enc.architecture, enc.preprocess, extra={"note": "kept"})
    assert is_checkpoint_dir(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["format"] == "vecmetric-checkpoint"
    assert config["embedding_dim"] == 256 and config["metric"] == "cosine" and config["note"] == "kept"

    loaded = load_encoder(str(folder), device="cpu", precision="fp32")
    assert loaded.spec == str(folder.resolve())
    assert loaded.dim == enc.dim
    assert loaded.preprocess == enc.preprocess
    # Same architecture, preprocessing and weights: the same fingerprint, whatever spec named it.
    assert loaded.fingerprint == enc.fingerprint
    np.testing.assert_array_equal(loaded.embed_paths(sample_paths), enc.embed_paths(sample_paths))


def test_round_trip_with_projection_head(tiny_encoder, sample_paths, tmp_path):
    from vecmetric.encoders._checkpoint import build_architecture

    arch = ArchitectureConfig(source="timm", name="test_efficientnet", embedding_dim=32)
    model = build_architecture(arch)
    assert model.dim == 32
    folder = save_checkpoint(tmp_path / "head", model, arch, tiny_encoder.preprocess, metric="cosine")
    rebuilt, preprocess, architecture, config = load_checkpoint(folder)
    assert architecture == arch and preprocess == tiny_encoder.preprocess and config["embedding_dim"] == 32
    for (k1, v1), (k2, v2) in zip(model.state_dict().items(), rebuilt.state_dict().items()):
        assert k1 == k2 and v1.equal(v2)
    enc = load_encoder(folder, device="cpu", precision="fp32")
    vectors = enc.embed_paths(sample_paths)
    assert vectors.shape == (6, 32)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_pickle_only_folder_is_refused(tiny_encoder, tmp_path):
    import torch

    enc = tiny_encoder
    folder = save_checkpoint(tmp_path / "ckpt", enc.model, enc.architecture, enc.preprocess)
    (folder / "model.safetensors").unlink()
    torch.save(enc.model.state_dict(), folder / "model.pt")
    with pytest.raises(EncoderError) as info:
        load_encoder(str(folder), device="cpu")
    text = str(info.value)
    assert "has no model.safetensors" in text
    assert "model.pt" in text and "never loads" in text


def test_config_pointing_at_a_pickle_is_refused(tiny_encoder, tmp_path):
    enc = tiny_encoder
    folder = save_checkpoint(tmp_path / "ckpt", enc.model, enc.architecture, enc.preprocess)
    config = json.loads((folder / "config.json").read_text())
    config["weights"] = "model.pt"
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.pt").write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(EncoderError, match="must be a .safetensors file"):
        load_encoder(str(folder), device="cpu")
    config["weights"] = "../elsewhere.safetensors"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(EncoderError, match="must be a .safetensors file in the folder"):
        load_encoder(str(folder), device="cpu")


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "cannot read"),
        ('{"format": "something-else"}', "is not a vecmetric checkpoint config"),
        ("[1, 2]", "is not a vecmetric checkpoint config"),
    ],
)
def test_bad_config_is_refused(tmp_path, content, message):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text(content)
    with pytest.raises(EncoderError, match=message):
        read_checkpoint_config(folder)
    with pytest.raises(EncoderError):
        load_encoder(str(folder), device="cpu")


def test_weights_that_do_not_fit_are_refused(tiny_encoder, tmp_path):
    import torch
    from safetensors.torch import save_file

    enc = tiny_encoder
    folder = save_checkpoint(tmp_path / "ckpt", enc.model, enc.architecture, enc.preprocess)
    save_file({"backbone.conv_stem.weight": torch.zeros(2, 2)}, str(folder / "model.safetensors"))
    with pytest.raises(EncoderError, match="cannot load"):
        load_encoder(str(folder), device="cpu")
    (folder / "model.safetensors").write_bytes(b"garbage" * 10)
    with pytest.raises(EncoderError, match="cannot load"):
        load_encoder(str(folder), device="cpu")
