"""Hyperbolic geometry: the Poincare distance against closed forms, the geometry checks, and exact re-ranking of
HNSW candidates against exact hyperbolic search on a test store's vectors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vecmetric.distances import (
    DEFAULT_CURVATURE,
    EUCLIDEAN,
    check_geometry,
    geometry_of,
    get_metric,
    pairwise_distances,
    poincare_candidate_count,
    poincare_distances,
    rerank_poincare,
)
from vecmetric.errors import InputError, TrainError


def mobius_distance(x, y, c):
    """``(2 / sqrt(c)) artanh(sqrt(c) |(-x) (+)_c y|)``: the Mobius-addition form (hyptorch's), written out here."""
    x, y = -np.asarray(x, np.float64), np.asarray(y, np.float64)
    xy, xx, yy = x @ y, x @ x, y @ y
    added = ((1 + 2 * c * xy + c * yy) * x + (1 - c * xx) * y) / (1 + 2 * c * xy + c * c * xx * yy)
    return 2 / math.sqrt(c) * math.atanh(math.sqrt(c) * np.linalg.norm(added))


def ball_points(n, dim, c, seed=0, max_ratio=0.9):
    """Random points of the ball of curvature -c, norms up to ``max_ratio`` of its radius."""
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(n, dim))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    return directions * rng.uniform(0, max_ratio, size=(n, 1)) / math.sqrt(c)


@pytest.mark.parametrize("c", [0.1, 1.0, 2.5])
def test_distance_from_the_origin_is_twice_artanh(c):
    points = ball_points(20, 5, c, seed=1)
    got = poincare_distances(np.zeros((1, 5)), points, c)[0]
    expected = [2 / math.sqrt(c) * math.atanh(math.sqrt(c) * np.linalg.norm(p)) for p in points]
    np.testing.assert_allclose(got, expected, rtol=1e-5)


@pytest.mark.parametrize("c", [0.1, 1.0, 2.5])
def test_distance_equals_the_mobius_addition_form(c):
    x, y = ball_points(15, 8, c, seed=2), ball_points(12, 8, c, seed=3)
    got = poincare_distances(x, y, c)
    expected = np.array([[mobius_distance(a, b, c) for b in y] for a in x])
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert got.dtype == np.float32 and got.shape == (15, 12)


def test_distance_along_a_diameter_is_the_log_of_the_cross_ratio():
    # On the unit ball (c = 1), points a < b on one diameter: d = |ln((1 + b)/(1 - b)) - ln((1 + a)/(1 - a))|.
    a, b = -0.5, 0.9
    d = poincare_distances([[a, 0.0]], [[b, 0.0]], 1.0)[0, 0]
    assert d == pytest.approx(math.log((1 + b) / (1 - b)) - math.log((1 + a) / (1 - a)), rel=1e-6)
    # the same points on a ball of curvature -c, scaled to it: distances scale by 1 / sqrt(c)
    c = 0.1
    scaled = poincare_distances([[a / math.sqrt(c), 0.0]], [[b / math.sqrt(c), 0.0]], c)[0, 0]
    assert scaled == pytest.approx(d / math.sqrt(c), rel=1e-6)


def test_distance_is_a_metric_on_samples():
    c = DEFAULT_CURVATURE
    points = ball_points(30, 4, c, seed=4)
    d = poincare_distances(points, points, c).astype(np.float64)
    np.testing.assert_allclose(d, d.T, rtol=1e-5, atol=1e-6)
    assert np.abs(np.diag(d)).max() < 1e-3
    assert (d + np.eye(30) > 0).all()
    assert (d[:, :, None] <= d[:, None, :] + d.T[None, :, :].transpose(0, 2, 1) + 1e-4).all()  # triangle inequality


def test_pairwise_distances_needs_the_curvature_for_poincare():
    points = ball_points(3, 4, 1.0)
    np.testing.assert_array_equal(pairwise_distances(points, points, "poincare", curvature=1.0), poincare_distances(points, points, 1.0))
    with pytest.raises(InputError, match="curvature"):
        pairwise_distances(points, points, "poincare")


def test_torch_training_distance_equals_numpy_and_has_finite_gradients():
    import torch

    from vecmetric.distances import pml_distance

    c = 0.3
    points = torch.tensor(ball_points(10, 6, c, seed=5), dtype=torch.float32, requires_grad=True)
    distance = pml_distance("poincare", curvature=c)
    assert not distance.is_inverted
    mat = distance(points)
    np.testing.assert_allclose(mat.detach().numpy(), poincare_distances(points.detach().numpy(), points.detach().numpy(), c), rtol=1e-4, atol=1e-3)
    pairs = distance.pairwise_distance(points[:5], points[5:])
    np.testing.assert_allclose(pairs.detach().numpy(), np.diag(mat.detach().numpy()[:5, 5:]), rtol=1e-4)
    mat.sum().backward()  # the zero diagonal included
    assert torch.isfinite(points.grad).all()


@pytest.mark.parametrize(
    "name, curvature, match",
    [
        ("spherical", None, "unknown --geometry 'spherical'"),
        ("hyperbolic", 0.0, "--curvature must be positive, not 0"),
        ("hyperbolic", -1.0, "--curvature must be positive, not -1"),
        ("hyperbolic", float("nan"), "--curvature must be positive"),
        ("euclidean", 0.5, "--curvature applies to --geometry hyperbolic only"),
    ],
)
def test_bad_geometry_is_refused(name, curvature, match):
    with pytest.raises(TrainError, match=match) as info:
        check_geometry(name, curvature, error=TrainError)
    assert info.value.exit_code == 7


def test_geometry_of_model_descriptions():
    assert geometry_of({}) == EUCLIDEAN and geometry_of({"metric": "cosine"}) == EUCLIDEAN  # stores from before geometry
    hyperbolic = check_geometry("hyperbolic", 0.5)
    assert (hyperbolic.curvature, hyperbolic.clip_r) == (0.5, 2.3)
    assert geometry_of({"geometry": hyperbolic.to_dict()}) == hyperbolic
    assert geometry_of({"architecture": {"source": "timm", "name": "x", "geometry": "hyperbolic", "curvature": 0.5, "clip_r": 2.3}}) == hyperbolic
    assert get_metric("poincare").space == "l2"
    with pytest.raises(TrainError, match="--geometry hyperbolic"):
        get_metric("poincare", error=TrainError, trainable=True)


def test_rerank_of_every_candidate_is_exact_search_and_pads_missing_ones():
    c = 0.7
    data = ball_points(50, 5, c, seed=6)
    queries = ball_points(4, 5, c, seed=7)
    ids = np.tile(np.arange(50), (4, 1))[:, ::-1].copy()  # candidates in the wrong order
    found, dist = rerank_poincare(queries, ids, data[ids], 10, c)
    exact = poincare_distances(queries, data, c)
    np.testing.assert_array_equal(found, np.argsort(exact, axis=1, kind="stable")[:, :10])
    np.testing.assert_allclose(dist, np.sort(exact, axis=1)[:, :10], rtol=1e-5)
    short = np.full((4, 12), -1)
    short[:, :3] = ids[:, :3]
    found, dist = rerank_poincare(queries, short, data[np.maximum(short, 0)], 5, c)
    assert (found[:, 3:] == -1).all() and np.isinf(dist[:, 3:]).all() and (found[:, :3] >= 0).all()


def clustered_ball_points(n, dim, c, classes, seed):
    """Points like a trained hyperbolic head's: Gaussian clusters in the tangent space, clipped to norm 2.3,
    mapped by expmap0 onto the ball (what ``EmbeddingModel`` does)."""
    import torch

    from vecmetric.encoders._model import to_poincare_ball

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)) * 1.5
    tangent = centres[rng.integers(0, classes, n)] + rng.normal(size=(n, dim)) * 0.6
    return to_poincare_ball(torch.tensor(tangent, dtype=torch.float32), c, 2.3).numpy()


def test_hnsw_candidates_reranked_match_exact_hyperbolic_search(tmp_path):
    """The search path's pieces on a test store's vectors: an l2 HnswIndex (the poincare metric's space) at its default
    ef gives ``poincare_candidate_count`` candidates, ``rerank_poincare`` orders them exactly; recall@10 against
    exact hyperbolic search must be at least 0.95."""
    from vecmetric.index import exact_search
    from vecmetric.index._hnsw import HnswIndex, IndexParams

    c = DEFAULT_CURVATURE
    points = clustered_ball_points(3200, 32, c, classes=60, seed=8)
    data, queries = points[:3000], points[3000:]
    ids = np.arange(10_000, 13_000)  # store row ids, not positions
    params = IndexParams(metric="poincare")
    index = HnswIndex.create(tmp_path / "_index", data.shape[1], params, len(data))
    assert index.sidecar["space"] == "l2"
    index.add(data, ids)
    fetch = poincare_candidate_count(10, params.ef)
    candidate_ids, _ = index.query(queries, fetch)
    vectors = data[candidate_ids - 10_000]
    found, distances = rerank_poincare(queries, candidate_ids, vectors, 10, c)
    exact = poincare_distances(queries, data, c)
    truth, _ = exact_search(data, queries, 10, metric="poincare", ids=ids, curvature=c)
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)])
    assert recall >= 0.95, recall
    np.testing.assert_allclose(distances[:, 0], np.sort(exact, axis=1)[:, 0], rtol=1e-4)
    assert (np.diff(distances, axis=1) >= 0).all()
