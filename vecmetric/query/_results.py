"""What a search returns: ``SearchHit`` (one result, the fields of ``search --json``) and ``QueryResult``."""

from __future__ import annotations

from collections.abc import Sequence as SequenceABC
from dataclasses import asdict, dataclass, field
from typing import Any

from ._filters import SearchFilter
from ._resolve import ResolvedQuery, ResolvedTerm
from ._rows import StoredRows
from ._terms import Query

__all__ = ["SearchHit", "QueryResult", "build_results"]


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


def build_results(rows: StoredRows, resolved: list[ResolvedQuery], found, metric: str, filters: SearchFilter) -> list[QueryResult]:
    """Each query's neighbours (``(ids, distances)``, nearest first) as ``SearchHit``s with the rows' paths and labels.

    A row that is no longer in the store when its path is read (a writer deleted it since the index
    answered) is left out, and the ranks close up.

    Raises:
        StoreError: a part file is damaged, or went away while it was read.
    """
    import numpy as np

    ids = np.unique(np.concatenate([labels for labels, _ in found])) if found else []
    found_rows = rows.by_id(ids, columns=("path", "label"))
    results = []
    for query, (labels, distances) in zip(resolved, found):
        hits: list[SearchHit] = []
        for label, dist in zip(labels.tolist(), distances.tolist()):
            # Rounding can make a self-match's distance -1e-7; cosine and l2 distances are never negative.
            dist = float(dist) if metric == "ip" else max(0.0, float(dist))
            if not filters.within(dist):
                break
            row = found_rows.get(int(label))
            if row is None:
                continue
            hits.append(SearchHit(query.query.source, len(hits) + 1, row["path"], dist, row["label"], int(label)))
        results.append(QueryResult(query.query, query.terms, hits))
    return results
