"""Exact (brute-force) k-NN in the metrics' units (``vecmetric.distances``): the ground truth for recall."""

from __future__ import annotations

from ..distances import pairwise_distances

__all__ = ["exact_search", "pairwise_distances", "recall_at_k"]


def exact_search(data, queries, k: int, metric: str = "cosine", ids=None, chunk: int = 65536, curvature: float | None = None):
    """The exact ``k`` nearest rows of ``data`` for each query, scanning ``data`` in chunks.

    Args:
        data: (N, D) vectors.
        queries: (Q, D) vectors.
        k: neighbours per query (clipped to N).
        metric: ``cosine``, ``ip``, ``l2`` or ``poincare`` (with the ball's ``curvature``).
        ids: labels of the rows of ``data`` (default 0..N-1).
        chunk: rows of ``data`` compared at once, so memory stays bounded.

    Returns:
        ``(labels, distances)``, each (Q, k), nearest first.
    """
    import numpy as np

    data = np.asarray(data, dtype=np.float32)
    queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    n = len(data)
    k = min(k, n)
    ids = np.arange(n) if ids is None else np.asarray(ids)
    best_d = np.full((len(queries), 0), np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), 0), dtype=np.int64)
    for start in range(0, n, chunk):
        d = pairwise_distances(queries, data[start : start + chunk], metric, curvature).astype(np.float32)
        i = np.broadcast_to(np.arange(start, start + d.shape[1]), d.shape)
        all_d = np.concatenate([best_d, d], axis=1)
        all_i = np.concatenate([best_i, i], axis=1)
        keep = np.argpartition(all_d, min(k, all_d.shape[1]) - 1, axis=1)[:, :k] if all_d.shape[1] > k else np.argsort(all_d, axis=1)
        best_d = np.take_along_axis(all_d, keep, axis=1)
        best_i = np.take_along_axis(all_i, keep, axis=1)
    order = np.argsort(best_d, axis=1, kind="stable")
    best_d = np.take_along_axis(best_d, order, axis=1)
    best_i = np.take_along_axis(best_i, order, axis=1)
    return ids[best_i], best_d


def recall_at_k(found, truth) -> float:
    """Mean fraction of the true neighbours found (rows are queries)."""
    hits = sum(len(set(f) & set(t)) for f, t in zip(found, truth))
    total = sum(len(t) for t in truth)
    return hits / total if total else 1.0
