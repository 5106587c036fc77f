"""Checkpoint folders: ``config.json`` plus ``model.safetensors``, never a pickle.

A checkpoint folder is a valid model spec everywhere (``--model RUN_DIR``). Loading
rebuilds the architecture untrained from the JSON, then copies the tensors in, so
nothing in the folder is ever executed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .._fsutil import atomic_write_bytes, atomic_write_json, read_tagged_json
from ..errors import EncoderError, reason
from ._config import ArchitectureConfig, PreprocessConfig

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CHECKPOINT_FORMAT = "vecmetric-checkpoint"
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle")


def is_checkpoint_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / CONFIG_NAME).is_file()


def save_checkpoint(
    folder: str | os.PathLike,
    model,
    architecture: ArchitectureConfig,
    preprocess: PreprocessConfig,
    metric: str = "cosine",
    extra: dict[str, Any] | None = None,
    weights_name: str = WEIGHTS_NAME,
) -> Path:
    """Write ``model``'s weights (safetensors) and a config that fully describes it, atomically.

    Args:
        folder: the checkpoint folder; created if missing.
        model: an ``EmbeddingModel``.
        architecture, preprocess, metric: how to rebuild and use the model.
        extra: anything else worth keeping (training arguments, metrics).
        weights_name: the weights file inside ``folder``.

    Returns:
        The folder's path.
    """
    from safetensors.torch import save

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write_bytes(folder / weights_name, save(tensors))
    config = {
        "format": CHECKPOINT_FORMAT,
        "format_version": 1,
        "architecture": architecture.to_dict(),
        "preprocess": preprocess.to_dict(),
        "metric": metric,
        "embedding_dim": int(model.dim),
        "weights": weights_name,
        **(extra or {}),
    }
    atomic_write_json(folder / CONFIG_NAME, config)
    return folder


def read_checkpoint_config(folder: str | os.PathLike) -> dict[str, Any]:
    """Read and check a checkpoint folder's config.

    Raises:
        EncoderError: no config, not valid JSON, or not a vecmetric checkpoint.
    """
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise EncoderError(f"{folder} is not a vecmetric checkpoint folder (no {CONFIG_NAME})")
    return read_tagged_json(path, CHECKPOINT_FORMAT, EncoderError, "checkpoint config")


def build_architecture(architecture: ArchitectureConfig):
    """An untrained ``EmbeddingModel`` of the given architecture (no download, no weights)."""
    from ._model import EmbeddingModel
    from ._sources import create_open_clip_model, create_timm_backbone

    if architecture.source == "timm":
        backbone = create_timm_backbone(architecture.name, pretrained=False)
        dim = backbone.num_features
    elif architecture.source == "open_clip":
        backbone = create_open_clip_model(architecture.name, "random").visual
        dim = backbone.output_dim
    else:
        raise EncoderError(f"unknown architecture source {architecture.source!r} in checkpoint")
    if architecture.geometry != "euclidean":
        from ..distances import check_geometry

        check_geometry(architecture.geometry, architecture.curvature, architecture.clip_r, error=EncoderError)
    return EmbeddingModel(backbone, dim, architecture.embedding_dim, architecture.normalize, architecture.curvature, architecture.clip_r)


def pickle_files(folder: str | os.PathLike) -> list[str]:
    """Pickle-format files anywhere in a checkpoint folder (relative paths)."""
    folder = Path(folder)
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES and p.is_file())


def load_checkpoint(folder: str | os.PathLike, weights_name: str | None = None, allow_pickle_files: bool = False):
    """Rebuild the model stored in a checkpoint folder.

    Only ``config.json`` and a ``.safetensors`` file are read; nothing in the folder is
    executed. A folder that also holds pickle files (``.pt``, ``.pth``, ``.bin``, ``.ckpt``,
    ``.pkl``) is refused unless ``allow_pickle_files`` is set, since it was not written by
    vecmetric and may not be what it claims; even then the pickles are never opened.

    Returns:
        ``(model, preprocess, architecture, config)``.

    Raises:
        EncoderError: missing weights, pickle files present, a damaged config, or tensors
            that do not fit the architecture.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    config = read_checkpoint_config(folder)
    name = weights_name or config.get("weights", WEIGHTS_NAME)
    weights = folder / name
    if Path(name).name != name or weights.suffix != ".safetensors":
        raise EncoderError(f"checkpoint weights must be a .safetensors file in the folder, not {name!r}")
    pickles = pickle_files(folder)
    if not weights.is_file():
        hint = f"found pickle files {pickles}, which vecmetric never loads" if pickles else None
        raise EncoderError(f"checkpoint {folder} has no {name}", hint=hint)
    if pickles and not allow_pickle_files:
        raise EncoderError(
            f"checkpoint {folder} contains pickle files ({', '.join(pickles[:3])}), which can run code when loaded",
            hint="vecmetric reads only safetensors and JSON; pass --allow-pickle-files to use the folder anyway (the pickles stay unread)",
        )
    try:
        architecture = ArchitectureConfig.from_dict(config["architecture"])
        preprocess = PreprocessConfig.from_dict(config["preprocess"])
    except (KeyError, TypeError, ValueError) as exc:
        raise EncoderError(f"checkpoint config {folder / CONFIG_NAME} is damaged: {exc!r}") from None
    model = build_architecture(architecture)
    try:
        state = load_file(str(weights))
        model.load_state_dict(state, strict=True)
    except (SafetensorError, RuntimeError, OSError) as exc:
        raise EncoderError(f"cannot load {weights}: {reason(exc, 300)}") from None
    return model, preprocess, architecture, config
