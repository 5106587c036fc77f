"""``LiveIndex``: answers for the store as it is on disk, while writers add and delete rows, without the lock."""

from __future__ import annotations

import numpy as np
import pytest

from vecmetric.index import build_index, exact_search, recall_at_k
from vecmetric.index._live import LiveIndex
from vecmetric.store import StoreLock, create_store, embeddings_to_numpy, open_store


def all_rows(path):
    table = open_store(path).read_table(["id", "embedding"])
    return table.column("id").to_numpy(), embeddings_to_numpy(table.column("embedding"))


def assert_exact(live, path, queries, k):
    """Recall@k against exact search over every row on disk (HNSW may miss a neighbour, the merge may not)."""
    ids, vectors = all_rows(path)
    want_ids, want_d = exact_search(vectors, queries, k, metric=live.metric, ids=ids)
    got_ids, got_d = live.query(queries, k, ef=400)
    assert recall_at_k(got_ids, want_ids) >= 0.98
    for row_got, row_dist, row_want, row_want_d in zip(got_ids, got_d, want_ids, want_d):
        expected = dict(zip(row_want.tolist(), row_want_d.tolist()))
        for i, d in zip(row_got.tolist(), row_dist.tolist()):
            if i in expected:
                assert d == pytest.approx(expected[i], rel=1e-5, abs=1e-5)  # hnswlib and numpy round differently


@pytest.mark.parametrize("metric", ["cosine", "l2", "ip"])
def test_live_index_sees_added_and_deleted_rows_and_new_generations(tmp_path, fake_encoder, write_rows, clustered_vectors, metric):
    vectors = clustered_vectors(n=1200, dim=16, clusters=12, seed=3)
    store = create_store(tmp_path / "store", fake_encoder(16, metric=metric))
    write_rows(store, range(800), vectors[:800])
    build_index(store)
    queries = clustered_vectors(n=20, dim=16, clusters=12, seed=4)

    live = LiveIndex(tmp_path / "store").refresh()
    assert live.count == 800 and len(live.tail_ids) == 0
    assert_exact(live, tmp_path / "store", queries, 10)

    # Another process holds the writer's lock while rows land and others go: the reader needs no lock.
    with StoreLock(tmp_path / "store", "embed"):
        write_rows(open_store(tmp_path / "store"), range(800, 1200), vectors[800:])
        open_store(tmp_path / "store").delete_ids(range(0, 800, 4))
        live.refresh()
    assert live.count == 1200 - 200 and len(live.tail_ids) == 400 and live.deleted == 200
    assert_exact(live, tmp_path / "store", queries, 10)
    got, _ = live.query(queries, 50)
    assert not np.isin(got, np.arange(0, 800, 4)).any()  # deleted rows never come back

    build_index(open_store(tmp_path / "store"))  # a new generation: the tail is in the index now
    live.refresh()
    assert len(live.tail_ids) == 0 and live.count == 1000
    assert_exact(live, tmp_path / "store", queries, 10)


def test_live_index_without_an_index_searches_every_row_exactly(tmp_path, fake_encoder, write_rows, clustered_vectors):
    vectors = clustered_vectors(n=300, dim=8, clusters=5, seed=1)
    store = create_store(tmp_path / "store", fake_encoder(8))
    write_rows(store, range(300), vectors)
    live = LiveIndex(tmp_path / "store").refresh()
    assert live.index is None and live.count == 300
    assert_exact(live, tmp_path / "store", vectors[:5], 7)
