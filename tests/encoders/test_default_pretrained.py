"""The default encoder is really ImageNet-pretrained, offline, and made for cosine search."""

from __future__ import annotations

import numpy as np
import pytest

from vecmetric.encoders import load_encoder

RANDOM_LITE0 = "timm:tf_efficientnet_lite0@random"


@pytest.fixture(scope="module")
def omniglot_sample(bundled_omniglot):
    """20 Omniglot characters of the bundled sample (every 5th of its 113, so all five alphabets) x 4 drawings."""
    folders = [p for part in ("train", "test") for p in (bundled_omniglot / part).iterdir() if p.is_dir()]
    classes = sorted(folders, key=lambda p: p.name)[::5][:20]
    paths, labels = [], []
    for label, folder in enumerate(classes):
        for image in sorted(folder.glob("*.png"))[:4]:
            paths.append(str(image))
            labels.append(label)
    assert len(set(labels)) == 20 and len(paths) == 80
    return paths, np.array(labels)


def precision_at_1(vectors: np.ndarray, labels: np.ndarray) -> float:
    """Leave-one-out nearest neighbour (cosine) precision@1."""
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    return float((labels[sims.argmax(1)] == labels).mean())


@pytest.fixture(scope="module")
def default_encoder():
    return load_encoder("default", device="cpu")


def test_default_encoder_describes_itself(default_encoder):
    enc = default_encoder
    assert enc.spec == "default"
    assert enc.dim == 1280
    assert enc.metric == "cosine"
    assert enc.architecture.source == "timm" and enc.architecture.name == "tf_efficientnet_lite0"
    # The TF-trained weights expect [-1, 1] inputs at 224 px.
    assert enc.preprocess.image_size == 224
    assert tuple(enc.preprocess.mean) == (0.5, 0.5, 0.5) and tuple(enc.preprocess.std) == (0.5, 0.5, 0.5)
    assert enc.fingerprint.startswith("tf_efficientnet_lite0-")
    # The weights come from the package, not from a random init.
    assert enc.fingerprint != load_encoder(RANDOM_LITE0, device="cpu").fingerprint
    assert load_encoder(None, device="cpu").fingerprint == enc.fingerprint


def test_default_is_pretrained(default_encoder, omniglot_sample):
    """Nearest-neighbour precision@1 on real characters: pretrained features clearly beat random ones.

    Measured on this sample: default 0.50, random weights 0.10 (chance is 0.05).
    """
    paths, labels = omniglot_sample
    pretrained = default_encoder.embed_paths(paths)
    random_weights = load_encoder(RANDOM_LITE0, device="cpu").embed_paths(paths)

    assert pretrained.dtype == np.float32 and pretrained.shape == (80, 1280)
    np.testing.assert_allclose(np.linalg.norm(pretrained, axis=1), 1.0, atol=1e-4)
    assert np.isfinite(pretrained).all()

    p_pretrained = precision_at_1(pretrained, labels)
    p_random = precision_at_1(random_weights, labels)
    assert p_pretrained >= 0.4, p_pretrained
    assert p_pretrained - p_random >= 0.25, (p_pretrained, p_random)
