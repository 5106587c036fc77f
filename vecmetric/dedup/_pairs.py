"""Near pairs: a range search through the HNSW neighbours, every candidate re-checked exactly."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..index import pairwise_distances

FIRST_K = 16
#: Neighbours asked of the index per row at most. A row with more rows than this within the
#: threshold is still joined to its group through them (its nearest MAX_K are in it, and they
#: have neighbours of their own), while the work stays at n x MAX_K candidates in the worst
#: case (a store of thousands of copies of one picture) instead of n^2.
MAX_K = 512
GROWTH = 4
#: HNSW search breadth per neighbour asked for, unless the caller sets ``ef``. A range search
#: wants only rows very close to the query, which HNSW reaches at a small breadth: on 100k
#: vectors of 1280 dims (benchmarks/dedup_scale.py) ef = 2k found 99.98% of the planted pairs
#: that ef 64 found (100%), in a third of the time; ef = k found 99.5%.
EF_PER_K = 2


@dataclass
class NearPairs:
    """Pairs of rows within the threshold: ``left[i]`` and ``right[i]`` at exact distance ``distances[i]``.

    ``left`` are query row ids and ``right`` indexed row ids; within one store ``left < right``
    and each pair appears once. ``capped`` counts the queries that still had neighbours within
    the threshold at ``MAX_K`` (their further ones were not asked for).
    """

    left: Any
    right: Any
    distances: Any
    capped: int = 0

    def __len__(self) -> int:
        return len(self.left)


def _slack(threshold: float) -> float:
    # hnswlib and numpy round float32 sums differently; a candidate this close to the threshold
    # is kept for the exact check rather than lost.
    return 1e-5 + 1e-4 * abs(threshold)


def _lookup(ids):
    """A function mapping labels to their positions in ``ids`` (-1 where absent)."""
    import numpy as np

    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]

    def positions(wanted):
        if not len(ids):
            return np.full(len(wanted), -1, dtype=np.int64)
        where = np.clip(np.searchsorted(sorted_ids, wanted), 0, len(ids) - 1)
        return np.where(sorted_ids[where] == wanted, order[where], -1)

    return positions


def _candidates(index, queries, threshold: float, k: int, max_k: int, ef: int | None):
    """For each query row, the index labels within ``threshold`` (+ slack), growing k as needed."""
    import numpy as np

    limit = threshold + _slack(threshold)
    everything = max_k >= index.count  # then a full answer at max_k means every row, not a cap
    max_k = min(max_k, index.count)
    rows_out, labels_out, capped = [], [], 0
    pending = np.arange(len(queries))
    k = min(k, max_k)
    while len(pending) and k > 0:
        labels, dist = index.query(queries[pending], k, ef=ef or EF_PER_K * k)
        inside = dist <= limit
        rows_out.append(np.repeat(pending, inside.sum(axis=1)))
        labels_out.append(labels[inside])
        full = inside[:, -1]  # the k-th neighbour is still inside: there may be more
        if k >= max_k:
            capped = 0 if everything else int(full.sum())
            break
        # Ask again only for the rows that may have more; their first k come back again
        # and are dropped below as repeats.
        pending = pending[full]
        k = min(k * GROWTH, max_k)
    if not rows_out:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), capped
    return np.concatenate(rows_out).astype(np.int64), np.concatenate(labels_out).astype(np.int64), capped


def near_pairs(
    index,
    query_vectors,
    query_ids,
    threshold: float,
    metric: str,
    *,
    data_vectors=None,
    data_ids=None,
    k: int = FIRST_K,
    max_k: int = MAX_K,
    ef: int | None = None,
    batch: int = 16384,
) -> NearPairs:
    """Every pair of a query row and an indexed row within ``threshold``, by exact distance.

    Each query asks the index for its ``k`` nearest rows; a query whose ``k``-th neighbour is
    still within the threshold asks again with four times as many, up to ``max_k``. Every
    candidate is then re-checked with the exact distance (``vecmetric.index.pairwise_distances``,
    the units ``search`` prints), so the index decides only which pairs are looked at.

    Args:
        index: an open ``HnswIndex`` (anything with ``query(vectors, k, ef=)`` and ``count``)
            whose labels are the row ids of the indexed rows.
        query_vectors, query_ids: the rows to find neighbours for, (N, D) and (N,).
        threshold: the largest distance that counts as a duplicate.
        metric: ``cosine``, ``ip`` or ``l2``: the index's metric.
        data_vectors, data_ids: the indexed rows' vectors and ids, for the exact check; leave
            out when the queries are the indexed rows themselves (one store): then a row is not
            paired with itself and each pair is reported once, smaller id first.
        k: neighbours asked first; max_k: neighbours asked at most (see ``MAX_K``).
        ef: HNSW search breadth (default ``EF_PER_K`` x the neighbours asked for; raised to k when smaller).
        batch: queries sent to the index at once (bounds memory at batch x max_k).

    Returns:
        ``NearPairs`` sorted by (left, right).
    """
    import numpy as np

    query_vectors = np.asarray(query_vectors, dtype=np.float32)
    query_ids = np.asarray(query_ids, dtype=np.int64)
    same = data_vectors is None
    data_vectors = query_vectors if same else np.asarray(data_vectors, dtype=np.float32)
    data_ids = query_ids if same else np.asarray(data_ids, dtype=np.int64)
    positions = _lookup(data_ids)
    lefts, rights, dists, capped = [], [], [], 0
    for start in range(0, len(query_vectors), batch):
        rows, labels, n_capped = _candidates(index, query_vectors[start : start + batch], threshold, k, max_k, ef)
        capped += n_capped
        rows += start
        cols = positions(labels)
        keep = cols >= 0  # labels the caller passed no vector for are not looked at
        rows, cols = rows[keep], cols[keep]
        if same:
            a, b = np.minimum(rows, cols), np.maximum(rows, cols)
            rows, cols = a[a != b], b[a != b]
        pairs = np.unique(np.stack([rows, cols], axis=1), axis=0) if len(rows) else np.zeros((0, 2), np.int64)
        d = _exact(query_vectors, data_vectors, pairs, metric)
        inside = d <= threshold
        lefts.append(query_ids[pairs[inside, 0]])
        rights.append(data_ids[pairs[inside, 1]])
        dists.append(d[inside])
    left = np.concatenate(lefts) if lefts else np.zeros(0, np.int64)
    right = np.concatenate(rights) if rights else np.zeros(0, np.int64)
    dist = np.concatenate(dists) if dists else np.zeros(0, np.float32)
    if same and len(left):  # a pair found from both ends in different batches
        pairs, first = np.unique(np.stack([np.minimum(left, right), np.maximum(left, right)], axis=1), axis=0, return_index=True)
        left, right, dist = pairs[:, 0], pairs[:, 1], dist[first]
    order = np.lexsort((right, left))
    return NearPairs(left[order], right[order], dist[order], capped)


def _exact(query_vectors, data_vectors, pairs, metric: str):
    """Exact distances of (query position, data position) pairs, one pairwise_distances call per query row."""
    import numpy as np

    out = np.empty(len(pairs), dtype=np.float32)
    if not len(pairs):
        return out
    # pairs are sorted by their first column: one slice of candidates per query row
    starts = np.flatnonzero(np.r_[True, pairs[1:, 0] != pairs[:-1, 0]])
    ends = np.r_[starts[1:], len(pairs)]
    for s, e in zip(starts.tolist(), ends.tolist()):
        q = pairs[s, 0]
        out[s:e] = pairwise_distances(query_vectors[q : q + 1], data_vectors[pairs[s:e, 1]], metric)[0]
    if metric != "ip":  # rounding can give -1e-7 for identical vectors; these distances are never negative
        np.maximum(out, 0.0, out=out)
    return out
