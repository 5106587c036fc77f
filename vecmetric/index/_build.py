"""Building and updating a store's index: add new rows, mark removed ones, never silently stale."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from ..errors import IndexStateError
from ..store import Store, StoreLock, embeddings_to_numpy
from ._hnsw import SIDECAR_NAME, HnswIndex, IndexParams

ADD_BATCH = 16384  # rows per add_items call; small, so little of the store read waits before the first add


@dataclass
class IndexResult:
    """What ``build_index`` did."""

    metric: str
    count: int
    added: int
    deleted: int
    rebuilt: bool
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def index_is_current(store: Store) -> bool:
    """True when the store's index exists and reflects the store's rows as they are now."""
    sidecar_path = store.index_dir / SIDECAR_NAME
    if not sidecar_path.is_file():
        return False
    from .._fsutil import read_json

    try:
        return read_json(sidecar_path).get("store_snapshot") == store.snapshot()
    except (OSError, ValueError):
        return False


def build_index(
    store: Store,
    metric: str | None = None,
    m: int | None = None,
    ef_construction: int | None = None,
    ef: int | None = None,
    rebuild: bool = False,
    threads: int = -1,
    progress: Callable[[str, dict[str, Any]], None] | None = None,
    take_lock: bool = True,
) -> IndexResult:
    """Bring ``store``'s HNSW index in step with its rows.

    An existing index with the same parameters gets only the new rows added and the
    removed rows marked deleted; otherwise (or with ``rebuild``) it is built afresh.

    Args:
        store: an open store.
        metric: ``cosine``, ``ip`` or ``l2`` (default: the existing index's, else the store's).
        m, ef_construction: HNSW construction parameters (defaults 16 and 200).
        ef: the default query-time ef saved in the sidecar (default 64).
        rebuild: build from scratch even when an update would do.
        threads: hnswlib threads (-1: all cores).
        progress: called as ``progress(event, data)`` with ``start`` (total) and ``advance`` (n).
        take_lock: take the store's lock (False only for a caller that already holds it).

    Returns:
        An ``IndexResult``.
    """
    import numpy as np
    import pyarrow.compute as pc

    notify = progress or (lambda event, data: None)
    started = time.perf_counter()
    with StoreLock(store.path, "index") if take_lock else contextlib.nullcontext():
        existing = None
        if (store.index_dir / SIDECAR_NAME).is_file():
            try:
                existing = HnswIndex.load(store.index_dir)
            except IndexStateError:
                existing = None  # damaged: rebuild
        # --rebuild keeps the existing index's parameters unless new ones are given.
        defaults = existing.sidecar if existing else {}
        if rebuild:
            existing = None
        params = IndexParams(
            metric=metric or defaults.get("metric") or store.metric,
            m=m or defaults.get("M", 16),
            ef_construction=ef_construction or defaults.get("ef_construction", 200),
            ef=ef or defaults.get("ef", 64),
        )
        if existing is not None and (
            existing.sidecar.get("metric") != params.metric
            or existing.sidecar.get("M") != params.m
            or existing.sidecar.get("ef_construction") != params.ef_construction
            or existing.sidecar.get("model_fingerprint") != store.model["fingerprint"]
            or existing.sidecar.get("store_id") != store.manifest.get("store_id")
            or int(existing.sidecar.get("dim", -1)) != store.dim
        ):
            existing = None
        snapshot = store.snapshot()
        store_ids = np.sort(store.read_table(["id"]).column("id").to_numpy())
        if existing is None:
            index = HnswIndex.create(store.index_dir, store.dim, params, capacity=len(store_ids))
            new_ids, gone_ids = store_ids, np.zeros(0, dtype=np.int64)
        else:
            index = existing
            index.sidecar["ef"] = params.ef
            new_ids = np.setdiff1d(store_ids, index.ids, assume_unique=True)
            gone_ids = np.setdiff1d(index.ids, store_ids, assume_unique=True)
        notify("start", {"total": int(len(new_ids))})
        if len(gone_ids):
            index.mark_deleted(gone_ids)
        if len(new_ids):
            flt = None if existing is None else pc.field("id").isin(new_ids)
            # One decoding thread: hnswlib's add_items already keeps every core busy.
            batches = store.iter_batches(["id", "embedding"], batch_size=ADD_BATCH, filter=flt, use_threads=False)
            for batch in _read_ahead(batches):
                index.add(embeddings_to_numpy(batch.column("embedding")), batch.column("id").to_numpy(), threads=threads)
                notify("advance", {"n": batch.num_rows})
        index.save(
            store_snapshot=snapshot,
            model_fingerprint=store.model["fingerprint"],
            store_id=store.manifest.get("store_id"),
            model_spec=store.model["spec"],
            deleted=int(index.index.get_current_count() - index.count),
        )
    return IndexResult(params.metric, index.count, int(len(new_ids)), int(len(gone_ids)), existing is None, time.perf_counter() - started)


def _read_ahead(batches: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """Yield from ``batches``, reading up to ``depth`` batches ahead in a thread.

    Reading and decoding Parquet then overlaps hnswlib's ``add_items`` (which releases the
    GIL), so an index build costs about what hnswlib alone does (benchmarks/index_bench.py).
    Errors raised while reading are re-raised here.
    """
    import queue
    import threading

    done = object()
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in batches:
                if stop.is_set():
                    return
                slots.put((item, None))
            slots.put((done, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            slots.put((done, exc))

    reader = threading.Thread(target=produce, name="vecmetric-index-read", daemon=True)
    reader.start()
    try:
        while True:
            item, error = slots.get()
            if error is not None:
                raise error
            if item is done:
                return
            yield item
    finally:
        stop.set()
        while reader.is_alive():  # unblock a producer waiting on a full queue
            try:
                slots.get_nowait()
            except queue.Empty:
                reader.join(0.05)


def load_current_index(store: Store, progress=None) -> HnswIndex:
    """The store's index, built or updated first when missing or stale (never silently out of date)."""
    if not index_is_current(store):
        build_index(store, progress=progress)
    index = HnswIndex.load(store.index_dir)
    if index.sidecar.get("model_fingerprint") != store.model["fingerprint"] or index.sidecar.get("store_id") != store.manifest.get("store_id"):
        raise IndexStateError("the index was built from another store's vectors", hint="run 'vecmetric index --rebuild'")
    if index.sidecar.get("dim") != store.dim:
        # Querying hnswlib with the wrong dimension returns wrong neighbours rather than failing.
        raise IndexStateError(f"the index has dimension {index.sidecar.get('dim')}, the store {store.dim}", hint="run 'vecmetric index --rebuild'")
    return index
