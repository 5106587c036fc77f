"""Which runtime runs a store's model: its ONNX export (onnxruntime, no torch) or torch.

A store keeps its export in ``STORE/_model/`` and a training run in ``RUN_DIR/_model/``; other
models' exports live in the per-user cache (``export_dir``). The store's manifest records the
runtime and precision that made its vectors (``runtime``), and ``embed`` keeps them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import EncoderError, ExportError, StoreMismatchError
from ..progress import Reporter, reporter_or_default
from ._format import EXPORT_FILE, read_export_info
from ._onnx import load_export

__all__ = [
    "MODEL_DIR",
    "ONNXRUNTIME",
    "TORCH",
    "model_dir",
    "export_state",
    "open_query_encoder",
]

MODEL_DIR = "_model"  # a store's (or run folder's) exported query model; '_': not rows, skipped by Parquet readers
ONNXRUNTIME = "onnxruntime"
TORCH = "torch"


def model_dir(folder: str | os.PathLike) -> Path:
    """Where a store or a run folder keeps its exported model."""
    return Path(folder) / MODEL_DIR


def export_state(folder: str | os.PathLike, fingerprint: str) -> tuple[str, str]:
    """How the export in ``folder`` stands for a model: ``("ok" | "missing" | "failed" | "foreign" | "damaged", reason)``.

    Cheap (it reads ``export.json`` and checks the files' sizes); a flipped byte inside a graph is
    found when its session is created, where the sha256 is checked.
    """
    folder = Path(folder)
    try:
        if not (folder / EXPORT_FILE).is_file():
            return "missing", f"no exported model in {folder}"
    except OSError as exc:  # a folder this user may not enter (another user's cache)
        return "damaged", f"cannot read {folder}: {exc.strerror or exc}"
    try:
        info = read_export_info(folder)
    except ExportError as exc:
        return "damaged", exc.message
    if info.fingerprint != fingerprint:
        return "foreign", f"the export in {folder} is of model {info.fingerprint}, not {fingerprint}"
    if not info.ok:
        return "failed", f"the model could not be exported to ONNX: {info.reason}"
    try:
        load_export(folder, fingerprint)
    except ExportError as exc:
        return "damaged", exc.message
    return "ok", "the export is usable"


def open_query_encoder(store, *, tower: str = "image", device: str = "auto", allow_pickle_files: bool = False, reporter: Reporter | None = None) -> Any:
    """The encoder that embeds queries for ``store``: its ONNX export when usable, else its torch model.

    The export needs neither torch nor the model's weights, and starts in a fraction of a second. Without
    one (an old store, an architecture that cannot be exported, a damaged export), the store's own model
    is loaded with torch and ``reporter`` is told once why, and how to make it fast.

    Args:
        store: an open ``Store``.
        tower: ``image`` or ``text``: the tower the queries need (its session is created now, so a damaged
            graph falls back here rather than failing later).
        device: where the torch fallback runs.
        allow_pickle_files: passed to the torch loader for checkpoint folders.
        reporter: receives the one-line notice about a fallback.

    Raises:
        EncoderError: text asked of a model without a text tower, or the store's model cannot be loaded.
        StoreMismatchError: the store's model no longer loads the same weights (torch fallback).
    """
    reporter = reporter_or_default(reporter)
    if tower == "text" and (store.model.get("architecture") or {}).get("source") != "open_clip":
        raise EncoderError(
            f"the store's model {store.model['spec']} cannot embed text",
            hint="text queries need a store made by an open_clip model (open_clip:ARCH@TAG); 'vecmetric models open_clip:' lists them",
        )
    folder = model_dir(store.path)
    state, why = export_state(folder, store.model["fingerprint"])
    if state == "ok":
        encoder = load_export(folder, store.model["fingerprint"])
        try:
            if tower == "image" or encoder.supports_text:
                encoder.prepare(tower)
                return encoder
            why = f"the export has no text tower: {encoder.info.text_reason}"
        except ExportError as exc:
            state, why = "damaged", exc.message
    advice = {
        "missing": f"run 'vecmetric export --store {store.path}' once to make searches start in a blink",
        "damaged": f"run 'vecmetric verify --store {store.path} --repair' to export it again",
        "foreign": f"run 'vecmetric export --store {store.path}' to export this store's model",
    }.get(state, "searches load it with torch")
    reporter.warn(f"searching with torch, which takes seconds to load: {why}; {advice}")
    return _torch_encoder(store, device, allow_pickle_files)


def _torch_encoder(store, device: str, allow_pickle_files: bool):
    from ..encoders import load_encoder

    encoder = load_encoder(store.model["spec"], device=device, allow_pickle_files=allow_pickle_files)
    if encoder.fingerprint != store.model["fingerprint"]:
        raise StoreMismatchError(
            f"the store's model {store.model['spec']} no longer loads the same weights (fingerprint changed)",
            hint="embed again into a new store",
        )
    return encoder
