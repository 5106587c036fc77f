"""Retrieval metrics over labelled embeddings: each item queries all the others.

Precision@1, R-precision and MAP@R ("A Metric Learning Reality Check", Musgrave et al.
2020) come from pytorch-metric-learning's ``AccuracyCalculator`` with its exact k-NN
(``CustomKNN``, no Faiss); recall@k (at least one item of the query's class among its
k nearest) is added to the same calculator. Memory stays bounded on large sets: the
distance matrix is computed in blocks, and queries are scored in chunks whose results
are averaged with their query counts as weights (every metric is a mean over queries).

Queries whose class has no other item ("lone" queries) are not counted.
"""

from __future__ import annotations

from typing import Any

__all__ = ["METRIC_KEYS", "retrieval_metrics"]

METRIC_KEYS = (
    "precision_at_1",
    "r_precision",
    "mean_average_precision_at_r",
    "recall_at_1",
    "recall_at_5",
    "recall_at_10",
)
_PML_METRICS = ("precision_at_1", "r_precision", "mean_average_precision_at_r")
RECALL_KS = (1, 5, 10)
# Largest query-chunk x neighbours product scored at once (the calculator's k-NN label tables).
_KNN_CELLS = 1 << 24


def _calculator(distance, device, distance_batch: int):
    from pytorch_metric_learning.utils import accuracy_calculator as ac
    from pytorch_metric_learning.utils.inference import CustomKNN

    class RetrievalCalculator(ac.AccuracyCalculator):
        """AccuracyCalculator plus recall@1/5/10, with k large enough for both R and 10."""

        def requires_knn(self):
            return super().requires_knn() + [f"recall_at_{k}" for k in RECALL_KS]

        def determine_k(self, bin_counts, num_reference_embeddings, ref_includes_query):
            k = super().determine_k(bin_counts, num_reference_embeddings, ref_includes_query)
            return min(max(k, max(RECALL_KS)), num_reference_embeddings - int(ref_includes_query))

        def _recall(self, k, knn_labels, query_labels, not_lone_query_mask, **kwargs):
            knn_labels, query_labels = ac.try_getting_not_lone_labels(knn_labels, query_labels, not_lone_query_mask)
            if knn_labels is None:
                return 0.0
            hits = (knn_labels[:, :k] == query_labels.view(-1, 1)).any(dim=1)
            return hits.double().mean().item()

        def calculate_recall_at_1(self, **kwargs):
            return self._recall(1, **kwargs)

        def calculate_recall_at_5(self, **kwargs):
            return self._recall(5, **kwargs)

        def calculate_recall_at_10(self, **kwargs):
            return self._recall(10, **kwargs)

    return RetrievalCalculator(
        include=_PML_METRICS + tuple(f"recall_at_{k}" for k in RECALL_KS),
        k="max_bin_count",
        device=device,
        knn_func=CustomKNN(distance, batch_size=distance_batch),
    )


def retrieval_metrics(
    embeddings,
    labels,
    metric: str = "cosine",
    *,
    curvature: float | None = None,
    device: str | None = "cpu",
    distance_batch: int = 1024,
    max_chunk: int | None = None,
) -> dict[str, Any]:
    """Leave-one-out retrieval metrics of labelled embeddings.

    Args:
        embeddings: (N, dim) float array or tensor.
        labels: N integer labels (any hashable values are mapped to integers).
        metric: ``cosine``, ``l2``, ``ip`` or ``poincare``; how neighbours are ranked.
        curvature: the Poincare ball's ``c`` (``poincare`` only).
        device: where the k-NN runs.
        distance_batch: queries per block of the exact distance matrix.
        max_chunk: queries scored per calculator call (default: bounded by memory).

    Returns:
        The six ``METRIC_KEYS`` (floats in [0, 1]) plus ``num_images``, ``num_classes`` and
        ``num_queries`` (queries whose class has at least one other item).
    """
    import numpy as np
    import torch

    from ..distances import pml_distance

    emb = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))
    raw_labels = list(labels.tolist() if hasattr(labels, "tolist") else labels)
    _, codes = np.unique(np.asarray(raw_labels, dtype=object).astype(str), return_inverse=True)
    codes = codes.astype(np.int64)
    counts = np.bincount(codes) if len(codes) else np.zeros(0, dtype=np.int64)
    not_lone = counts[codes] > 1 if len(codes) else np.zeros(0, dtype=bool)
    result: dict[str, Any] = {key: 0.0 for key in METRIC_KEYS}
    result.update(num_images=int(len(codes)), num_classes=int(len(counts)), num_queries=int(not_lone.sum()))
    if result["num_queries"] == 0:
        return result

    torch_device = torch.device(device or "cpu")
    calculator = _calculator(pml_distance(metric, curvature), torch_device, distance_batch)
    k = min(max(int(counts.max()) - 1, max(RECALL_KS)), len(codes) - 1)
    chunk = max_chunk or max(1, _KNN_CELLS // max(1, k))
    label_tensor = torch.as_tensor(codes)
    totals = dict.fromkeys(METRIC_KEYS, 0.0)
    all_index = np.arange(len(codes))
    for start in range(0, len(codes), chunk):
        query_index = all_index[start : start + chunk]
        weight = int(not_lone[query_index].sum())
        if weight == 0:
            continue
        if len(query_index) == len(codes):
            order = all_index
        else:
            # The calculator wants the queries first in the reference set when it includes them.
            rest = np.concatenate([all_index[:start], all_index[start + chunk :]])
            order = np.concatenate([query_index, rest])
        order_t = torch.as_tensor(order)
        reference, reference_labels = emb[order_t], label_tensor[order_t]
        n = len(query_index)
        scores = calculator.get_accuracy(
            reference[:n], reference_labels[:n], reference, reference_labels, ref_includes_query=True
        )
        for key in METRIC_KEYS:
            totals[key] += float(scores[key]) * weight
    for key in METRIC_KEYS:
        result[key] = totals[key] / result["num_queries"]
    return result
