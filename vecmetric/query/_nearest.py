"""The k nearest rows to query vectors, among the rows a filter allows and minus each query's own images.

Two sources answer: the HNSW index, and exact search over the stored vectors (``--exact``).
With the index, a row filter is applied inside hnswlib's search (its ``filter`` callback), so k
results come back whenever k rows qualify; a filter that leaves few rows is answered exactly from
the index's own vectors instead, which is faster than a graph walk that must pass nearly every node
(benchmarks/RESULTS.md, "Cold search": on 20k rows of 1280 dimensions the walk costs ~100 ms
whatever few rows qualify, reading 20 rows' vectors ~14 ms, 200 rows' about as much as the walk).
A query's own images are left out by fetching that many more neighbours, or by removing them from
the allowed rows.
"""

from __future__ import annotations

from typing import Any, Sequence

__all__ = ["EXACT_FRACTION", "Neighbours", "nearest_in_index", "nearest_exact", "rerank_hyperbolic"]

# A filter allowing at most this fraction of the index's rows is answered by exact search over their vectors.
EXACT_FRACTION = 1 / 64

Neighbours = tuple[Any, Any]  # (ids int64 (n,), distances float32 (n,)) of one query, nearest first


def _drop(ids, dists, excluded: frozenset[int], k: int) -> Neighbours:
    import numpy as np

    if excluded:
        keep = np.fromiter((int(i) not in excluded for i in ids), dtype=bool, count=len(ids))
        ids, dists = ids[keep], dists[keep]
    return ids[:k], dists[:k]


def nearest_in_index(index, vectors, k: int, ef: int | None, allowed, excluded: Sequence[frozenset[int]]) -> list[Neighbours]:
    """Per query, the ``k`` nearest live rows of ``index`` that ``allowed`` holds and ``excluded`` does not.

    Args:
        index: an open ``HnswIndex``.
        vectors: float32 (Q, dim) query vectors.
        k: results per query.
        ef: HNSW search breadth (None: the index's).
        allowed: sorted int64 ids the results may have, or None for any.
        excluded: per query, the ids it must not return (its own images).

    Returns:
        One ``(ids, distances)`` per query, nearest first; fewer than ``k`` only when fewer rows qualify.
    """
    import numpy as np

    from ..index import exact_search

    out: list[Neighbours] = []
    if allowed is None:
        extra = max((len(e) for e in excluded), default=0)
        labels, dists = index.query(vectors, k + extra, ef=ef)
        return [_drop(labels[q], dists[q], excluded[q], k) for q in range(len(vectors))]
    allowed = np.intersect1d(allowed, index.ids, assume_unique=True)
    for q, vector in enumerate(vectors):
        ids = np.setdiff1d(allowed, np.fromiter(excluded[q], dtype=np.int64), assume_unique=True) if excluded[q] else allowed
        if len(ids) == 0:
            out.append((np.zeros(0, np.int64), np.zeros(0, np.float32)))
        elif len(ids) <= EXACT_FRACTION * index.count:
            labels, dists = exact_search(index.vectors(ids), vector[None], k, metric=index.metric, ids=ids)
            out.append((labels[0], dists[0]))
        else:
            allow = set(ids.tolist())
            labels, dists = index.query(vector[None], min(k, len(ids)), ef=ef, filter=allow.__contains__)
            out.append((labels[0], dists[0]))
    return out


def nearest_exact(
    data, data_ids, vectors, k: int, metric: str, allowed, excluded: Sequence[frozenset[int]], curvature: float | None = None
) -> list[Neighbours]:
    """As ``nearest_in_index``, by brute force over ``data`` (float32 (N, dim)) whose row ids are ``data_ids``
    (``curvature`` for the ``poincare`` metric)."""
    import numpy as np

    from ..index import exact_search

    base = np.ones(len(data_ids), dtype=bool) if allowed is None else np.isin(data_ids, allowed)
    if not any(excluded):
        labels, dists = exact_search(data[base], vectors, k, metric=metric, ids=data_ids[base], curvature=curvature)
        return [(labels[q], dists[q]) for q in range(len(vectors))]
    out: list[Neighbours] = []
    for q, vector in enumerate(vectors):
        mask = base & ~np.isin(data_ids, np.fromiter(excluded[q], dtype=np.int64)) if excluded[q] else base
        labels, dists = exact_search(data[mask], vector[None], k, metric=metric, ids=data_ids[mask], curvature=curvature)
        out.append((labels[0], dists[0]))
    return out


def rerank_hyperbolic(index, vectors, candidates: list[Neighbours], k: int, curvature: float) -> list[Neighbours]:
    """Each query's index candidates (found under the ``poincare`` metric's index space) re-ranked by exact
    Poincare distance; the ``k`` nearest, with Poincare distances."""
    import numpy as np

    from ..distances import rerank_poincare

    out: list[Neighbours] = []
    for vector, (ids, _) in zip(vectors, candidates):
        if len(ids) == 0:
            out.append((ids, np.zeros(0, np.float32)))
            continue
        labels, dists = rerank_poincare(vector[None], ids[None], index.vectors(ids)[None], k, curvature)
        out.append((labels[0], dists[0]))
    return out
