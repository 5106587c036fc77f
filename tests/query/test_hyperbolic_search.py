"""A hyperbolic store: index candidates (l2 space) re-ranked by the exact Poincare distance."""

from __future__ import annotations

import numpy as np
import pytest

from vecmetric.distances import poincare_distances
from vecmetric.errors import InputError
from vecmetric.index import exact_search, recall_at_k
from vecmetric.query import Query, Term, TermKind, search_store
from vecmetric.store import create_store, open_store

CURVATURE = 0.5


@pytest.fixture
def ball_store(tmp_path, fake_encoder, write_rows):
    """600 points of the Poincare ball (c = 0.5) in 20 clusters, in a store whose model is hyperbolic."""
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(20, 8))
    centres *= (rng.uniform(0.3, 1.25, size=(20, 1)) / np.linalg.norm(centres, axis=1, keepdims=True))
    points = centres[rng.integers(0, 20, size=600)] + rng.normal(scale=0.08, size=(600, 8))
    radius = 1 / np.sqrt(CURVATURE)
    norms = np.linalg.norm(points, axis=1, keepdims=True)
    points = np.where(norms > 0.95 * radius, points * 0.95 * radius / norms, points).astype(np.float32)
    store = create_store(tmp_path / "store", fake_encoder(8, metric="poincare"))
    model = {**store.model, "metric": "poincare", "geometry": {"name": "hyperbolic", "curvature": CURVATURE, "clip_r": 2.3}}
    store.write_manifest(model=model)
    write_rows(open_store(tmp_path / "store"), range(600), points)
    return tmp_path / "store", points


def test_reranked_top_k_equals_exact_hyperbolic_search(ball_store):
    store, points = ball_store
    queries = [Query.of([Term(TermKind.ROW, i)], f"@{i}") for i in range(0, 600, 15)]
    results = search_store(store, queries, k=10)
    found = np.array([[hit.id for hit in r] for r in results])
    truth_ids, truth_d = exact_search(points, points[::15], 11, metric="poincare", ids=np.arange(600), curvature=CURVATURE)
    truth = [[i for i in row if i != q][:10] for q, row in zip(range(0, 600, 15), truth_ids)]  # a query leaves itself out
    assert recall_at_k(found, truth) >= 0.95
    # The printed distances are Poincare distances, exactly.
    for q, r in zip(range(0, 600, 15), results):
        want = poincare_distances(points[q][None], points[[h.id for h in r]], CURVATURE)[0]
        np.testing.assert_allclose([h.distance for h in r], want, rtol=1e-4, atol=1e-5)


def test_exact_search_of_a_hyperbolic_store_uses_the_poincare_distance(ball_store):
    store, points = ball_store
    [result] = search_store(store, [Query.of([Term(TermKind.ROW, 3)], "@3")], k=5, exact=True)
    want_ids, _ = exact_search(points, points[3][None], 6, metric="poincare", ids=np.arange(600), curvature=CURVATURE)
    assert [h.id for h in result] == [i for i in want_ids[0] if i != 3][:5]


def test_a_hyperbolic_query_cannot_subtract(ball_store):
    store, _ = ball_store
    query = Query.of([Term(TermKind.ROW, 1), Term(TermKind.ROW, 2, -1.0)], "@1 - @2")
    with pytest.raises(InputError, match="cannot subtract"):
        search_store(store, [query], k=3)
