"""Query algebra: the weighted sum of terms, checked against numpy, through the library and the index."""

from __future__ import annotations

import numpy as np
import pytest

from vecmetric.errors import InputError
from vecmetric.index import exact_search
from vecmetric.query import combine, parse_arguments, search_store


def unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_combine_by_hand():
    a, b, c = np.array([3.0, 4.0, 0.0]), np.array([0.0, 0.0, 2.0]), np.array([1.0, 0.0, 0.0])
    # cosine: unit terms, weighted sum, unit result
    expected = unit(1 * unit(a) + 2 * unit(b) - 0.5 * unit(c))
    np.testing.assert_allclose(combine([a, b, c], [1, 2, -0.5], "cosine"), expected, rtol=1e-6)
    # ip and l2: divided by the sum of the positive weights (3), so one term of any weight is itself
    for metric in ("ip", "l2"):
        np.testing.assert_allclose(combine([a, b, c], [1, 2, -0.5], metric), (a + 2 * b - 0.5 * c) / 3, rtol=1e-6)
        np.testing.assert_allclose(combine([a], [7.5], metric), a, rtol=1e-6)
        np.testing.assert_allclose(combine([a, b], [1, 1], metric), (a + b) / 2, rtol=1e-6)  # the midpoint
    np.testing.assert_allclose(combine([a], [2], "cosine"), unit(a), rtol=1e-6)
    with pytest.raises(InputError, match="cancel out"):
        combine([a, a], [1, -1], "cosine")
    np.testing.assert_allclose(combine([a, a], [1, -1], "l2"), np.zeros(3), atol=1e-7)  # the origin is a point under l2
    with pytest.raises(InputError, match="at least one term to add"):
        combine([a], [-1], "ip")


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
@pytest.mark.parametrize("exact", [False, True])
def test_expression_of_stored_rows_against_numpy(vector_store, clustered_vectors, no_model, metric, exact):
    data = clustered_vectors(n=600, dim=24, clusters=12, seed=3)
    if metric != "l2":
        data = data / np.linalg.norm(data, axis=1, keepdims=True) * (1.0 if metric == "cosine" else 0.3)
    store = vector_store(data, metric=metric)
    (query,) = parse_arguments(["@10", "+", "2:@200", "-", "0.5:@/data/c2/00417.png"])
    if metric == "cosine":
        want = unit(unit(data[10]) + 2 * unit(data[200]) - 0.5 * unit(data[417]))
    else:
        want = (data[10] + 2 * data[200] - 0.5 * data[417]) / 3
    others = np.setdiff1d(np.arange(len(data)), [10, 200, 417])  # the query's own images are left out
    truth_ids, truth_d = exact_search(data[others], want[None], 10, metric=metric, ids=others)

    (result,) = search_store(store, [query], k=10, exact=exact, ef=400)
    assert result.source == "@10 + 2:@200 - 0.5:@/data/c2/00417.png"
    assert [h.id for h in result] == truth_ids[0].tolist()
    np.testing.assert_allclose([h.distance for h in result], np.maximum(truth_d[0], 0) if metric != "ip" else truth_d[0], atol=2e-4)
    assert [h.path for h in result] == [f"/data/c{i % 5}/{i:05d}.png" for i in truth_ids[0]]
    assert [h.rank for h in result] == list(range(1, 11)) and all(h.query == result.source for h in result)
    assert [t.row_id for t in result.terms] == [10, 200, 417] and not any(t.embedded for t in result.terms)

    kept = search_store(store, [query], k=len(data), exact=exact, ef=len(data), keep_query_images=True)[0]
    assert {10, 200, 417} <= {h.id for h in kept} and len(kept) == len(data)


def test_query_vectors_of_many_queries_are_each_their_own(vector_store, clustered_vectors, no_model):
    data = clustered_vectors(n=200, dim=8, clusters=4, seed=1)
    store = vector_store(data, metric="l2")
    queries = parse_arguments(["-"], stdin=["@1 + @2\n", "@3\n", "3:@4 - @5\n"])
    results = search_store(store, queries, k=3, exact=True, keep_query_images=True)
    for result, want in zip(results, [(data[1] + data[2]) / 2, data[3], (3 * data[4] - data[5]) / 3]):
        ids, _ = exact_search(data, want[None], 3, metric="l2")
        assert [h.id for h in result] == ids[0].tolist()


def test_the_public_api_still_finds_search_store():
    import vecmetric
    import vecmetric.index
    import vecmetric.query

    assert vecmetric.search_store is vecmetric.query.search_store is vecmetric.index.search_store
    assert vecmetric.index.SearchHit is vecmetric.query.SearchHit
