"""Shards built in Ray tasks and held in Ray actors, on a loopback Ray instance this module starts.

The truth is the local build (the same rows in the same shards) and the local ``ShardedIndex``
(the same answers from the same files).
"""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import assert_loopback_only, descendants, processes_named, shard_generations, shard_ids, sockets_of

from vecmetric.index import RayShardedIndex, build_index, exact_search, load_current_index, recall_at_k
from vecmetric.store import create_store


@pytest.fixture
def vector_store(tmp_path, fake_encoder, write_rows, clustered_vectors):
    def make(n=2000, name="store"):
        store = create_store(tmp_path / name, fake_encoder(32, metric="cosine"))
        vectors = clustered_vectors(n=n, dim=32, clusters=30, seed=2)
        for chunk in np.array_split(np.arange(n), 4):
            write_rows(store, chunk, vectors[chunk])
        return store, vectors

    return make


def test_shards_built_in_ray_tasks_equal_a_local_build_then_update_alike(ray_loopback, vector_store, write_rows, clustered_vectors):
    (ray_store, vectors), (local_store, _) = vector_store(name="ray"), vector_store(name="local")
    queries = clustered_vectors(n=100, dim=32, clusters=30, seed=2) + 0.1
    truth, _ = exact_search(vectors, queries, k=10, metric="cosine")
    result = build_index(ray_store, shards=3, engine="ray")
    assert (result.count, result.shards, result.touched, result.rebuilt) == (2000, 3, [0, 1, 2], True)
    build_index(local_store, shards=3)
    assert shard_ids(ray_store) == shard_ids(local_store)
    assert recall_at_k(load_current_index(ray_store).query(queries, k=10)[0], truth) >= 0.95

    for store in (ray_store, local_store):  # 20 new rows, 10 removed from shard 1
        write_rows(store, range(2000, 2020), clustered_vectors(n=20, dim=32, clusters=30, seed=5))
        store.delete_ids(range(700, 710))
    before = shard_generations(ray_store)
    result = build_index(ray_store, engine="ray")
    assert (result.added, result.deleted, result.touched, result.rebuilt) == (20, 10, [1], False)
    assert build_index(local_store).touched == [1]
    assert shard_ids(ray_store) == shard_ids(local_store)
    after = shard_generations(ray_store)
    assert after[0] == before[0] and after[2] == before[2] and after[1] != before[1]
    labels, _ = load_current_index(ray_store).query(vectors[[0, 1500, 705]], k=3)
    assert labels[0, 0] == 0 and labels[1, 0] == 1500 and 705 not in labels


def test_a_shard_that_cannot_be_opened_in_its_task_rebuilds_everything(ray_loopback, vector_store, write_rows, clustered_vectors):
    store, _ = vector_store(n=600)
    build_index(store, shards=2, engine="ray")
    victim = store.index_dir / f"hnsw-{shard_generations(store)[0]}.bin"
    victim.write_bytes(victim.read_bytes()[:4096])  # the header still agrees; the graph is cut short
    write_rows(store, [600], clustered_vectors(n=1, dim=32, clusters=30, seed=6))  # shard 0 must take it
    result = build_index(store, engine="ray")
    assert result.rebuilt and result.count == 601 and [len(ids) for ids in shard_ids(store)] == [301, 300]


def test_shards_held_in_ray_actors_answer_as_the_local_sharded_index(ray_loopback, vector_store, clustered_vectors):
    store, vectors = vector_store()
    build_index(store, shards=4)
    queries = clustered_vectors(n=50, dim=32, clusters=30, seed=2) + 0.1
    local = load_current_index(store)
    want = local.query(queries, k=10, threads=1)
    with RayShardedIndex(store) as served:  # this process's Ray connection: used, and left open
        tree = descendants()
        _, sockets = sockets_of(tree)
        actors = processes_named(tree, "_ShardActor")
        assert (served.shards, served.count, served.metric) == (4, 2000, "cosine")
        got = served.query(queries, k=10)
        even = served.query(queries, k=5, filter=lambda label: label % 2 == 0)
        assert len(actors) == 4, actors  # one process per shard
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_allclose(got[1], want[1], rtol=1e-6)
    assert (even[0] % 2 == 0).all() and even[0].shape == (50, 5)
    assert_loopback_only(sockets)
    assert ray_loopback[0].is_initialized()


def test_more_shards_than_the_cluster_has_quarter_cpus_still_start(ray_loopback, vector_store):
    """12 actors asking 0.25 CPU each would need 3 of the 2 CPUs and wait forever: they ask less."""
    store, vectors = vector_store(n=600)
    build_index(store, shards=12)
    with RayShardedIndex(store, start_timeout=300) as served:
        labels, _ = served.query(vectors[[3, 599]], k=1)
    assert labels[:, 0].tolist() == [3, 599]


def test_shards_the_cluster_has_no_memory_for_are_one_clear_error(ray_loopback, vector_store, monkeypatch):
    from vecmetric.errors import EngineError
    from vecmetric.index import _ray_shards

    store, _ = vector_store(n=300)
    build_index(store, shards=2)
    monkeypatch.setattr(_ray_shards, "MEMORY_MARGIN", 10**6)  # each actor asks for ~TBs
    with pytest.raises(EngineError, match="did not place the index's 2 shard actors in 5 s") as caught:
        RayShardedIndex(store, start_timeout=5)
    assert "GiB of memory in all" in str(caught.value)
