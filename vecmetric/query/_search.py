"""A search end to end: queries to vectors, nearest rows under the filters, the hits' paths and labels.

Nothing here imports torch: a model is opened through ``vecmetric.runtime.open_query_encoder`` (the
store's ONNX export when it has one) and only when a term must be embedded.
"""

from __future__ import annotations

import os
from collections.abc import Sequence as SequenceABC
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from ..errors import IndexStateError, InputError
from ..progress import Reporter
from ..store import open_store
from ._filters import SearchFilter, allowed_ids
from ._parse import parse_term
from ._resolve import ResolvedQuery, ResolvedTerm, resolve_queries
from ._rows import rows_by_id
from ._terms import Query

__all__ = ["SearchHit", "QueryResult", "search_store"]


@dataclass
class SearchHit:
    """One result: the ``rank``-th nearest stored image to ``query``."""

    query: str
    rank: int
    path: str
    distance: float
    label: str
    id: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class QueryResult(SequenceABC):
    """A query's hits, nearest first; it is a sequence of ``SearchHit`` itself.

    Attributes:
        query: the ``Query``.
        terms: its terms as resolved (paths of stored rows, what was embedded), for sheets and previews.
        hits: the results.
    """

    query: Query
    terms: tuple[ResolvedTerm, ...] = ()
    hits: list[SearchHit] = field(default_factory=list)

    @property
    def source(self) -> str:
        return self.query.source

    def __getitem__(self, index):
        return self.hits[index]

    def __len__(self) -> int:
        return len(self.hits)


class _Source:
    """Where vectors come from: the index (built or updated first when needed), or the stored rows (exact)."""

    def __init__(self, store, exact: bool, reporter: Reporter | None):
        self.store, self.exact, self.reporter = store, exact, reporter
        self._index = None
        self._data = None
        self._metric: str | None = None

    @property
    def index(self):
        from ..index import load_current_index

        if self._index is None:
            self._index = load_current_index(self.store, reporter=self.reporter)
        return self._index

    @property
    def data(self):
        """``(ids int64 (N,), vectors float32 (N, dim))`` of every stored row, read once."""
        import numpy as np

        from ..store import embeddings_to_numpy
        from ._rows import read_columns

        if self._data is None:
            table = read_columns(self.store, ["id", "embedding"])
            self._data = np.asarray(table.column("id").to_pylist(), dtype=np.int64), embeddings_to_numpy(table.column("embedding"))
        return self._data

    @property
    def metric(self) -> str:
        """The index's metric, read from its sidecar without loading it (the store's model's when there is none yet)."""
        if self._metric is None:
            from ..index import index_status

            self._metric = (index_status(self.store).sidecar or {}).get("metric") or self.store.metric
        return self._metric

    def vectors(self, ids: list[int]):
        import numpy as np

        if not self.exact:
            try:
                return self.index.vectors(ids)
            except KeyError as exc:
                raise IndexStateError(f"the index lacks row {exc.args[0]}", hint="run 'vecmetric index --rebuild'") from None
        data_ids, vectors = self.data
        order = np.argsort(data_ids)
        at = order[np.searchsorted(data_ids, ids, sorter=order)]
        return vectors[at]

    def nearest(self, resolved: list[ResolvedQuery], k: int, ef: int | None, allowed, keep_own: bool):
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
        if not geometry.hyperbolic:
            return nearest_in_index(self.index, vectors, k, ef, allowed, excluded)
        wide = poincare_candidate_count(k, ef or int(self.index.sidecar.get("ef", 64)))
        candidates = nearest_in_index(self.index, vectors, wide, ef, allowed, excluded)
        return rerank_hyperbolic(self.index, vectors, candidates, k, geometry.curvature)


def _names_store_model(model: str, store) -> bool:
    spec = store.model["spec"]
    return model == spec or os.path.abspath(os.path.expanduser(model)) == spec


def _check_model(store, model: str | None, device: str, allow_pickle_files: bool) -> None:
    """``--model`` must be the store's model: a different spec is loaded (with torch) and compared."""
    if model is None or _names_store_model(model, store):
        return
    from ..encoders import load_encoder

    store.check_model(load_encoder(model, device=device, allow_pickle_files=allow_pickle_files))


def _as_query(query: str | Query, text: bool) -> Query:
    if isinstance(query, Query):
        return query
    return Query.of([parse_term(str(query), text=text)], str(query))


def search_store(
    store: str | os.PathLike,
    queries: Sequence[str | Query],
    k: int = 5,
    ef: int | None = None,
    exact: bool = False,
    text: bool = False,
    model: str | None = None,
    device: str = "auto",
    reporter: Reporter | None = None,
    allow_pickle_files: bool = False,
    filters: SearchFilter | None = None,
    keep_query_images: bool = False,
) -> list[QueryResult]:
    """Find the ``k`` nearest stored images to each query.

    Args:
        store: the store folder.
        queries: ``Query`` objects (``parse_arguments``, ``query_from_dicts``), or strings, each one term
            (an image path, ``@ID``, or a text; every string but ``@...`` a text when ``text`` is set).
        k: results per query.
        ef: HNSW search breadth (higher: better recall, slower); default the index's.
        exact: brute-force search over the stored vectors instead of the index.
        text: strings in ``queries`` are texts.
        model: must name the store's own model when given (it is checked, not used instead).
        device: where a torch model runs, when the store has no usable export.
        reporter: receives the index update's progress, and the notice when queries need torch.
        allow_pickle_files: accept a checkpoint folder that also holds pickle files (never read).
        filters: labels, path glob and distance threshold (``SearchFilter``).
        keep_query_images: return the stored images that are the query's own terms too.

    Returns:
        One ``QueryResult`` per query (a sequence of ``SearchHit``, nearest first, with absolute paths).
        Fewer than ``k`` hits only when fewer rows qualify or ``filters.max_distance`` drops some.

    Raises:
        InputError: a bad term (missing image, unknown ``@ID``, terms that cancel out), k < 1, no queries.
        EncoderError: a text term on a store whose model has no text tower (exit 4).
        StoreMismatchError: ``model`` is not the store's model.
    """
    if k < 1:
        raise InputError("--k must be at least 1")
    parsed = [_as_query(q, text) for q in queries]
    if not parsed:
        raise InputError("no queries given")
    st = open_store(store)
    _check_model(st, model, device, allow_pickle_files)
    source = _Source(st, exact, reporter)

    def open_encoder(tower: str):
        from ..runtime import open_query_encoder

        return open_query_encoder(st, tower=tower, device=device, allow_pickle_files=allow_pickle_files, reporter=reporter)

    resolved = resolve_queries(st, parsed, metric=source.metric, stored_vectors=source.vectors, open_encoder=open_encoder)
    allowed = allowed_ids(st, filters)
    found = source.nearest(resolved, k, ef, allowed, keep_query_images)
    return _results(st, resolved, found, source.metric, filters or SearchFilter())


def _results(store, resolved: list[ResolvedQuery], found, metric: str, filters: SearchFilter) -> list[QueryResult]:
    import numpy as np

    ids = np.unique(np.concatenate([labels for labels, _ in found])) if found else []
    rows = rows_by_id(store, ids, columns=("path", "label"))
    results = []
    for query, (labels, distances) in zip(resolved, found):
        hits: list[SearchHit] = []
        for label, dist in zip(labels.tolist(), distances.tolist()):
            # Rounding can make a self-match's distance -1e-7; cosine and l2 distances are never negative.
            dist = float(dist) if metric == "ip" else max(0.0, float(dist))
            if not filters.within(dist):
                break
            row = rows.get(int(label), {})
            hits.append(SearchHit(query.query.source, len(hits) + 1, row.get("path", ""), dist, row.get("label", ""), int(label)))
        results.append(QueryResult(query.query, query.terms, hits))
    return results
