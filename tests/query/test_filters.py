"""Filters and thresholds hold inside the index search: checked against exact search with the same filter."""

from __future__ import annotations

import fnmatch

import numpy as np
import pytest

from vecmetric.errors import InputError
from vecmetric.index import exact_search, recall_at_k
from vecmetric.query import SearchFilter, like_query, search_store

N = 6000


@pytest.fixture
def rows(clustered_vectors):
    """6000 vectors in 30 clusters; labels c0..c9 (c9 on only 7 rows) and paths under /data or /archive."""
    rng = np.random.default_rng(7)
    data = clustered_vectors(n=N, dim=16, clusters=30, seed=11)
    labels = np.array([f"c{x}" for x in rng.integers(0, 9, N)], dtype=object)
    labels[rng.choice(N, 7, replace=False)] = "c9"
    paths = [f"/{'archive' if i % 3 == 0 else 'data'}/{labels[i]}/{i:05d}.jpg" for i in range(N)]
    return data, labels, paths


def truth(data, labels, paths, metric, query_id, flt: SearchFilter, k):
    """Exact search among the rows the filter allows, the query's own row left out: plain numpy and fnmatch."""
    allowed = np.array([(not flt.labels or lab in flt.labels) and (flt.path is None or fnmatch.fnmatchcase(p, flt.path)) for lab, p in zip(labels, paths)])
    allowed[query_id] = False
    ids = np.flatnonzero(allowed)
    found, dist = exact_search(data[ids], data[query_id][None], k, metric=metric, ids=ids)
    if metric != "ip":
        dist = np.maximum(dist, 0)
    keep = dist[0] <= (np.inf if flt.max_distance is None else flt.max_distance)
    return found[0][keep].tolist(), dist[0][keep].tolist()


FILTERS = [
    SearchFilter(labels=("c1", "c3")),  # ~22% of the rows: hnswlib's filter inside the graph search
    SearchFilter(path="/archive/*"),  # a third
    SearchFilter(labels=("c2",), path="/data/*"),  # ~7%
    SearchFilter(labels=("c2",), path="*/0???0.jpg"),  # ~1%: exact over the index's vectors
    SearchFilter(labels=("c9",)),  # 7 rows: fewer than k
    SearchFilter(labels=("c4", "c5", "c6", "c7"), path="*.jpg"),  # ~44%
]


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_filters_against_exact_search(vector_store, rows, no_model, metric):
    data, labels, paths = rows
    if metric != "l2":
        data = data / np.linalg.norm(data, axis=1, keepdims=True)
    store = vector_store(data, metric=metric, labels=labels, paths=paths)
    queries = list(range(5, N, N // 12))
    for flt in FILTERS:
        results = search_store(store, [like_query(q) for q in queries], k=10, filters=flt, ef=100)
        exact = search_store(store, [like_query(q) for q in queries], k=10, filters=flt, exact=True)
        want = [truth(data, labels, paths, metric, q, flt, 10) for q in queries]
        for result, (ids, _) in zip(results, want):
            assert len(result) == len(ids) and (len(ids) == 10 or flt.labels == ("c9",)), (flt, len(result))
            assert all((not flt.labels or h.label in flt.labels) and fnmatch.fnmatchcase(h.path, flt.path or "*") for h in result)
        assert recall_at_k([[h.id for h in r] for r in results], [w[0] for w in want]) >= 0.97, flt
        for result, (ids, dist) in zip(exact, want):
            assert [h.id for h in result] == ids  # exact search with the filter is the truth itself
            np.testing.assert_allclose([h.distance for h in result], dist, atol=1e-4)


@pytest.mark.parametrize("exact_fraction", [0, None])
def test_k_results_whenever_k_rows_match(vector_store, rows, no_model, monkeypatch, exact_fraction):
    """Through hnswlib's filter (exact_fraction=0 forces it even for 7 rows) and through the exact shortcut."""
    import vecmetric.query._nearest as nearest

    if exact_fraction is not None:
        monkeypatch.setattr(nearest, "EXACT_FRACTION", exact_fraction)
    data, labels, paths = rows
    store = vector_store(data, metric="l2", labels=labels, paths=paths)
    rare = [i for i in range(N) if labels[i] == "c9"]
    outsider = next(i for i in range(N) if labels[i] != "c9")
    for k in (1, 3, 7, 50):
        (result,) = search_store(store, [like_query(outsider)], k=k, filters=SearchFilter(labels=("c9",)))
        assert len(result) == min(k, 7) and {h.id for h in result} <= set(rare)
        want, _ = truth(data, labels, paths, "l2", outsider, SearchFilter(labels=("c9",)), k)
        assert [h.id for h in result] == want
    # A query that is itself one of the 7 leaves 6.
    (result,) = search_store(store, [like_query(rare[0])], k=10, filters=SearchFilter(labels=("c9",)))
    assert sorted(h.id for h in result) == sorted(rare[1:])
    (nothing,) = search_store(store, [like_query(rare[0])], k=10, filters=SearchFilter(labels=("no-such-label",)))
    assert list(nothing) == []


def test_max_distance_cuts_the_list(vector_store, rows, no_model):
    data, labels, paths = rows
    store = vector_store(data, metric="l2", labels=labels, paths=paths)
    (full,) = search_store(store, [like_query(42)], k=20, exact=True)
    limit = (full[4].distance + full[5].distance) / 2
    for exact in (True, False):
        (cut,) = search_store(store, [like_query(42)], k=20, exact=exact, ef=200, filters=SearchFilter(max_distance=limit))
        assert [h.id for h in cut] == [h.id for h in full[:5]]
    (none,) = search_store(store, [like_query(42)], k=20, filters=SearchFilter(max_distance=-1.0))
    assert list(none) == []


def test_relative_path_globs_are_anchored_at_the_cwd(vector_store, rows, no_model, tmp_path, monkeypatch):
    data, labels, _ = rows
    paths = [str(tmp_path / "photos" / ("cats" if i % 2 else "dogs") / f"{i}.jpg") for i in range(N)]
    store = vector_store(data, metric="l2", labels=labels, paths=paths)
    monkeypatch.chdir(tmp_path)
    (result,) = search_store(store, [like_query(3)], k=10, filters=SearchFilter(path="photos/cats/*"))
    assert len(result) == 10 and all(h.path.startswith(str(tmp_path / "photos" / "cats")) for h in result)
    assert SearchFilter(path="*/dogs/*").path_pattern() == "*/dogs/*"


def test_bad_filters():
    with pytest.raises(InputError, match="finite number"):
        SearchFilter(max_distance=float("nan"))
    with pytest.raises(InputError, match="needs a glob"):
        SearchFilter(path=" ")
    assert SearchFilter(labels="cats").labels == ("cats",)
