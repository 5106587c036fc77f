"""Which runtime embeds a store's images, and the exported model that travels with the store.

A store records the runtime and precision that made its vectors in its manifest
(``"runtime": {"name": "onnxruntime" | "torch", "precision": "fp32" | "bf16"}``) and keeps
them: every later ``embed`` makes its vectors the same way. A new store on a CPU gets
onnxruntime fp32 when its model exports and runs faster that way (measured at export time);
on CUDA or Apple MPS, or with ``--precision bf16``, torch makes the vectors. Either way the
store keeps an ONNX export of its model in ``STORE/_model/``, so queries need no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..errors import ExportError, StoreMismatchError
from ..progress import Reporter
from ..runtime import ONNXRUNTIME, TORCH, export_state, load_export, model_dir
from ._manifest import open_store
from ._store import MANIFEST_NAME, Store

__all__ = ["RUNTIME_CHOICES", "EmbedModel", "load_embed_model", "ensure_export", "settle_runtime", "export_store_model", "SAMPLE_IMAGES"]

SAMPLE_IMAGES = 8  # real images an export is checked on
RUNTIME_CHOICES = ("auto", ONNXRUNTIME, TORCH)


@dataclass
class EmbedModel:
    """What embeds a store's images.

    Attributes:
        encoder: a torch ``Encoder`` or an onnxruntime ``OnnxEncoder``; both embed uint8 batches.
        torch_encoder: the torch model when it was loaded (exports are made from it), else None.
        runtime: ``{"name", "precision"}`` as the manifest records it.
        may_switch: a new store on a CPU: it moves to onnxruntime once its export passes.
        always_switch: ``--runtime onnxruntime``: it moves whether or not onnxruntime measured faster.
    """

    encoder: Any
    torch_encoder: Any
    runtime: dict[str, str]
    may_switch: bool = False
    always_switch: bool = False


def _recorded_precision(recorded: dict[str, str], precision: str) -> str:
    """The store's own precision; an explicit different one is refused (the store's vectors would mix)."""
    if precision not in ("auto", recorded["precision"]):
        raise StoreMismatchError(
            f"this store's vectors were made with {recorded['name']} {recorded['precision']}, not {precision}",
            hint="leave out --precision, or embed into a new store",
        )
    return recorded["precision"]


def _check_runtime(runtime: str, store, recorded: dict[str, str] | None, device: str, precision: str, decode: str) -> None:
    """Refuse a ``--runtime`` that is unknown, that the store was not made with, or that the other options rule out."""
    from ..errors import InputError

    if runtime not in RUNTIME_CHOICES:
        raise InputError(f"--runtime must be one of {', '.join(RUNTIME_CHOICES)}, not {runtime!r}")
    made_by = recorded["name"] if recorded is not None else (TORCH if store is not None else None)  # older stores: torch
    if made_by is not None and runtime not in ("auto", made_by):
        raise StoreMismatchError(
            f"this store's vectors were made with {made_by}, not {runtime}",
            hint="leave out --runtime, or embed into a new store",
        )
    if runtime == ONNXRUNTIME and store is None:
        if device not in ("auto", "cpu"):
            raise InputError(f"--runtime onnxruntime runs on the CPU, not --device {device}")
        if precision == "bf16" or decode == "device":
            option = "--precision bf16" if precision == "bf16" else "--decode device"
            raise InputError(f"{option} needs torch", hint="leave out --runtime onnxruntime (it runs fp32 on the CPU)")


def load_embed_model(
    store_path: Path,
    model: str | None,
    device: str,
    precision: str,
    allow_pickle_files: bool = False,
    decode: str = "auto",
    runtime: str = "auto",
) -> EmbedModel:
    """The model that embeds into ``store_path``: the store's recorded runtime, or for a new store the best one here.

    An onnxruntime store whose export is usable embeds without loading torch at all. ``decode="device"``
    (JPEGs decoded by torchvision on the model's device) keeps a new store on torch. ``runtime`` picks a
    new store's runtime (``auto``: onnxruntime on a CPU when it measured faster than torch).

    Raises:
        EncoderError: the model cannot be loaded; StoreMismatchError: a precision or runtime the store was
        not made with; InputError: an unknown runtime, or one the other options rule out.
    """
    from ..encoders import load_encoder

    store = open_store(store_path) if (store_path / MANIFEST_NAME).exists() else None
    recorded = store.manifest.get("runtime") if store is not None else None
    _check_runtime(runtime, store, recorded, device, precision, decode)
    if recorded is not None:
        precision = _recorded_precision(recorded, precision)
        if recorded["name"] == ONNXRUNTIME and model is None and device in ("auto", "cpu"):
            folder = model_dir(store.path)
            if export_state(folder, store.model["fingerprint"])[0] == "ok":
                return EmbedModel(load_export(folder, store.model["fingerprint"]), None, dict(recorded))
            device = "cpu"  # the export must be made again (under the lock), from the model on the CPU
    if runtime == ONNXRUNTIME and store is None:
        device = "cpu"  # the torch model is only exported and checked; onnxruntime embeds on the CPU
    spec = model or (store.model["spec"] if store is not None else None)
    torch_encoder = load_encoder(spec, device=device, precision=precision, allow_pickle_files=allow_pickle_files)
    if recorded is not None:
        return EmbedModel(torch_encoder, torch_encoder, dict(recorded))
    # A store made before runtimes were recorded (or a new one) embeds with torch as it is loaded now.
    may_switch = store is None and torch_encoder.device.type == "cpu" and precision != "bf16" and decode != "device" and runtime != TORCH
    return EmbedModel(torch_encoder, torch_encoder, {"name": TORCH, "precision": torch_encoder.precision}, may_switch, runtime == ONNXRUNTIME)


def _decodable(paths: Sequence[str], preprocess, count: int) -> list[str]:
    """Up to ``count`` of ``paths`` that decode (bad files are reported by the embed itself, not here)."""
    from ..errors import InputError
    from ..images import load_image_array

    found = []
    for path in paths[: 4 * count]:
        try:
            load_image_array(path, preprocess)
        except InputError:
            continue
        found.append(path)
        if len(found) == count:
            break
    return found


def ensure_export(store: Store, embed_model: EmbedModel, sample_paths: Sequence[str], reporter: Reporter):
    """Give the store a usable export of its model unless it has one (or its model is known not to export).

    Called under the store's lock. A model that cannot be exported is recorded as such in
    ``_model/export.json`` and not tried again; the reporter is told once.

    Returns:
        The export's ``ExportInfo`` (``ok`` or ``failed``), or None when it could not be written (full disk).
    """
    from ..encoders import load_encoder
    from ..encoders.export import export_encoder
    from ..runtime import copy_export, export_dir, read_export_info

    fingerprint = store.model["fingerprint"]
    folder, cached = model_dir(store.path), export_dir(fingerprint)
    state, _ = export_state(folder, fingerprint)
    if state in ("ok", "failed"):
        return read_export_info(folder)
    try:
        if export_state(cached, fingerprint)[0] == "ok":
            return copy_export(cached, folder)  # exported and checked before, for another store of this model
        torch_encoder = embed_model.torch_encoder or load_encoder(store.model["spec"], device="cpu", precision="fp32")
        reporter.log(f"exporting the model to ONNX for fast queries ({folder})")
        info = export_encoder(torch_encoder, folder, sample_paths=_decodable(sample_paths, torch_encoder.preprocess, SAMPLE_IMAGES))
    except OSError as exc:  # a full disk: the rows matter more than the export, which the next run makes
        reporter.warn(f"could not write the ONNX export ({exc.strerror or exc}); searches will load the model with torch")
        return None
    if not info.ok:
        reporter.warn(f"the model could not be exported to ONNX, so searches will load it with torch: {info.reason}")
        return info
    try:
        copy_export(folder, cached)  # the next store of this model copies it instead of exporting again
    except (OSError, ExportError):
        pass  # a read-only home: the cache is only a shortcut
    return info


def settle_runtime(store: Store, embed_model: EmbedModel, info) -> EmbedModel:
    """Embed through the export when the store's runtime is onnxruntime (a new CPU store becomes one when
    its export passed and ran faster than torch), and record the runtime in the manifest.

    Returns:
        The ``EmbedModel`` to embed with.
    """
    faster = embed_model.always_switch or info is None or info.onnxruntime_faster is not False
    switch = embed_model.may_switch and info is not None and info.ok and faster
    wants_onnx = switch or embed_model.runtime["name"] == ONNXRUNTIME
    if wants_onnx and embed_model.encoder is embed_model.torch_encoder:
        try:
            encoder = load_export(model_dir(store.path), store.model["fingerprint"])
            encoder.prepare("image")
            embed_model = EmbedModel(encoder, embed_model.torch_encoder, {"name": ONNXRUNTIME, "precision": "fp32"})
        except ExportError:
            pass  # torch goes on; for an onnxruntime store it runs fp32, whose vectors match within float rounding
    if store.manifest.get("runtime") != embed_model.runtime:
        store.write_manifest(runtime=embed_model.runtime)
    return embed_model


def export_store_model(store_path, reporter: Reporter | None = None, allow_pickle_files: bool = False, take_lock: bool = True):
    """Export a store's model again into ``STORE/_model/`` (``vecmetric export --store``, ``verify --repair``).

    It is checked on up to eight of the store's own images that are still on disk.

    Args:
        take_lock: take the store's lock (False only for a caller that holds it).

    Returns:
        The new export's ``ExportInfo`` (``ok``, or ``failed`` with the reason).

    Raises:
        StoreError: no store; StoreLockedError: another process writes it; EncoderError: its model cannot be loaded.
    """
    import contextlib

    from ..encoders import load_encoder
    from ..encoders.export import export_encoder
    from ..runtime import copy_export, export_dir
    from ._lock import StoreLock

    store = open_store(store_path)
    encoder = load_encoder(store.model["spec"], device="cpu", precision="fp32", allow_pickle_files=allow_pickle_files)
    store.check_model(encoder)
    paths = [p for p in store.read_table(["path"]).column("path").to_pylist()[:64] if Path(p).is_file()]
    with StoreLock(store.path, "export") if take_lock else contextlib.nullcontext():
        info = export_encoder(encoder, model_dir(store.path), sample_paths=_decodable(paths, encoder.preprocess, SAMPLE_IMAGES))
        if info.ok:
            try:
                copy_export(info.folder, export_dir(encoder.fingerprint))
            except (OSError, ExportError):
                pass
    return info
