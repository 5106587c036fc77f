"""``SearchSession``: a store opened once for many searches, by one command or by a server's threads.

It keeps what is slow to open (the index, the query encoder) between searches. A one-shot search
(``search_store``) opens the index with ``load_current_index``, which updates a stale index under
the store's lock first; a server's session is ``live``: it never takes the lock and answers from
``LiveIndex`` (the committed index merged with the rows written and deleted since), looked at again
before every search. Nothing here imports torch unless the store has no usable ONNX export.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any, Iterator, Mapping, Sequence

from ..errors import IndexStateError, StoreError, StoreLockedError
from ..progress import Reporter, reporter_or_default
from ._filters import SearchFilter, allowed_ids
from ._resolve import ResolvedQuery, resolve_queries
from ._results import QueryResult, build_results
from ._rows import RowCatalog, StoredRows
from ._terms import Query

__all__ = ["SearchSession"]

_LIVE_RETRIES = 3  # a writer may remove a part between the listing and the read of a result's row


class _ReadWriteLock:
    """Many readers (searches) or one writer (a refresh of the live index); a waiting writer goes first.

    A thread that reads already may read again without waiting (a waiting writer would otherwise
    wait for it while it waits for the writer).
    """

    def __init__(self):
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0
        self._mine = threading.local()

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        depth = getattr(self._mine, "depth", 0)
        if depth:
            self._mine.depth = depth + 1
            try:
                yield
            finally:
                self._mine.depth = depth
            return
        with self._cond:
            while self._writing or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        self._mine.depth = 1
        try:
            yield
        finally:
            self._mine.depth = 0
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            while self._writing or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


class _Towers:
    """What ``resolve_queries`` gets from ``open_encoder``: images through the image tower, texts through the text tower."""

    def __init__(self, session: "SearchSession"):
        self.session = session

    def embed_tensors(self, batch):
        return self.session.encoder("image").embed_tensors(batch)

    def embed_texts(self, texts):
        return self.session.encoder("text").embed_texts(texts)


class SearchSession:
    """A store opened for many searches: the index and the query encoder are kept between them.

    Args:
        store: the store folder, or an open ``Store``.
        live: answer from a ``LiveIndex`` refreshed before each search (no lock, never a half-written
            index: for servers); otherwise from ``load_current_index``, which brings a stale index up to
            date under the store's lock first (and, when another process holds the lock, answers from a
            ``LiveIndex`` instead of failing).
        exact: brute-force search over the stored vectors instead of an index.
        index: search this index object instead (anything with ``ids``, ``count``, ``metric``,
            ``vectors``, ``has`` and ``query(..., filter=)``, refreshed before each search if it has
            ``refresh``): the seam for indexes held elsewhere, such as shards in Ray actors.
        device: where a torch model runs, when the store has no usable export.
        allow_pickle_files: accept a checkpoint folder that also holds pickle files (never read).
        reporter: receives the index update's progress and the notice when queries need torch.
        batch_images: run concurrent image embeddings together (``vecmetric.runtime.BatchingEncoder``).

    Safe to share between threads.
    """

    def __init__(
        self,
        store,
        *,
        live: bool = False,
        exact: bool = False,
        index: Any = None,
        device: str = "auto",
        allow_pickle_files: bool = False,
        reporter: Reporter | None = None,
        batch_images: bool = False,
    ):
        from ..store import Store, open_store

        self.store = store if isinstance(store, Store) else open_store(store)
        self.live, self.exact = live, exact
        self.device, self.allow_pickle_files = device, allow_pickle_files
        self.reporter = reporter_or_default(reporter)
        self.batch_images = batch_images
        self._index = index
        # A server looks rows up on every request: it keeps their metadata in memory (RowCatalog).
        self.rows: StoredRows = RowCatalog(self.store) if live else StoredRows(self.store)
        self._data = None
        self._metric: str | None = None
        self._encoders: dict[str, Any] = {}
        self._open_lock = threading.Lock()
        self._lock = _ReadWriteLock()
        self._refreshed_at = 0.0

    # --- the index -----------------------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        """Whether the index is loaded (searches answer without waiting for it)."""
        return self._index is not None

    @property
    def index(self):
        """The index searched (loaded on first use)."""
        if self._index is None:
            with self._open_lock:
                if self._index is None:
                    self.rows.refresh()
                    self._index = self._open_index()
        return self._index

    def _open_index(self):
        from ..index import load_current_index
        from ..index._live import LiveIndex

        if self.live:
            return LiveIndex(self.store.path).refresh()
        try:
            return load_current_index(self.store, reporter=self.reporter)
        except StoreLockedError as exc:
            self.reporter.warn(f"{exc.message}: searching its index merged with the rows written since, without updating it")
            return LiveIndex(self.store.path).refresh()

    def refresh(self, since: float | None = None) -> None:
        """Bring a refreshable index up to date with the files on disk (a no-op for others).

        Args:
            since: a ``time.monotonic()`` reading; a refresh that began after it is enough.
        """
        index = self.index if self.live else self._index  # a one-shot search loads its index when first needed
        if index is None or not hasattr(index, "refresh") or (hasattr(index, "changed") and not index.changed()):
            return
        with self._lock.writing():
            if since is not None and self._refreshed_at > since:
                return  # another thread refreshed while this one waited
            started = time.monotonic()
            index.refresh()
            self.rows.refresh()
            self._refreshed_at = started

    @property
    def metric(self) -> str:
        """The index's metric (read from the sidecar, without loading the index, until it is loaded)."""
        if self._index is not None and not self.exact:
            return self._index.metric
        if self._metric is None:
            from ..index import index_status

            self._metric = (index_status(self.store).sidecar or {}).get("metric") or self.store.metric
        return self._metric

    @property
    def data(self):
        """``(ids int64 (N,), vectors float32 (N, dim))`` of every stored row, read once (exact search)."""
        import numpy as np

        from ..store import embeddings_to_numpy
        from ._rows import read_columns

        if self._data is None:
            table = read_columns(self.store, ["id", "embedding"])
            self._data = np.asarray(table.column("id").to_pylist(), dtype=np.int64), embeddings_to_numpy(table.column("embedding"))
        return self._data

    def vectors(self, ids: list[int]):
        """The stored vectors of rows ``ids`` (float32 (N, dim)).

        Raises:
            IndexStateError: the index lacks one of them.
        """
        import numpy as np

        if not self.exact:
            try:
                with self._lock.reading():
                    return self.index.vectors(ids)
            except KeyError as exc:
                raise IndexStateError(f"the index lacks row {exc.args[0]}", hint="run 'vecmetric index --rebuild'") from None
        data_ids, vectors = self.data
        order = np.argsort(data_ids)
        at = order[np.searchsorted(data_ids, ids, sorter=order)]
        return vectors[at]

    def _nearest(self, resolved: list[ResolvedQuery], k: int, ef: int | None, allowed, keep_own: bool):
        """Per query, its ``k`` nearest rows; a hyperbolic store's index candidates are re-ranked by exact Poincare distance."""
        import numpy as np

        from ..distances import geometry_of, poincare_candidate_count
        from ._nearest import nearest_exact, nearest_in_index, rerank_hyperbolic

        vectors = np.stack([r.vector for r in resolved])
        excluded = [frozenset() if keep_own else r.own_rows for r in resolved]
        geometry = geometry_of(self.store.model)
        if self.exact:
            ids, data = self.data
            return nearest_exact(data, ids, vectors, k, self.metric, allowed, excluded, curvature=geometry.curvature)
        with self._lock.reading():
            if not geometry.hyperbolic:
                return nearest_in_index(self.index, vectors, k, ef, allowed, excluded)
            sidecar = getattr(self.index, "sidecar", None) or getattr(getattr(self.index, "index", None), "sidecar", None) or {}
            wide = poincare_candidate_count(k, ef or int(sidecar.get("ef", 64)))
            candidates = nearest_in_index(self.index, vectors, wide, ef, allowed, excluded)
            return rerank_hyperbolic(self.index, vectors, candidates, k, geometry.curvature)

    def rows_by_id(self, ids, columns=("path", "label")) -> dict[int, dict[str, Any]]:
        """``id -> {column: value}`` of the wanted rows the store holds now (after a refresh, for a live session).

        Raises:
            StoreError: a part file is damaged.
        """
        self.index  # noqa: B018 - loads the index and the rows on first use
        self.refresh(since=time.monotonic())
        with self._lock.reading():
            return self.rows.by_id(ids, columns)

    # --- the encoder ---------------------------------------------------------------------------
    def encoder(self, tower: str = "image"):
        """The encoder that embeds queries for ``tower`` (``image`` or ``text``), opened on first use.

        Raises:
            EncoderError: text on a store whose model has no text tower, or the model cannot be loaded.
        """
        from ..runtime import BatchingEncoder, OnnxEncoder, open_query_encoder

        if tower not in self._encoders:
            with self._open_lock:
                if tower not in self._encoders:
                    other = self._encoders.get("text" if tower == "image" else "image")
                    if other is not None and not isinstance(getattr(other, "encoder", other), OnnxEncoder):
                        encoder = other  # a torch model (no usable export) embeds both; load it once
                    else:
                        encoder = open_query_encoder(
                            self.store, tower=tower, device=self.device, allow_pickle_files=self.allow_pickle_files, reporter=self.reporter
                        )
                        if tower == "image" and self.batch_images:
                            encoder = BatchingEncoder(encoder)
                    self._encoders[tower] = encoder
        return self._encoders[tower]

    def _open_encoder(self, tower: str) -> _Towers:
        self.encoder(tower)  # a text tower the model lacks fails here, before any image is embedded
        return _Towers(self)

    # --- searching -----------------------------------------------------------------------------
    def search(
        self,
        queries: Sequence[Query],
        k: int = 5,
        ef: int | None = None,
        filters: SearchFilter | None = None,
        keep_query_images: bool = False,
        uploads: Mapping[str, Any] | None = None,
    ) -> list[QueryResult]:
        """The ``k`` nearest stored images to each query.

        Args:
            queries: ``Query`` objects (``parse_arguments``, ``query_from_dicts``).
            k: results per query (at least 1).
            ef: HNSW search breadth (default the index's).
            filters: labels, path glob and distance threshold.
            keep_query_images: return the stored images that are the query's own terms too.
            uploads: ``name -> uint8 (3, S, S)`` pixels of the queries' UPLOAD terms.

        Returns:
            One ``QueryResult`` per query, nearest first.

        Raises:
            InputError: a bad term, k < 1, no queries.
            EncoderError: a text term on a store whose model has no text tower.
            StoreError, IndexStateError: the store or its index cannot be read.
        """
        from ..errors import InputError

        if k < 1:
            raise InputError("--k must be at least 1")
        if not queries:
            raise InputError("no queries given")
        arrived = time.monotonic()
        for attempt in range(_LIVE_RETRIES if self.live else 1):
            if not self.exact:
                self.refresh(since=arrived)
            try:
                return self._search_once(queries, k, ef, filters or SearchFilter(), keep_query_images, uploads)
            except StoreError:
                if attempt == _LIVE_RETRIES - 1 or not self.live:
                    raise
                arrived = time.monotonic()  # a part went away under us: look at the store again
        raise AssertionError("unreachable")

    def _search_once(self, queries, k, ef, filters: SearchFilter, keep_own: bool, uploads) -> list[QueryResult]:
        with self._lock.reading():  # the row catalog must not change while it is read
            resolved = resolve_queries(
                self.store, list(queries), metric=self.metric, stored_vectors=self.vectors, open_encoder=self._open_encoder, uploads=uploads, rows=self.rows
            )
            allowed = allowed_ids(self.store, filters, rows=self.rows)
        found = self._nearest(resolved, k, ef, allowed, keep_own)
        with self._lock.reading():
            return build_results(self.rows, resolved, found, self.metric, filters)
