"""The run folder: what a training run keeps, and how it is resumed.

::

    RUN_DIR/
      run.json             the run's identity: training arguments and class split (written first)
      config.json          \\ the best-by-MAP@R model: a checkpoint, so RUN_DIR is a --model spec
      model.safetensors    /
      metrics.csv          one row per epoch
      curves.png           loss and validation metrics over epochs (at the end)
      last/
        config.json, model.safetensors   the model after the last finished epoch (also a spec)
        optimizer.safetensors            AdamW moments, one tensor per parameter and moment
        loss.safetensors                 a proxy loss's proxies (proxy-anchor, normalized-softmax)
        state.json                       epoch, step, scheduler, history, optimizer hyper-parameters

Everything is JSON or safetensors, never a pickle, and every file is replaced atomically.
``last/state.json`` is written after the rest of the epoch's files, so it always describes
a complete state. Random state needs no saving: the loop reseeds from ``(seed, epoch)`` at the
start of each epoch and the sampler draws from the same pair.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from .._fsutil import atomic_write_bytes, atomic_write_json, read_tagged_json
from ..errors import TrainError, reason

__all__ = [
    "RUN_FORMAT",
    "LAST_DIR",
    "read_run",
    "check_run_dir",
    "write_run",
    "save_last_state",
    "load_last_state",
    "write_metrics_csv",
]

RUN_FORMAT = "vecmetric-run"
RUN_NAME = "run.json"
LAST_DIR = "last"
STATE_NAME = "state.json"
OPTIMIZER_NAME = "optimizer.safetensors"
LOSS_NAME = "loss.safetensors"
CSV_COLUMNS = (
    "epoch",
    "step",
    "loss",
    "active_triplets",
    "precision_at_1",
    "r_precision",
    "mean_average_precision_at_r",
    "lr",
    "train_images_per_s",
    "seconds",
)
# Arguments that may change between an interrupted run and its resumption.
RESUMABLE_DIFFERENCES = frozenset({"workers", "cache", "device", "resume", "data_dir", "export"})
# What a run folder written before an argument existed did: it resumes with these values.
LEGACY_ARGS = {"loss": "triplet", "geometry": "euclidean"}


def read_run(run_dir: Path) -> dict[str, Any] | None:
    """The run's identity from ``run.json``, or None if there is none."""
    path = run_dir / RUN_NAME
    if not path.is_file():
        return None
    return read_tagged_json(path, RUN_FORMAT, TrainError, "run description")


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    old = {**LEGACY_ARGS, **old}
    keys = sorted((set(old) | set(new)) - RESUMABLE_DIFFERENCES)
    return [f"{key} {old.get(key)!r} -> {new.get(key)!r}" for key in keys if old.get(key) != new.get(key)]


def check_run_dir(run_dir: Path, identity: dict[str, Any], resume: bool) -> dict[str, Any] | None:
    """Decide whether ``run_dir`` may hold this run.

    Args:
        identity: ``{"args": ..., "data": ...}`` of the run about to start.
        resume: ``--resume`` was given.

    Returns:
        The last saved state to continue from, or None to start afresh.

    Raises:
        TrainError: the folder is a file, holds something else, holds a different run, or
            holds this run without ``--resume``.
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise TrainError(f"--out {run_dir} is a file, not a folder")
    if not run_dir.exists() or not any(run_dir.iterdir()):
        return None
    run = read_run(run_dir)
    if run is None:
        raise TrainError(
            f"--out {run_dir} is not empty and holds no vecmetric run", hint="choose an empty or new folder"
        )
    old_loss, new_loss = run.get("args", {}).get("loss", LEGACY_ARGS["loss"]), identity["args"].get("loss")
    if old_loss != new_loss:
        raise TrainError(
            f"--out {run_dir} holds a run of --loss {old_loss}, not {new_loss}",
            hint=f"choose another --out, or resume it with --loss {old_loss}",
        )
    changed = _differences(run.get("args", {}), identity["args"])
    if changed:
        raise TrainError(
            f"--out {run_dir} holds a different run ({'; '.join(changed[:4])})",
            hint="choose another --out, or repeat the original options with --resume",
        )
    if run.get("data") != identity["data"]:
        raise TrainError(
            f"--out {run_dir} holds a run on other data (the classes or image counts differ)",
            hint="choose another --out",
        )
    if not resume:
        raise TrainError(f"--out {run_dir} already holds this run", hint="pass --resume to continue it, or choose another --out")
    return load_last_state(run_dir)


def write_run(run_dir: Path, identity: dict[str, Any]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / RUN_NAME, {"format": RUN_FORMAT, "format_version": 1, **identity})


def optimizer_tensors(state_dict: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split an optimizer state dict into safetensors-ready tensors and JSON-ready metadata."""
    import torch

    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for param_id, entries in state_dict["state"].items():
        for name, value in entries.items():
            key = f"{param_id}.{name}"
            if torch.is_tensor(value):
                tensors[key] = value.detach().contiguous().cpu()
            else:
                scalars[key] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def optimizer_state_dict(tensors: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in list(tensors.items()) + list(meta.get("scalars", {}).items()):
        param_id, _, name = key.partition(".")
        state.setdefault(int(param_id), {})[name] = value
    groups = [dict(group, betas=tuple(group["betas"])) if "betas" in group else group for group in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def save_last_state(
    run_dir: Path, model, architecture, preprocess, metric: str, optimizer, scheduler, state: dict[str, Any], extra: dict[str, Any], loss=None
) -> None:
    """Write ``RUN_DIR/last/``: the model, a proxy loss's proxies, the optimizer moments, then ``state.json``."""
    from safetensors.torch import save

    from ..encoders import save_checkpoint

    last = run_dir / LAST_DIR
    save_checkpoint(last, model, architecture, preprocess, metric, extra=extra)
    loss_state = {k: v.detach().contiguous().cpu() for k, v in loss.state_dict().items()} if loss is not None else {}
    if loss_state:
        atomic_write_bytes(last / LOSS_NAME, save(loss_state))
    tensors, meta = optimizer_tensors(optimizer.state_dict())
    atomic_write_bytes(last / OPTIMIZER_NAME, save(tensors))
    scheduler_state = {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}
    atomic_write_json(last / STATE_NAME, {**state, "optimizer": meta, "scheduler": scheduler_state})


def load_last_state(run_dir: Path) -> dict[str, Any] | None:
    """The state saved after the last finished epoch, with ``model`` and ``optimizer`` state dicts.

    Returns:
        None when no epoch finished yet (the run restarts from its beginning).

    Raises:
        TrainError: the saved state is damaged.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    last = run_dir / LAST_DIR
    path = last / STATE_NAME
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text())
        state["model"] = load_file(str(last / "model.safetensors"))
        state["optimizer"] = optimizer_state_dict(load_file(str(last / OPTIMIZER_NAME)), state["optimizer"])
        state["loss"] = load_file(str(last / LOSS_NAME)) if (last / LOSS_NAME).is_file() else {}
        state["scheduler"]["lr_lambdas"] = [None] * len(state["optimizer"]["param_groups"])
    except (OSError, ValueError, KeyError, SafetensorError) as exc:
        raise TrainError(f"cannot resume from {last}: {reason(exc)}", hint="start a new run with another --out") from None
    return state


def write_metrics_csv(run_dir: Path, history: list[dict[str, Any]]) -> None:
    """Rewrite ``metrics.csv`` from the whole history, so a resumed run never repeats a row."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_bytes(run_dir / "metrics.csv", out.getvalue().encode())

