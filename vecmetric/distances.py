"""The metrics vecmetric knows, in one table, their distances, and the embeddings' geometry.

Every command names metrics the same way and measures in the same units, the ones hnswlib
reports and ``search`` prints:

============  ==========================  =============================================
metric        distance                    embeddings
============  ==========================  =============================================
``cosine``    1 - cosine similarity       L2-normalised by the model (trainable)
``ip``        1 - inner product           as they come (search and evaluation only)
``l2``        squared Euclidean distance  raw, unnormalised (trainable)
``poincare``  Poincare distance           points of a Poincare ball (``--geometry hyperbolic``)
============  ==========================  =============================================

``pairwise_distances`` (numpy) is the exact reference that index, query, dedup and eval
use; ``pml_distance`` gives pytorch-metric-learning's matching distance object for
training and retrieval metrics (its ``l2`` is the plain, not squared, Euclidean distance,
which ranks neighbours identically).

Hyperbolic geometry. A hyperbolic model ends in a Poincare-ball head (Ermolov et al. 2022,
"Hyperbolic Vision Transformers"): its features are clipped to a norm of at most ``clip_r``
and mapped onto the ball by the exponential map at the origin. The curvature is given as
``c > 0``, hyptorch's convention: the ball has radius ``1 / sqrt(c)`` and constant Gaussian
curvature ``-c``; ``c`` of 0 or below is refused. Its distance is

    d_c(x, y) = arcosh(1 + 2 c |x - y|^2 / ((1 - c |x|^2) (1 - c |y|^2))) / sqrt(c)

hnswlib has no hyperbolic space, so the ``poincare`` metric's ``space`` is the one whose order
its index candidates come in (``l2``: measured in benchmarks/RESULTS.md); ``rerank_poincare``
orders the candidates by the exact distance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Metric",
    "METRICS",
    "METRIC_NAMES",
    "TRAIN_METRIC_NAMES",
    "Geometry",
    "GEOMETRIES",
    "EUCLIDEAN",
    "DEFAULT_CURVATURE",
    "DEFAULT_CLIP_RADIUS",
    "HYPERBOLIC_CANDIDATE_FACTOR",
    "get_metric",
    "check_geometry",
    "geometry_of",
    "pairwise_distances",
    "poincare_distances",
    "poincare_candidate_count",
    "rerank_poincare",
    "pml_distance",
]


@dataclass(frozen=True)
class Metric:
    """One metric: its name, the hnswlib space that computes it (or gives its candidates), and where it may be used.

    Attributes:
        geometry: ``euclidean``, or ``hyperbolic`` for a metric hnswlib cannot compute: its index
            works in ``space`` and the results are re-ranked by the exact distance.
    """

    name: str
    space: str
    trainable: bool
    normalized: bool
    distance: str
    geometry: str = "euclidean"


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("cosine", "cosine", trainable=True, normalized=True, distance="1 - cosine similarity"),
        Metric("ip", "ip", trainable=False, normalized=False, distance="1 - inner product"),
        Metric("l2", "l2", trainable=True, normalized=False, distance="squared L2 distance"),
        Metric("poincare", "l2", trainable=False, normalized=False, distance="Poincare distance", geometry="hyperbolic"),
    )
}
#: The metrics a user picks with ``--metric``; ``poincare`` comes with ``--geometry hyperbolic``.
METRIC_NAMES = tuple(name for name, m in METRICS.items() if m.geometry == "euclidean")
TRAIN_METRIC_NAMES = tuple(name for name, m in METRICS.items() if m.trainable)

GEOMETRIES = ("euclidean", "hyperbolic")
#: Hyp-ViT's settings (Ermolov et al. 2022): curvature 0.1, features clipped to norm 2.3 before the exponential map.
DEFAULT_CURVATURE = 0.1
DEFAULT_CLIP_RADIUS = 2.3
#: Index candidates per wanted neighbour before the exact re-ranking (see ``poincare_candidate_count``).
HYPERBOLIC_CANDIDATE_FACTOR = 4


def get_metric(name: str, *, error: type[Exception] | None = None, option: str = "--metric", trainable: bool = False) -> Metric:
    """The ``Metric`` called ``name``.

    Args:
        name: ``cosine``, ``ip``, ``l2`` (or ``poincare``, the metric of hyperbolic models, as stores record it).
        error: the vecmetric error class to raise (default ``InputError``).
        option: how the user spelled the setting, for the message.
        trainable: only accept metrics that ``--metric`` of training supports.

    Raises:
        error: an unknown name (or one training cannot use), with the valid choices.
    """
    if error is None:
        from .errors import InputError as error
    choices = TRAIN_METRIC_NAMES if trainable else METRIC_NAMES
    metric = METRICS.get(name)
    if metric is None or (trainable and not metric.trainable):
        hint = "choose one of: " + ", ".join(choices)
        if name == "poincare":
            hint += "; hyperbolic embeddings come from --geometry hyperbolic"
        raise error(f"unknown {option} {name!r}", hint=hint)
    return metric


@dataclass(frozen=True)
class Geometry:
    """Where a model's embeddings live.

    Attributes:
        name: ``euclidean`` or ``hyperbolic`` (a Poincare ball).
        curvature: ``c > 0`` of the ball (radius ``1 / sqrt(c)``, Gaussian curvature ``-c``); None when Euclidean.
        clip_r: the largest feature norm before the exponential map; None when Euclidean.
    """

    name: str = "euclidean"
    curvature: float | None = None
    clip_r: float | None = None

    @property
    def hyperbolic(self) -> bool:
        return self.name == "hyperbolic"

    def to_dict(self) -> dict[str, Any]:
        if not self.hyperbolic:
            return {"name": self.name}
        return {"name": self.name, "curvature": self.curvature, "clip_r": self.clip_r}


EUCLIDEAN = Geometry()


def check_geometry(name: str, curvature: float | None = None, clip_r: float | None = None, *, error: type[Exception] | None = None) -> Geometry:
    """A checked ``Geometry`` (defaults filled in for a hyperbolic one).

    Raises:
        error (default ``InputError``): an unknown geometry, a curvature that is zero, negative or not
            finite, a curvature given for Euclidean embeddings, or a clipping radius that is not positive.
    """
    if error is None:
        from .errors import InputError as error
    if name not in GEOMETRIES:
        raise error(f"unknown --geometry {name!r}", hint="choose one of: " + ", ".join(GEOMETRIES))
    if name == "euclidean":
        if curvature is not None:
            raise error("--curvature applies to --geometry hyperbolic only")
        return EUCLIDEAN
    curvature = DEFAULT_CURVATURE if curvature is None else float(curvature)
    if not (curvature > 0 and math.isfinite(curvature)):
        raise error(
            f"--curvature must be positive, not {curvature:g}",
            hint="c > 0 is the Poincare ball of radius 1/sqrt(c), whose Gaussian curvature is -c",
        )
    clip_r = DEFAULT_CLIP_RADIUS if clip_r is None else float(clip_r)
    if not (clip_r > 0 and math.isfinite(clip_r)):
        raise error(f"the clipping radius must be positive, not {clip_r:g}")
    return Geometry("hyperbolic", curvature, clip_r)


def geometry_of(model: dict[str, Any] | None) -> Geometry:
    """The geometry a model description records (a store manifest's ``model``, ``Encoder.describe()``,
    an export's or a checkpoint's ``architecture``); Euclidean when it records none (older stores).
    """
    model = model or {}
    found = model.get("geometry")
    if isinstance(found, str):  # an architecture dict: geometry, curvature, clip_r side by side
        found = {"name": found, "curvature": model.get("curvature"), "clip_r": model.get("clip_r")}
    if found is None and isinstance(model.get("architecture"), dict):
        return geometry_of(model["architecture"])
    if not found or found.get("name", "euclidean") == "euclidean":
        return EUCLIDEAN
    return check_geometry(found["name"], found.get("curvature"), found.get("clip_r"))


def _poincare_matrix(xp, queries, data, curvature: float):
    """Poincare distances between every query and every row, for numpy or torch arrays (``xp`` the module).

    ``log1p(delta + sqrt(delta (delta + 2)))`` is ``arcosh(1 + delta)`` without the rounding of
    ``1 + delta`` for near points; ``delta`` is clamped just above 0 so that the gradient of the
    square root stays finite (and zero below the clamp).
    """
    qq = (queries * queries).sum(-1)[:, None]
    dd = (data * data).sum(-1)[None, :]
    sq = xp.clip(qq - 2.0 * (queries @ data.T) + dd, 0.0, None)
    return _arcosh_form(xp, sq, qq, dd, curvature)


def _poincare_pairs(xp, x, y, curvature: float):
    """Poincare distances between the rows of ``x`` and the matching rows of ``y``."""
    diff = x - y
    return _arcosh_form(xp, (diff * diff).sum(-1), (x * x).sum(-1), (y * y).sum(-1), curvature)


def _arcosh_form(xp, sq, xx, yy, curvature: float):
    c = float(curvature)
    denominator = xp.clip((1.0 - c * xx) * (1.0 - c * yy), 1e-15, None)
    delta = xp.clip(2.0 * c * sq / denominator, 1e-15, None)
    return xp.log1p(delta + xp.sqrt(delta * (delta + 2.0))) / math.sqrt(c)


def poincare_distances(queries, data, curvature: float) -> Any:
    """Exact Poincare distances (numpy, computed in float64): float32 (Q, N).

    Args:
        queries, data: points of the ball of curvature ``-curvature`` (norms below ``1 / sqrt(curvature)``).
        curvature: ``c > 0``.
    """
    import numpy as np

    queries = np.atleast_2d(np.asarray(queries, dtype=np.float64))
    data = np.atleast_2d(np.asarray(data, dtype=np.float64))
    return _poincare_matrix(np, queries, data, curvature).astype(np.float32)


def pairwise_distances(queries, data, metric: str, curvature: float | None = None) -> Any:
    """Exact distances between every query and every row, in the metric's units (float32 (Q, N)).

    Raises:
        InputError: an unknown metric, or ``poincare`` without its curvature.
    """
    import numpy as np

    name = get_metric(metric).name
    if name == "poincare":
        if curvature is None:
            from .errors import InputError

            raise InputError("the poincare metric needs the curvature of the model's ball", hint="use a hyperbolic model's store")
        return poincare_distances(queries, data, curvature)
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


def poincare_candidate_count(k: int, ef: int) -> int:
    """How many index candidates (``poincare``'s ``space``) to fetch for ``k`` exact hyperbolic neighbours.

    ``HYPERBOLIC_CANDIDATE_FACTOR`` x ``k``, at least ``ef``: hnswlib explores ``max(ef, candidates)``
    nodes anyway, so asking for ``ef`` of them costs nothing more (figures in benchmarks/RESULTS.md).
    """
    return max(HYPERBOLIC_CANDIDATE_FACTOR * int(k), int(ef), int(k))


def rerank_poincare(queries, candidate_ids, candidate_vectors, k: int, curvature: float) -> tuple[Any, Any]:
    """The exact ``k`` nearest of each query's candidates, by Poincare distance.

    Args:
        queries: (Q, D) points of the ball.
        candidate_ids: (Q, K) ids of each query's candidates (from the index, in any order); -1 marks none.
        candidate_vectors: (Q, K, D) their stored vectors (any values where the id is -1).
        k: neighbours to keep (at most K).
        curvature: the ball's ``c > 0`` (``geometry_of(store.model).curvature``).

    Returns:
        ``(ids, distances)``, each (Q, min(k, K)), nearest first; a query with fewer than ``k``
        candidates ends its rows with id -1 and distance ``inf``.
    """
    import numpy as np

    queries = np.atleast_2d(np.asarray(queries, dtype=np.float64))
    ids = np.asarray(candidate_ids, dtype=np.int64).reshape(len(queries), -1)
    vectors = np.asarray(candidate_vectors, dtype=np.float64).reshape(ids.shape[0], ids.shape[1], -1)
    distances = np.empty(ids.shape, dtype=np.float64)
    for row, (query, rows) in enumerate(zip(queries, vectors)):
        distances[row] = _poincare_matrix(np, query[None, :], rows, curvature)[0]
    distances[ids < 0] = np.inf
    k = min(int(k), ids.shape[1])
    order = np.argsort(distances, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(ids, order, axis=1), np.take_along_axis(distances, order, axis=1).astype(np.float32)


def pml_distance(metric: str, curvature: float | None = None):
    """pytorch-metric-learning's distance object for ``metric`` (imports torch).

    Args:
        curvature: the ball's ``c`` for ``poincare``.

    Raises:
        InputError: an unknown metric, or ``poincare`` without its curvature.
    """
    from pytorch_metric_learning import distances

    name = get_metric(metric).name
    if name == "cosine":
        return distances.CosineSimilarity()
    if name == "l2":
        return distances.LpDistance(p=2, power=1, normalize_embeddings=False)
    if name == "poincare":
        if curvature is None:
            from .errors import InputError

            raise InputError("the poincare metric needs the curvature of the model's ball")
        return _poincare_pml_distance(float(curvature))
    return distances.DotProductSimilarity(normalize_embeddings=False)


def _poincare_pml_distance(curvature: float):
    """A pytorch-metric-learning distance computing ``_poincare_matrix`` in torch (not inverted: smaller is closer)."""
    import torch
    from pytorch_metric_learning.distances import BaseDistance

    class PoincareDistance(BaseDistance):
        def __init__(self, curvature: float):
            super().__init__(normalize_embeddings=False, is_inverted=False)
            self.curvature = curvature

        def compute_mat(self, query_emb, ref_emb):
            return _poincare_matrix(torch, query_emb, ref_emb, self.curvature)

        def pairwise_distance(self, query_emb, ref_emb):
            return _poincare_pairs(torch, query_emb, ref_emb, self.curvature)

    return PoincareDistance(curvature)
