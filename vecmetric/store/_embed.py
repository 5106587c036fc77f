"""``embed_directory``: incremental, resumable embedding of an image folder into a store.

The stages, each its own function: scan the folder (``scan_folder``), open or create the store
and its model, plan against the stored rows (``plan_embed``), turn the files to embed into
outcomes with an engine (``vecmetric.engines``), and write rows (``RowWriter``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._fsutil import remove_dead_temporaries
from ..errors import InputError
from ..progress import Reporter, reporter_or_default
from ._labels import root_of
from ._lock import StoreLock
from ._manifest import create_store, open_store, prepare_store_folder
from ._plan import EmbedPlan, plan_embed
from ._runtime import ensure_export, load_embed_model, settle_runtime
from ._scan import FileEntry, scan_folder
from ._store import MANIFEST_NAME, Store
from ._writer import RowWriter

__all__ = ["EmbedResult", "embed_directory"]


@dataclass
class EmbedResult:
    """What one ``embed_directory`` run did."""

    store: str
    model: str
    found: int = 0
    unchanged: int = 0
    embedded: int = 0
    reused: int = 0
    removed: int = 0
    relabelled: int = 0
    ignored: int = 0
    runtime: str = ""
    skipped: list[dict[str, Any]] = field(default_factory=list)
    rows: int = 0
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return (self.embedded + self.reused) / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "skipped"}
        out["skipped"] = len(self.skipped)
        out["images_per_second"] = round(self.images_per_second, 2)
        return out


def _open_or_create(store_path: Path, encoder) -> Store:
    """The store (created for ``encoder`` when new), checked to hold this encoder's vectors; call under the lock."""
    if (store_path / MANIFEST_NAME).exists():
        store = open_store(store_path)
        store.check_model(encoder)
        return store
    return create_store(store_path, encoder)


def _write_outcomes(outcomes, todo: list[FileEntry], writer: RowWriter, result: EmbedResult) -> None:
    """Queue each outcome's row, or record why its file is skipped; Ctrl-C keeps every vector computed so far."""
    try:
        for index, digest, vector, error in outcomes:
            entry = todo[index]
            if error is not None:
                result.skipped.append({"path": entry.path, "reason": error})
            else:
                writer.add(entry, digest, vector)
    except KeyboardInterrupt:
        writer.flush()
        raise
    writer.flush()


def _run_plan(store: Store, encoder, plan: EmbedPlan, result: EmbedResult, engine_options: dict[str, Any], reporter: Reporter) -> int:
    """Carry out ``plan`` on the locked store; returns the next free row id."""
    from ..engines.local import local_outcomes

    if plan.stale_ids:
        store.delete_ids(plan.stale_ids)  # old versions of changed files: useless now
    if plan.relabel:
        result.relabelled = store.relabel(plan.relabel)
    writer = RowWriter(store, plan.next_id, encoder.fingerprint, engine_options.pop("flush_rows", None))
    if plan.todo:
        reporter.start("Embedding", len(plan.todo))
        outcomes = local_outcomes(plan.todo, frozenset(plan.known_hashes), encoder, reporter=reporter, **engine_options)
        try:
            _write_outcomes(outcomes, plan.todo, writer, result)
        finally:
            result.embedded, result.reused = writer.embedded, writer.reused
    if plan.missing_ids:
        result.removed = store.delete_ids(plan.missing_ids)
    return writer.next_id


def embed_directory(
    folder: str | os.PathLike,
    store: str | os.PathLike,
    model: str | None = None,
    device: str = "auto",
    precision: str = "auto",
    batch_size: int = 64,
    workers: int | None = None,
    reporter: Reporter | None = None,
    flush_rows: int | None = None,
    allow_pickle_files: bool = False,
    decode: str = "auto",
) -> EmbedResult:
    """Embed every image under ``folder`` into ``store``, incrementally.

    Unchanged files (same path, size and mtime) are kept; new and changed files are
    embedded; files with a content hash the store already holds (renamed or duplicate
    files) reuse its vector; rows of files under ``folder`` that no longer exist are
    removed. Rows are written in atomic batches, so a killed run loses at most the batch
    in flight, and the next run continues where it stopped. The folder is recorded as one
    of the store's embed roots; rows are labelled by ``label_for`` below the outermost root.

    Args:
        folder: the image folder (walked recursively).
        store: the store folder; created if missing.
        model: a model spec; None uses the store's own model (or the default for a new store).
        device, precision: see ``load_encoder``.
        batch_size: images per forward pass.
        workers: decoding processes (default: ``_system.loader_workers``; 0 decodes in this process).
        reporter: receives the progress (``start``, then ``advance`` per batch).
        flush_rows: rows per written batch (default: ``$VECMETRIC_FLUSH_ROWS``, else 4096).
        allow_pickle_files: accept a checkpoint folder that also holds pickle files (never read).
        decode: where JPEGs are decoded: ``cpu`` (the workers, with Pillow), ``device`` (the
            encoder's device, with torchvision; other formats still on the CPU) or ``auto``
            (``device`` on CUDA when torchvision has nvJPEG there, else ``cpu``).

    Returns:
        An ``EmbedResult``.

    Raises:
        InputError: ``folder`` is missing or holds no images; ``decode`` is not auto, cpu or device.
        StoreMismatchError: the store was made by another model.
        StoreLockedError: another process is writing the store.
    """
    from ..engines.local import DECODE_CHOICES

    reporter = reporter_or_default(reporter)
    started = time.perf_counter()
    if decode not in DECODE_CHOICES:
        raise InputError(f"--decode must be auto, cpu or device, not {decode!r}")
    root = Path(folder).expanduser().resolve()
    store_path = Path(store)
    existing_roots = open_store(store_path).roots if (store_path / MANIFEST_NAME).exists() else []
    scan = scan_folder(folder, label_root=root_of(str(root), existing_roots))
    if not scan.files:
        extra = f" ({scan.ignored} files without an image extension)" if scan.ignored else ""
        raise InputError(f"no images found in {folder}{extra}")
    embed_model = load_embed_model(store_path, model, device, precision, allow_pickle_files, decode)
    result = EmbedResult(store=str(store_path.resolve()), model=embed_model.encoder.spec, found=len(scan.files), ignored=scan.ignored)
    result.skipped = [{"path": p, "reason": r} for p, r in scan.problems]
    engine_options = {"batch_size": batch_size, "workers": workers, "decode": decode, "flush_rows": flush_rows}

    prepare_store_folder(store_path)
    # The store is created under its lock: two runs racing to create it cannot both write a manifest.
    with StoreLock(store_path, "embed"):
        store_obj = _open_or_create(store_path, embed_model.encoder)
        remove_dead_temporaries(store_path)  # half-written files of a killed run
        store_obj.add_root(str(root))
        plan = plan_embed(store_obj, scan.files, root)
        result.unchanged = plan.unchanged
        export = ensure_export(store_obj, embed_model, [entry.path for entry in plan.todo or scan.files], reporter)
        embed_model = settle_runtime(store_obj, embed_model, export)
        result.runtime = f"{embed_model.runtime['name']} {embed_model.runtime['precision']}"
        next_id = _run_plan(store_obj, embed_model.encoder, plan, result, engine_options, reporter)
        result.rows = store_obj.count()
        store_obj.write_errors(result.skipped)
        store_obj.write_manifest(
            next_id=next_id,
            counts={"rows": result.rows, "last_run_skipped": len(result.skipped)},
            last_run={k: v for k, v in result.to_dict().items() if k not in ("store", "model")},
        )
    result.seconds = time.perf_counter() - started
    return result
