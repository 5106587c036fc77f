"""Building and updating a store's index: add new rows, mark removed ones, never silently stale."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

from .._background import read_ahead
from ..errors import IndexStateError
from ..progress import Reporter, reporter_or_default
from ..store import Store, StoreLock, embeddings_to_numpy
from ._hnsw import HnswIndex, IndexParams
from ._status import IndexState, index_status

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


def build_index(
    store: Store,
    metric: str | None = None,
    m: int | None = None,
    ef_construction: int | None = None,
    ef: int | None = None,
    rebuild: bool = False,
    threads: int = -1,
    reporter: Reporter | None = None,
    take_lock: bool = True,
) -> IndexResult:
    """Bring ``store``'s HNSW index in step with its rows.

    An index that ``index_status`` finds current or stale, built with the same parameters,
    gets only the new rows added and the removed rows marked deleted; otherwise (missing,
    foreign, damaged, other parameters, or ``rebuild``) it is built afresh.

    Args:
        store: an open store.
        metric: ``cosine``, ``ip`` or ``l2`` (default: the existing index's, else the store's).
        m, ef_construction: HNSW construction parameters (defaults 16 and 200).
        ef: the default query-time ef saved in the sidecar (default 64).
        rebuild: build from scratch even when an update would do.
        threads: hnswlib threads (-1: all cores).
        reporter: receives the progress (``start``, then ``advance`` per batch of vectors added).
        take_lock: take the store's lock (False only for a caller that already holds it).

    Returns:
        An ``IndexResult``.
    """
    import numpy as np
    import pyarrow.compute as pc

    reporter = reporter_or_default(reporter)
    started = time.perf_counter()
    with StoreLock(store.path, "index") if take_lock else contextlib.nullcontext():
        state = index_status(store)
        existing = _load_updatable(store, state)
        # --rebuild keeps the existing index's parameters unless new ones are given.
        defaults = state.sidecar or {}
        params = IndexParams(
            metric=metric or defaults.get("metric") or store.metric,
            m=m or defaults.get("M", 16),
            ef_construction=ef_construction or defaults.get("ef_construction", 200),
            ef=ef or defaults.get("ef", 64),
        )
        if rebuild or (existing is not None and not _same_construction(existing.sidecar, params)):
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
        reporter.start("Indexing", int(len(new_ids)))
        if len(gone_ids):
            index.mark_deleted(gone_ids)
        if len(new_ids):
            flt = None if existing is None else pc.field("id").isin(new_ids)
            # One decoding thread: hnswlib's add_items already keeps every core busy.
            batches = store.iter_batches(["id", "embedding"], batch_size=ADD_BATCH, filter=flt, use_threads=False)
            for batch in read_ahead(batches, name="vecmetric-index-read"):
                index.add(embeddings_to_numpy(batch.column("embedding")), batch.column("id").to_numpy(), threads=threads)
                reporter.advance(batch.num_rows)
        index.save(
            store_snapshot=snapshot,
            model_fingerprint=store.model["fingerprint"],
            store_id=store.manifest.get("store_id"),
            model_spec=store.model["spec"],
            deleted=int(index.index.get_current_count() - index.count),
        )
    return IndexResult(params.metric, index.count, int(len(new_ids)), int(len(gone_ids)), existing is None, time.perf_counter() - started)


def _load_updatable(store: Store, state: IndexState) -> HnswIndex | None:
    """The existing index when an update can bring it up to date, else None (it will be rebuilt)."""
    if not state.updatable:
        return None
    try:
        return HnswIndex.load(store.index_dir)
    except IndexStateError:
        return None  # damaged inside its files: rebuild


def _same_construction(sidecar: dict[str, Any], params: IndexParams) -> bool:
    """Whether an index was built with these construction parameters (else adding to it would mix two graphs)."""
    return (sidecar.get("metric"), sidecar.get("M"), sidecar.get("ef_construction")) == (params.metric, params.m, params.ef_construction)


def load_current_index(store: Store, reporter: Reporter | None = None) -> HnswIndex:
    """The store's index, built or updated first unless ``index_status`` finds it current (never silently out of date).

    A stale index is updated; a missing, foreign or damaged one is built afresh (it is derived
    data: the vectors it is built from are in the store).

    Raises:
        IndexStateError: the index still does not answer for the store after the update (a bug, or a
            concurrent writer), or its files are damaged.
        StoreLockedError: it must be updated while another process writes the store.
    """
    state = index_status(store)
    if state.usable:
        try:
            return HnswIndex.load(store.index_dir)
        except IndexStateError:
            pass  # damaged inside its files: build_index finds that too, and rebuilds
    build_index(store, reporter=reporter)
    state = index_status(store)
    if not state.usable:
        raise IndexStateError(f"the index does not answer for the store: {state.reason}", hint="run 'vecmetric index --rebuild'")
    return HnswIndex.load(store.index_dir)
