"""The one place that parses model specs and builds encoders."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import EncoderError
from ._checkpoint import is_checkpoint_dir, load_checkpoint
from ._device import resolve_device, resolve_precision
from ._registry import get_source
from ._sources import DEFAULT_SPEC

__all__ = ["ParsedSpec", "parse_spec", "load_encoder"]


@dataclass(frozen=True)
class ParsedSpec:
    """A model spec taken apart.

    Attributes:
        kind: ``"source"`` (``PREFIX:NAME[@TAG]``, the default included) or ``"checkpoint"``.
        prefix, name, tag: for sources.
        path: for checkpoints, absolute.
    """

    kind: str
    prefix: str = ""
    name: str = ""
    tag: str | None = None
    path: str = ""

    @property
    def canonical(self) -> str:
        if self.kind == "checkpoint":
            return self.path
        if self.prefix == "default":
            return DEFAULT_SPEC
        return f"{self.prefix}:{self.name}" + (f"@{self.tag}" if self.tag else "")


def parse_spec(spec: str | os.PathLike | None) -> ParsedSpec:
    """Parse ``default``, ``timm:NAME[@TAG]``, ``open_clip:ARCH@TAG`` or a checkpoint folder.

    Raises:
        EncoderError: the spec names no known source and no checkpoint folder.
    """
    text = os.fspath(spec).strip() if spec is not None else DEFAULT_SPEC
    if text in ("", DEFAULT_SPEC):
        return ParsedSpec("source", "default")
    if Path(text).is_dir():
        if not is_checkpoint_dir(text):
            raise EncoderError(f"{text} is a folder but not a vecmetric checkpoint (no config.json)")
        return ParsedSpec("checkpoint", path=str(Path(text).resolve()))
    prefix, sep, rest = text.partition(":")
    if not sep or not rest:
        looks_like_path = os.sep in text or text.startswith(".")
        raise EncoderError(
            f"checkpoint folder {text} does not exist" if looks_like_path else f"unknown model spec {text!r}",
            hint="use 'default', timm:NAME, open_clip:ARCH@TAG or a checkpoint folder; 'vecmetric models' lists them",
        )
    get_source(prefix)  # raises with the valid prefixes
    name, _, tag = rest.partition("@")
    return ParsedSpec("source", prefix, name, tag or None)


def load_encoder(
    spec: str | os.PathLike | None = None, device: str = "auto", precision: str = "auto", allow_pickle_files: bool = False
):
    """Build the encoder a spec names, on ``device`` (``auto``: CUDA, then MPS, then CPU).

    Args:
        spec: ``default`` (or None), ``timm:NAME[@TAG]``, ``open_clip:ARCH@TAG``, or a checkpoint folder.
            ``@random`` builds a timm or open_clip architecture untrained (deterministically).
        device: ``auto``, ``cpu``, ``cuda[:N]`` or ``mps``.
        precision: ``auto`` (bf16 autocast on CUDA and bf16-capable CPUs), ``fp32`` or ``bf16``.
        allow_pickle_files: accept a checkpoint folder that also holds pickle files (never read).

    Returns:
        An ``Encoder`` in eval mode.

    Raises:
        EncoderError: unknown spec, unavailable device, or weights that cannot be loaded.
    """
    import torch

    from ._encoder import Encoder, weights_fingerprint

    parsed = parse_spec(spec)
    torch_device = resolve_device(device)
    encode_text = text_model = None
    metric = "cosine"
    if parsed.kind == "checkpoint":
        model, preprocess, architecture, config = load_checkpoint(parsed.path, allow_pickle_files=allow_pickle_files)
        metric = config.get("metric", "cosine")
    else:
        built = get_source(parsed.prefix).build(parsed.name, parsed.tag)
        model, preprocess, architecture = built.model, built.preprocess, built.architecture
        encode_text, text_model = built.encode_text, built.text_model
    fingerprint = weights_fingerprint(model, architecture, preprocess)
    model.eval().to(torch_device, memory_format=torch.channels_last)
    if text_model is not None:
        text_model.eval().to(torch_device)
    return Encoder(
        parsed.canonical,
        model,
        preprocess,
        architecture,
        fingerprint,
        torch_device,
        resolve_precision(torch_device, precision),
        metric=metric,
        encode_text=encode_text,
    )
