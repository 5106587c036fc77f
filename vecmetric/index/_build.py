"""Building and updating a store's index: add new rows, mark removed ones, never silently stale.

The index is one hnswlib index or N shards (``_shards``). An update touches only the shards that
hold removed rows or receive new ones; new rows go to the smallest shards. Each touched shard is
written under a fresh generation, then one sidecar replacement commits them all.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from .._background import read_ahead
from ..errors import IndexStateError, InputError
from ..progress import Reporter, reporter_or_default
from ..store import Store, StoreLock, embeddings_to_numpy
from ._hnsw import HnswIndex, IndexParams
from ._shards import ShardedIndex, assign_new_ids, commit_shards, load_index, shard_count, shard_generation
from ._status import IndexState, index_status

ADD_BATCH = 16384  # rows per add_items call; small, so little of the store read waits before the first add
INDEX_ENGINES = ("local", "ray")


@dataclass
class IndexResult:
    """What ``build_index`` did."""

    metric: str
    count: int
    added: int
    deleted: int
    rebuilt: bool
    seconds: float
    shards: int = 1
    touched: list[int] = field(default_factory=list)  # the shards written (the others kept their files)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ShardWork:
    """One shard's part of a build: its current files (None: new), the rows it gains and loses."""

    shard: int
    files: dict[str, Any] | None
    ids: Any  # the row ids it holds now
    new_ids: Any
    gone_ids: Any

    @property
    def touched(self) -> bool:
        return self.files is None or len(self.new_ids) > 0 or len(self.gone_ids) > 0


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
    shards: int | None = None,
    engine: str = "local",
    address: str | None = None,
) -> IndexResult:
    """Bring ``store``'s HNSW index in step with its rows.

    An index that ``index_status`` finds current or stale, built with the same parameters and
    shard count, gets only the new rows added and the removed rows marked deleted, in the shards
    concerned; otherwise (missing, foreign, damaged, other parameters, or ``rebuild``) it is built afresh.

    Args:
        store: an open store.
        metric: ``cosine``, ``ip`` or ``l2`` (default: the existing index's, else the store's).
        m, ef_construction: HNSW construction parameters (defaults 16 and 200).
        ef: the default query-time ef saved in the sidecar (default 64).
        rebuild: build from scratch even when an update would do.
        threads: hnswlib threads (-1: all cores; per Ray task: its share of the cluster's CPUs).
        reporter: receives the progress (``start``, then ``advance`` per batch of vectors added).
        take_lock: take the store's lock (False only for a caller that already holds it).
        shards: split the rows over this many hnswlib indexes (default: the existing index's, else 1);
            another count than the existing index's rebuilds it.
        engine: ``local`` (shards one after another, in this process) or ``ray`` (shards in parallel
            Ray tasks; the files are still written here).
        address: the Ray cluster for ``engine="ray"`` (None: a loopback-only local instance).

    Returns:
        An ``IndexResult``.

    Raises:
        InputError: ``shards`` below 1 or an unknown ``engine``.
        EngineError: ``engine="ray"`` without Ray, or its run failed.
    """
    if shards is not None and shards < 1:
        raise InputError("--shards must be at least 1")
    if engine not in INDEX_ENGINES:
        raise InputError(f"--engine must be one of {', '.join(INDEX_ENGINES)}, not {engine!r}")
    if engine == "ray":
        from .._ray_session import require_ray

        require_ray()
    reporter = reporter_or_default(reporter)
    started = time.perf_counter()
    options = {"threads": threads, "engine": engine, "address": address}
    with StoreLock(store.path, "index") if take_lock else contextlib.nullcontext():
        try:
            result = _build(store, metric, m, ef_construction, ef, rebuild, shards, reporter, options)
        except _DamagedShard:
            result = _build(store, metric, m, ef_construction, ef, True, shards, reporter, options)
    result.seconds = time.perf_counter() - started
    return result


class _DamagedShard(Exception):
    """A shard picked for an update cannot be opened: the build starts again from scratch."""


def _build(store, metric, m, ef_construction, ef, rebuild, shards, reporter, options) -> IndexResult:
    import numpy as np

    state = index_status(store)
    existing = _existing_layout(store, state)
    # --rebuild keeps the existing index's parameters unless new ones are given.
    defaults = state.sidecar or {}
    params = IndexParams(
        metric=metric or defaults.get("metric") or store.metric,
        m=m or defaults.get("M", 16),
        ef_construction=ef_construction or defaults.get("ef_construction", 200),
        ef=ef or defaults.get("ef", 64),
    )
    n_shards = shards or shard_count(defaults) or 1
    if rebuild or (existing is not None and (not _same_construction(existing[0], params) or len(existing[1]) != n_shards)):
        existing = None
    snapshot = store.snapshot()
    store_ids = np.sort(store.read_table(["id"]).column("id").to_numpy())
    works = _plan(existing, store_ids, n_shards)
    base = HnswIndex.new_sidecar(store.dim, params) if existing is None else dict(existing[0], ef=params.ef)
    reporter.start("Indexing", int(sum(len(w.new_ids) for w in works)))
    touched = [w for w in works if w.touched]
    if options["engine"] == "ray":
        from ._ray_shards import build_shards_with_ray

        written = build_shards_with_ray(store, base, touched, n_shards, options, reporter)
    else:
        written = {w.shard: _update_shard(store, base, w, n_shards, options["threads"], reporter) for w in touched}
    files = [written.get(w.shard) or w.files for w in works]
    elements = sum(int(f["elements"]) for f in files)
    sidecar = commit_shards(
        store.index_dir,
        base,
        files,
        store_snapshot=snapshot,
        model_fingerprint=store.model["fingerprint"],
        store_id=store.manifest.get("store_id"),
        model_spec=store.model["spec"],
        deleted=elements - sum(int(f["count"]) for f in files),
    )
    added, deleted = (int(sum(len(getattr(w, name)) for w in works)) for name in ("new_ids", "gone_ids"))
    return IndexResult(params.metric, int(sidecar["count"]), added, deleted, existing is None, 0.0, n_shards, [w.shard for w in touched])


def _existing_layout(store: Store, state: IndexState) -> tuple[dict[str, Any], list[tuple[dict[str, Any], Any]]] | None:
    """``(sidecar, [(files, ids) per shard])`` of an index that an update can bring up to date, else None.

    Only the id files and the headers of the index files are read: a shard the update does not touch is never loaded.
    """
    import numpy as np

    if not state.updatable:
        return None
    sidecar = state.sidecar
    entries = sidecar["shards"] if shard_count(sidecar) > 1 else [sidecar]
    layout = []
    for entry in entries:
        try:
            ids = np.load(store.index_dir / f"ids-{entry['generation']}.npy", allow_pickle=False)
        except (OSError, ValueError, KeyError, TypeError):
            return None  # damaged: rebuild
        if len(ids) != entry.get("count") or HnswIndex.header_disagrees(store.index_dir, entry):
            return None
        layout.append((entry, ids))
    return sidecar, layout


def _plan(existing, store_ids, n_shards: int) -> list[ShardWork]:
    """What each shard gains and loses: a fresh build splits the rows evenly, an update gives its new rows
    to the smallest shards (``assign_new_ids``)."""
    import numpy as np

    empty = np.zeros(0, dtype=np.int64)
    if existing is None:
        return [ShardWork(i, None, empty, ids, empty) for i, ids in enumerate(np.array_split(store_ids, n_shards))]  # balanced
    works = []
    for i, (files, ids) in enumerate(existing[1]):
        ids = np.asarray(ids, dtype=np.int64)
        gone = np.setdiff1d(ids, store_ids, assume_unique=True)
        works.append(ShardWork(i, files, np.setdiff1d(ids, gone, assume_unique=True), empty, gone))
    held = np.concatenate([w.ids for w in works] + [w.gone_ids for w in works])
    new_ids = np.setdiff1d(store_ids, held, assume_unique=True)
    for work, ids in zip(works, assign_new_ids([len(w.ids) for w in works], new_ids)):
        work.new_ids = ids
    return works


def shard_batches(store: Store, new_ids, whole_store: bool = False):
    """``(vectors, ids)`` batches of the rows ``new_ids`` (sorted), read ahead in a thread.

    The id range narrows the Parquet row groups read, the id list picks the rows; ``whole_store``
    reads every row without a filter (a fresh build of one shard).
    """
    import pyarrow.compute as pc

    flt = None
    if not whole_store:
        lo, hi = int(new_ids[0]), int(new_ids[-1])
        flt = (pc.field("id") >= lo) & (pc.field("id") <= hi) & pc.field("id").isin(new_ids)
    # One decoding thread: hnswlib's add_items already keeps every core busy.
    batches = store.iter_batches(["id", "embedding"], batch_size=ADD_BATCH, filter=flt, use_threads=False)
    for batch in read_ahead(batches, name="vecmetric-index-read"):
        yield embeddings_to_numpy(batch.column("embedding")), batch.column("id").to_numpy()


def _update_shard(store: Store, base: dict[str, Any], work: ShardWork, n_shards: int, threads: int, reporter: Reporter) -> dict[str, Any]:
    """Bring one shard up to date in this process and write it under a fresh generation."""
    if work.files is None:
        params = IndexParams(base["metric"], base["M"], base["ef_construction"], base["ef"])
        index = HnswIndex.create(store.index_dir, store.dim, params, capacity=len(work.new_ids))
    else:
        try:
            index = HnswIndex.load_generation(store.index_dir, base, work.files)
        except IndexStateError:
            raise _DamagedShard() from None
    if len(work.gone_ids):
        index.mark_deleted(work.gone_ids)
    if len(work.new_ids):
        whole = work.files is None and n_shards == 1
        for vectors, ids in shard_batches(store, work.new_ids, whole_store=whole):
            index.add(vectors, ids, threads=threads)
            reporter.advance(len(ids))
    return index.write_generation(shard_generation(work.shard, n_shards))


def _same_construction(sidecar: dict[str, Any], params: IndexParams) -> bool:
    """Whether an index was built with these construction parameters (else adding to it would mix two graphs)."""
    return (sidecar.get("metric"), sidecar.get("M"), sidecar.get("ef_construction")) == (params.metric, params.m, params.ef_construction)


def load_current_index(store: Store, reporter: Reporter | None = None) -> HnswIndex | ShardedIndex:
    """The store's index, built or updated first unless ``index_status`` finds it current (never silently out of date).

    A stale index is updated; a missing, foreign or damaged one is built afresh (it is derived
    data: the vectors it is built from are in the store). A sharded index comes back as a
    ``ShardedIndex``, which answers ``query`` as one index does.

    Raises:
        IndexStateError: the index still does not answer for the store after the update (a bug, or a
            concurrent writer), or its files are damaged.
        StoreLockedError: it must be updated while another process writes the store.
    """
    state = index_status(store)
    rebuild = False
    if state.usable:
        try:
            return load_index(store.index_dir)
        except IndexStateError:
            rebuild = True  # damaged inside its files
    build_index(store, reporter=reporter, rebuild=rebuild)
    state = index_status(store)
    if not state.usable:
        raise IndexStateError(f"the index does not answer for the store: {state.reason}", hint="run 'vecmetric index --rebuild'")
    return load_index(store.index_dir)
