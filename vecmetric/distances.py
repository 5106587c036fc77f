"""The metrics vecmetric knows, in one table, and their distances.

Every command names metrics the same way and measures in the same units, the ones hnswlib
reports and ``search`` prints:

==========  ==========================  =============================================
metric      distance                    embeddings
==========  ==========================  =============================================
``cosine``  1 - cosine similarity       L2-normalised by the model (trainable)
``ip``      1 - inner product           as they come (search and evaluation only)
``l2``      squared Euclidean distance  raw, unnormalised (trainable)
==========  ==========================  =============================================

``pairwise_distances`` (numpy) is the exact reference that index, query, dedup and eval
use; ``pml_distance`` gives pytorch-metric-learning's matching distance object for
training and retrieval metrics (its ``l2`` is the plain, not squared, Euclidean distance,
which ranks neighbours identically).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Metric", "METRICS", "METRIC_NAMES", "TRAIN_METRIC_NAMES", "get_metric", "pairwise_distances", "pml_distance"]


@dataclass(frozen=True)
class Metric:
    """One metric: its name, the hnswlib space that computes it, and where it may be used."""

    name: str
    space: str
    trainable: bool
    normalized: bool
    distance: str


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("cosine", "cosine", trainable=True, normalized=True, distance="1 - cosine similarity"),
        Metric("ip", "ip", trainable=False, normalized=False, distance="1 - inner product"),
        Metric("l2", "l2", trainable=True, normalized=False, distance="squared L2 distance"),
    )
}
METRIC_NAMES = tuple(METRICS)
TRAIN_METRIC_NAMES = tuple(name for name, m in METRICS.items() if m.trainable)


def get_metric(name: str, *, error: type[Exception] | None = None, option: str = "--metric", trainable: bool = False) -> Metric:
    """The ``Metric`` called ``name``.

    Args:
        name: ``cosine``, ``ip`` or ``l2``.
        error: the vecmetric error class to raise (default ``InputError``).
        option: how the user spelled the setting, for the message.
        trainable: only accept metrics that training supports.

    Raises:
        error: an unknown name (or one training cannot use), with the valid choices.
    """
    if error is None:
        from .errors import InputError as error
    choices = TRAIN_METRIC_NAMES if trainable else METRIC_NAMES
    metric = METRICS.get(name)
    if metric is None or metric.name not in choices:
        raise error(f"unknown {option} {name!r}", hint="choose one of: " + ", ".join(choices))
    return metric


def pairwise_distances(queries, data, metric: str) -> Any:
    """Exact distances between every query and every row, in the metric's units (float32 (Q, N))."""
    import numpy as np

    name = get_metric(metric).name
    queries = np.asarray(queries, dtype=np.float32)
    data = np.asarray(data, dtype=np.float32)
    if name == "cosine":
        qn = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-30)
        dn = data / np.maximum(np.linalg.norm(data, axis=1, keepdims=True), 1e-30)
        return 1.0 - qn @ dn.T
    if name == "ip":
        return 1.0 - queries @ data.T
    sq = (queries**2).sum(1)[:, None] - 2.0 * (queries @ data.T) + (data**2).sum(1)[None, :]
    return np.maximum(sq, 0.0)


def pml_distance(metric: str):
    """pytorch-metric-learning's distance object for ``metric`` (imports torch).

    Raises:
        InputError: an unknown metric.
    """
    from pytorch_metric_learning import distances

    name = get_metric(metric).name
    if name == "cosine":
        return distances.CosineSimilarity()
    if name == "l2":
        return distances.LpDistance(p=2, power=1, normalize_embeddings=False)
    return distances.DotProductSimilarity(normalize_embeddings=False)
