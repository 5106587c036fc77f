"""``embed_directory``: incremental, resumable embedding of an image folder into a store."""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .._fsutil import remove_dead_temporaries
from ..errors import InputError
from ..images import ImageDecodeError, decode_and_preprocess
from ._device_decode import DeviceJpegDecoder, assemble_batch, device_decodable, device_decode_available, in_background
from ._lock import StoreLock
from ._scan import FileEntry, scan_folder
from ._store import MANIFEST_NAME, Store, create_store, numpy_to_embeddings, open_store

FLUSH_ROWS = 4096
FLUSH_ROWS_ENV = "VECMETRIC_FLUSH_ROWS"  # overrides FLUSH_ROWS (the crash-safety tests flush every few rows)
FLUSH_SECONDS = 30.0
WORKER_TIMEOUT = float(os.environ.get("VECMETRIC_WORKER_TIMEOUT", 300))  # seconds without a batch


def content_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


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
    ignored: int = 0
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


class _DecodeDataset:
    """Reads, hashes and decodes files in DataLoader workers.

    A file whose content hash the store already holds is not decoded: its vector is reused.
    With ``device_jpeg``, a JPEG the device decoder can take is passed on as its raw bytes
    (a 1-D uint8 tensor) and pixel count, for the main process to decode on the GPU.
    """

    def __init__(self, files: list[FileEntry], preprocess, known_hashes: frozenset[str], device_jpeg: bool = False):
        self.files = files
        self.preprocess = preprocess
        self.known_hashes = known_hashes
        self.device_jpeg = device_jpeg

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        entry = self.files[i]
        try:
            with open(entry.path, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            return i, None, None, f"cannot read: {exc.strerror or exc}"
        digest = content_hash(data)
        if digest in self.known_hashes:
            return i, digest, None, None
        pixel_count = device_decodable(data) if self.device_jpeg else None
        if pixel_count:
            import torch

            return i, digest, (torch.frombuffer(bytearray(data), dtype=torch.uint8), pixel_count), None
        try:
            return i, digest, decode_and_preprocess(data, self.preprocess), None
        except ImageDecodeError as exc:
            return i, digest, None, str(exc)


def _collate(items):
    """(meta, pixels, jpegs): meta holds (index, hash, kind, error) per item, kind being
    "pixels" (a row of ``pixels``), "jpeg" (bytes to decode, a slice of ``jpegs``) or None.

    ``jpegs`` is (buffer, sizes, pixel_counts): every JPEG of the batch in one tensor, because
    each tensor a worker hands over costs a shared-memory file and a file descriptor.
    """
    import numpy as np
    import torch

    meta, pixels, blobs, pixel_counts = [], [], [], []
    for i, digest, payload, err in items:
        kind = None
        if isinstance(payload, tuple):
            kind = "jpeg"
            blobs.append(payload[0])
            pixel_counts.append(payload[1])
        elif payload is not None:
            kind = "pixels"
            pixels.append(payload)
        meta.append((i, digest, kind, err))
    jpegs = (torch.cat(blobs), [len(b) for b in blobs], pixel_counts) if blobs else None
    return meta, torch.from_numpy(np.stack(pixels)) if pixels else None, jpegs


def _batches(loader):
    """Iterate a DataLoader, turning a stalled worker into a clear error."""
    try:
        yield from loader
    except RuntimeError as exc:
        if "timed out" not in str(exc) and "shared memory" not in str(exc).lower():
            raise
        raise InputError(
            f"the decoding workers stopped answering ({str(exc).splitlines()[0][:120]})",
            hint="shared memory (/dev/shm) may be full or too small; run with --workers 0, or free space; work so far is kept",
        ) from None


def _default_workers(device=None, device_decode: bool = False) -> int:
    """Decoding processes: one per core, at most 8 on CPU (the model needs the cores too);
    every core (at most 32) with a GPU, where the model barely uses the CPU and decoding is the bottleneck
    (benchmarks/RESULTS.md: on a 16-core H200 box 16 workers embedded 2.3x faster than 8);
    half the cores when the GPU decodes JPEGs, as the workers then only read and hash files and
    the process feeding nvJPEG needs CPU time of its own (8 workers beat 16 by 28% on that box)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 2
    if device_decode:
        return max(2, min(16, cores // 2))
    if device is not None and getattr(device, "type", "cpu") != "cpu":
        return max(1, min(32, cores))
    return max(1, min(8, cores))


def _open_or_create(store_path: Path, model: str | None, device: str, precision: str, allow_pickle_files: bool):
    from ..encoders import load_encoder

    if (store_path / MANIFEST_NAME).exists():
        store = open_store(store_path)
        encoder = load_encoder(model or store.model["spec"], device=device, precision=precision, allow_pickle_files=allow_pickle_files)
        store.check_model(encoder)
        return store, encoder
    encoder = load_encoder(model, device=device, precision=precision, allow_pickle_files=allow_pickle_files)
    return create_store(store_path, encoder), encoder


def embed_directory(
    folder: str | os.PathLike,
    store: str | os.PathLike,
    model: str | None = None,
    device: str = "auto",
    precision: str = "auto",
    batch_size: int = 64,
    workers: int | None = None,
    progress: Callable[[str, dict[str, Any]], None] | None = None,
    flush_rows: int | None = None,
    allow_pickle_files: bool = False,
    decode: str = "auto",
) -> EmbedResult:
    """Embed every image under ``folder`` into ``store``, incrementally.

    Unchanged files (same path, size and mtime) are kept; new and changed files are
    embedded; files with a content hash the store already holds (renamed or duplicate
    files) reuse its vector; rows of files under ``folder`` that no longer exist are
    removed. Rows are written in atomic batches, so a killed run loses at most the batch
    in flight, and the next run continues where it stopped.

    Args:
        folder: the image folder (walked recursively).
        store: the store folder; created if missing.
        model: a model spec; None uses the store's own model (or the default for a new store).
        device, precision: see ``load_encoder``.
        batch_size: images per forward pass.
        workers: decoding processes (default: one per core, at most 8 on CPU, every core with a GPU;
            0 decodes in this process).
        progress: called as ``progress(event, data)`` with events ``start`` (total) and ``advance`` (n).
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
    import numpy as np
    import pyarrow as pa
    import torch

    notify = progress or (lambda event, data: None)
    started = time.perf_counter()
    if decode not in ("auto", "cpu", "device"):
        raise InputError(f"--decode must be auto, cpu or device, not {decode!r}")
    if flush_rows is None:
        flush_rows = max(1, int(os.environ.get(FLUSH_ROWS_ENV) or FLUSH_ROWS))
    scan = scan_folder(folder)
    if not scan.files:
        extra = f" ({scan.ignored} files without an image extension)" if scan.ignored else ""
        raise InputError(f"no images found in {folder}{extra}")
    store_path = Path(store)
    store_obj, encoder = _open_or_create(store_path, model, device, precision, allow_pickle_files)
    result = EmbedResult(store=str(store_path.resolve()), model=encoder.spec, found=len(scan.files), ignored=scan.ignored)
    result.skipped = [{"path": p, "reason": r} for p, r in scan.problems]

    with StoreLock(store_path, "embed"):
        remove_dead_temporaries(store_path)  # half-written files of a killed run
        plan = _plan(store_obj, scan.files, Path(folder).expanduser().resolve())
        result.unchanged = plan.unchanged
        if plan.stale_ids:
            store_obj.delete_ids(plan.stale_ids)  # old versions of changed files: useless now
        next_id = plan.next_id
        fingerprint = encoder.fingerprint
        pending: list[tuple[FileEntry, str, Any]] = []  # (entry, hash, vector or None to reuse)
        last_flush = time.monotonic()

        def flush() -> None:
            nonlocal next_id, last_flush
            if not pending:
                return
            # Taken out of ``pending`` before writing: a Ctrl-C that lands after the part is in
            # place must not make the flush in the KeyboardInterrupt handler write these rows again.
            items = list(pending)
            pending.clear()
            reuse = store_obj.vectors_for_hashes(h for _, h, v in items if v is None)
            rows_vectors, entries, hashes = [], [], []
            for entry, digest, vector in items:
                if vector is None:
                    vector = reuse.get(digest)
                    if vector is None:  # the row we meant to reuse vanished: embed again next run
                        continue
                    result.reused += 1
                else:
                    result.embedded += 1
                rows_vectors.append(vector)
                entries.append(entry)
                hashes.append(digest)
            if entries:
                ids = list(range(next_id, next_id + len(entries)))
                next_id += len(entries)
                # The manifest's next id moves first, so an id is never handed out twice.
                store_obj.write_manifest(next_id=next_id)
                table = pa.table(
                    {
                        "id": pa.array(ids, pa.int64()),
                        "path": [e.path for e in entries],
                        "size": pa.array([e.size for e in entries], pa.int64()),
                        "mtime_ns": pa.array([e.mtime_ns for e in entries], pa.int64()),
                        "content_hash": hashes,
                        "label": [e.label for e in entries],
                        "model": [fingerprint] * len(entries),
                        "embedding": numpy_to_embeddings(np.stack(rows_vectors)),
                    }
                )
                store_obj.append(table)
            last_flush = time.monotonic()

        todo = plan.todo
        if todo:
            notify("start", {"total": len(todo), "unchanged": plan.unchanged})
            decoder = _device_decoder(encoder, decode)
            dataset = _DecodeDataset(todo, encoder.preprocess, frozenset(plan.known_hashes), device_jpeg=decoder is not None)
            n_workers = _default_workers(encoder.device, decoder is not None) if workers is None else workers
            loader = torch.utils.data.DataLoader(
                dataset,
                batch_size=batch_size,
                shuffle=False,
                num_workers=n_workers,
                collate_fn=_collate,
                prefetch_factor=4 if n_workers else None,
                persistent_workers=False,
                # Pinning helps the pixel batches of CPU decoding; JPEG bytes go to nvJPEG from any memory.
                pin_memory=encoder.device.type == "cuda" and decoder is None,
                # A worker that cannot hand a batch over (e.g. /dev/shm full) would otherwise
                # leave this process waiting forever.
                timeout=WORKER_TIMEOUT if n_workers else 0,
            )
            batches = (assemble_batch(*item, decoder, encoder.device) for item in _batches(loader))
            if decoder is not None:
                batches = in_background(batches)
            try:
                for meta, batch in batches:
                    vectors = encoder.embed_tensors(batch) if batch is not None else None
                    row = 0
                    for i, digest, decoded, error in meta:
                        entry = todo[i]
                        if error is not None:
                            result.skipped.append({"path": entry.path, "reason": error})
                        elif decoded:
                            pending.append((entry, digest, vectors[row]))
                            row += 1
                        else:
                            pending.append((entry, digest, None))
                    notify("advance", {"n": len(meta)})
                    if len(pending) >= flush_rows or time.monotonic() - last_flush > FLUSH_SECONDS:
                        flush()
            except KeyboardInterrupt:
                flush()  # Ctrl-C keeps every vector computed so far
                raise
            flush()
        if plan.missing_ids:
            result.removed = store_obj.delete_ids(plan.missing_ids)
        result.rows = store_obj.count()
        store_obj.write_errors(result.skipped)
        store_obj.write_manifest(
            next_id=next_id,
            counts={"rows": result.rows, "last_run_skipped": len(result.skipped)},
            last_run={k: v for k, v in result.to_dict().items() if k not in ("store", "model")},
        )
    result.seconds = time.perf_counter() - started
    return result


def _device_decoder(encoder, decode: str):
    """The device JPEG decoder ``decode`` asks for, or None to decode on the CPU."""
    if decode == "cpu" or (decode == "auto" and encoder.device.type != "cuda"):
        return None
    if not device_decode_available(encoder.device):
        if decode == "device":
            raise InputError(
                f"torchvision cannot decode JPEGs on {encoder.device} here", hint="use --decode cpu (or auto, which falls back by itself)"
            )
        return None
    return DeviceJpegDecoder(encoder.device, encoder.preprocess)


@dataclass
class _Plan:
    todo: list[FileEntry]
    unchanged: int
    stale_ids: list[int]  # rows of changed files and duplicate rows
    missing_ids: list[int]  # rows of files under the folder that are gone
    known_hashes: set[str]
    next_id: int


def _plan(store: Store, files: list[FileEntry], root: Path) -> _Plan:
    """Compare the folder with the store: what to keep, embed, and remove."""
    table = store.read_table(["id", "path", "size", "mtime_ns", "content_hash"])
    ids = table.column("id").to_pylist()
    paths = table.column("path").to_pylist()
    sizes = table.column("size").to_pylist()
    mtimes = table.column("mtime_ns").to_pylist()
    hashes = table.column("content_hash").to_pylist()
    by_path: dict[str, tuple[int, int, int, str]] = {}
    stale: list[int] = []
    for row in sorted(zip(ids, paths, sizes, mtimes, hashes)):
        if row[1] in by_path:  # duplicate path (should not happen): keep the newest row
            stale.append(by_path[row[1]][0])
        by_path[row[1]] = (row[0], row[2], row[3], row[4])
    on_disk = set()
    todo: list[FileEntry] = []
    unchanged = 0
    for entry in files:
        on_disk.add(entry.path)
        old = by_path.get(entry.path)
        if old is not None and old[1] == entry.size and old[2] == entry.mtime_ns:
            unchanged += 1
            continue
        if old is not None:
            stale.append(old[0])
        todo.append(entry)
    prefix = str(root).rstrip(os.sep) + os.sep
    missing = [row[0] for path, row in by_path.items() if path.startswith(prefix) and path not in on_disk]
    stale_set = set(stale)
    known = {row[3] for row in by_path.values() if row[0] not in stale_set and row[3]}
    next_id = max(int(store.manifest.get("next_id", 0)), (max(ids) + 1) if ids else 0)
    return _Plan(todo, unchanged, stale, missing, known, next_id)
