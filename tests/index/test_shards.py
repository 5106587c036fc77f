"""A sharded index against brute force and against one big index; which shards an update touches;
the layout (plain hnswlib files, one sidecar as the commit point); status, verify and search over it."""

from __future__ import annotations

import json

import hnswlib
import numpy as np
import pytest
from _helpers import shard_generations, shard_ids
from hypothesis import given, settings
from hypothesis import strategies as st

from vecmetric.errors import InputError
from vecmetric.index import (
    HnswIndex,
    IndexStatus,
    ShardedIndex,
    build_index,
    exact_search,
    index_status,
    load_current_index,
    merge_top_k,
    pairwise_distances,
    recall_at_k,
)
from vecmetric.index._shards import assign_new_ids, shard_cap
from vecmetric.store import create_store
from vecmetric.verify import verify_store

METRICS = ["cosine", "ip", "l2"]


def prepare(vectors, metric):
    if metric == "ip":  # ip search is meant for normalised vectors (as cosine models make)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


@pytest.fixture
def vector_store(tmp_path, fake_encoder, write_rows, clustered_vectors):
    """``make(metric, n)``: a store of n clustered 32-d vectors written directly, ids 0..n-1, in 4 parts."""

    def make(metric="cosine", n=3000, name="store"):
        store = create_store(tmp_path / name, fake_encoder(32, metric=metric))
        vectors = prepare(clustered_vectors(n=n, dim=32, clusters=30, seed=2), metric)
        for chunk in np.array_split(np.arange(n), 4):
            write_rows(store, chunk, vectors[chunk])
        return store, vectors

    return make


# --- the pieces: placing new rows, merging answers ------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(counts=st.lists(st.integers(0, 500), min_size=1, max_size=9), new=st.integers(0, 1200))
def test_new_rows_go_to_the_smallest_shards_up_to_a_cap(counts, new):
    ids = np.arange(1000, 1000 + new) * 2
    parts = assign_new_ids(counts, ids)
    assert np.array_equal(np.concatenate(parts), ids)  # every new id once, in contiguous runs in shard order
    cap = shard_cap(counts, new)
    assert cap <= (sum(counts) + new) / len(counts) * 1.05 + 2  # the balanced level, 5% slack
    after = [c + len(p) for c, p in zip(counts, parts)]
    order = sorted(range(len(counts)), key=lambda i: (counts[i], i))
    receivers = [i for i in order if len(parts[i])]
    assert receivers == order[: len(receivers)]  # the smallest shards, smallest first
    assert all(after[i] <= cap for i in receivers)  # none grows past the cap
    assert all(after[i] == cap for i in receivers[:-1])  # as few shards touched as the cap allows


def test_a_few_new_rows_go_to_the_one_smallest_shard():
    parts = assign_new_ids([100, 98, 103, 99], np.array([7, 8]))
    assert [p.tolist() for p in parts] == [[], [7, 8], [], []]
    parts = assign_new_ids([100, 100, 100], np.arange(9))  # a tie: the first shard
    assert [len(p) for p in parts] == [9, 0, 0]


@pytest.mark.parametrize("metric", METRICS)
def test_merging_exact_answers_of_shards_is_the_exact_answer(metric, clustered_vectors):
    data = prepare(clustered_vectors(n=900, dim=16, clusters=12, seed=3), metric)
    queries = prepare(clustered_vectors(n=40, dim=16, clusters=12, seed=4), metric)
    ids = np.arange(900) * 5 + 3
    truth_labels, truth_dist = exact_search(data, queries, k=10, metric=metric, ids=ids)
    pieces = np.array_split(np.random.default_rng(0).permutation(900), 7)
    answers = [exact_search(data[p], queries, k=10, metric=metric, ids=ids[p]) for p in pieces]
    labels, distances = merge_top_k([a[0] for a in answers], [a[1] for a in answers], k=10)
    np.testing.assert_allclose(distances, truth_dist, rtol=1e-5, atol=1e-6)
    assert recall_at_k(labels, truth_labels) == 1.0


# --- recall against brute force and against one index ---------------------------------------------


@pytest.mark.parametrize("metric", METRICS)
def test_sharded_recall_at_10_matches_one_index(metric, vector_store, clustered_vectors):
    store, vectors = vector_store(metric)
    queries = prepare(clustered_vectors(n=200, dim=32, clusters=30, seed=2) + 0.1, metric)  # around the store's centres
    truth, _ = exact_search(vectors, queries, k=10, metric=metric)
    recalls = {}
    for shards in (1, 3, 8):
        result = build_index(store, metric=metric, shards=shards)
        assert (result.count, result.shards, result.rebuilt) == (3000, shards, True)
        index = load_current_index(store)
        assert isinstance(index, ShardedIndex if shards > 1 else HnswIndex)
        assert (index.count, index.metric) == (3000, metric)
        labels, distances = index.query(queries, k=10)  # default ef (64)
        recalls[shards] = recall_at_k(labels, truth)
        assert (np.diff(distances, axis=1) >= -1e-6).all()
        own = np.array([[pairwise_distances(q[None], vectors[row], metric)[0] for q, row in zip(queries, labels)]]).reshape(labels.shape)
        np.testing.assert_allclose(distances, own, rtol=1e-3, atol=1e-4)  # each merged distance is that row's own
        assert sorted(sum(shard_ids(store), [])) == list(range(3000))  # each row in exactly one shard
    assert min(recalls.values()) >= 0.95, recalls
    assert recalls[3] >= recalls[1] - 0.01 and recalls[8] >= recalls[1] - 0.01, recalls


def test_filter_and_k_beyond_a_shard(vector_store):
    store, vectors = vector_store("cosine", n=400)
    build_index(store, shards=8)  # 50 rows a shard
    index = load_current_index(store)
    labels, _ = index.query(vectors[:3], k=120)
    assert labels.shape == (3, 120) and all(len(set(row)) == 120 for row in labels.tolist())
    even, _ = index.query(vectors[:3], k=10, filter=lambda label: label % 2 == 0)
    assert (even % 2 == 0).all() and labels.dtype == np.int64


# --- updates touch only the shards they must --------------------------------------------------------


def test_updates_touch_only_the_shards_they_must(vector_store, write_rows, clustered_vectors):
    store, vectors = vector_store("cosine", n=1000)
    build_index(store, shards=4)
    before_ids, before_gen = shard_ids(store), shard_generations(store)
    assert [len(ids) for ids in before_ids] == [250, 250, 250, 250]

    # 5 new rows: one shard (the smallest; on a tie the first) gets them all, the others keep their files
    extra = prepare(clustered_vectors(n=5, dim=32, clusters=30, seed=11), "cosine")
    write_rows(store, range(1000, 1005), extra)
    result = build_index(store)  # no --shards: the index keeps its 4
    assert (result.rebuilt, result.shards, result.added, result.touched) == (False, 4, 5, [0])
    after_ids, after_gen = shard_ids(store), shard_generations(store)
    assert after_ids[0] == before_ids[0] + list(range(1000, 1005))
    assert after_ids[1:] == before_ids[1:] and after_gen[1:] == before_gen[1:] and after_gen[0] != before_gen[0]

    # deleting rows of shard 2 touches shard 2 only; the next new rows go to it (now the smallest)
    store.delete_ids(before_ids[2][:30])
    result = build_index(store)
    assert (result.deleted, result.touched) == (30, [2])
    gens = shard_generations(store)
    assert shard_ids(store)[2] == before_ids[2][30:] and [gens[i] for i in (0, 1, 3)] == [after_gen[i] for i in (0, 1, 3)]
    write_rows(store, range(1005, 1045), prepare(clustered_vectors(n=40, dim=32, clusters=30, seed=12), "cosine"))
    result = build_index(store)
    assert result.touched == [2] and shard_ids(store)[2] == before_ids[2][30:] + list(range(1005, 1045))
    # a row's shard never changes: every row still sits where it was first put
    for old, new in zip(before_ids, shard_ids(store)):
        assert set(old) & set(sum(shard_ids(store), [])) <= set(new)

    # an update of many rows fills the smallest shards up to the cap: none grows past 5% over the balanced level
    sizes = [len(ids) for ids in shard_ids(store)]
    write_rows(store, range(2000, 2400), prepare(clustered_vectors(n=400, dim=32, clusters=30, seed=13), "cosine"))
    result = build_index(store)
    after = [len(ids) for ids in shard_ids(store)]
    assert max(after) == shard_cap(sizes, 400) and sum(after) == store.count() and result.added == 400

    index = load_current_index(store)
    assert index_status(store).usable and index.count == store.count()
    labels, _ = index.query(vectors[:50], k=5)
    assert not set(labels.ravel().tolist()) & set(before_ids[2][:30])  # deleted rows are never returned


def test_another_shard_count_rebuilds_and_the_count_is_kept_otherwise(vector_store):
    store, _ = vector_store("cosine", n=600)
    assert build_index(store, shards=3).shards == 3
    assert build_index(store).shards == 3 and not build_index(store).rebuilt
    result = build_index(store, shards=2)
    assert (result.shards, result.rebuilt) == (2, True) and len(shard_ids(store)) == 2
    result = build_index(store, shards=1)
    assert (result.shards, result.rebuilt) == (1, True)
    side = json.loads((store.index_dir / "index.json").read_text())
    assert "shards" not in side and side["format_version"] == 1  # one shard is today's layout exactly
    assert sorted(p.name.split("-")[0] for p in store.index_dir.iterdir()) == ["hnsw", "ids", "index.json"]
    with pytest.raises(InputError, match="--shards must be at least 1"):
        build_index(store, shards=0)


# --- the layout: plain hnswlib files, one sidecar ---------------------------------------------------


def test_each_shard_is_a_plain_hnswlib_file(vector_store):
    store, vectors = vector_store("l2", n=900)
    build_index(store, shards=3)
    side = json.loads((store.index_dir / "index.json").read_text())
    assert side["format_version"] == 2 and "generation" not in side and len(side["shards"]) == 3
    assert side["count"] == 900 == sum(s["count"] for s in side["shards"])
    files = sorted(p.name for p in store.index_dir.iterdir())
    assert files == sorted(["index.json"] + [f"{kind}-{s['generation']}.{ext}" for s in side["shards"] for kind, ext in (("hnsw", "bin"), ("ids", "npy"))])
    for entry, ids in zip(side["shards"], shard_ids(store)):
        plain = hnswlib.Index(space=side["space"], dim=side["dim"])  # no vecmetric involved
        plain.load_index(str(store.index_dir / f"hnsw-{entry['generation']}.bin"))
        assert sorted(plain.get_ids_list()) == ids
        got, _ = plain.knn_query(vectors[ids[:5]], k=1)
        assert got[:, 0].tolist() == ids[:5]


def test_status_verify_and_search_see_every_shard(vector_store):
    store, vectors = vector_store("cosine", n=600)
    build_index(store, shards=3)

    def index_findings(repair=False):  # the rows were written without an embed: only the index matters here
        return [f for f in verify_store(store.path, repair=repair, check_files=False).findings if f.kind == "index"]

    assert index_findings() == []
    side = json.loads((store.index_dir / "index.json").read_text())
    victim = store.index_dir / f"hnsw-{side['shards'][1]['generation']}.bin"
    victim.write_bytes(victim.read_bytes()[:100])  # shard 1 damaged inside
    found = index_findings()
    assert len(found) == 1 and "damaged" in found[0].detail
    assert index_findings(repair=True)[0].repaired
    assert index_findings() == [] and len(shard_ids(store)) == 3

    victim = store.index_dir / f"ids-{shard_generations(store)[2]}.npy"
    victim.unlink()  # a shard's file missing: damaged, and the next search rebuilds
    state = index_status(store)
    assert state.status is IndexStatus.DAMAGED and victim.name in state.reason
    index = load_current_index(store)
    assert index.count == 600 and index_status(store).usable
    labels, _ = index.query(vectors[[5, 300, 599]], k=1)
    assert labels[:, 0].tolist() == [5, 300, 599]


def test_the_command_line_over_a_sharded_index(image_folder, tmp_path, tiny_model):
    from typer.testing import CliRunner

    from vecmetric.cli._app import app

    runner, store = CliRunner(), tmp_path / "store"

    def run(*args):
        result = runner.invoke(app, [str(a) for a in args])
        assert result.exit_code == 0, result.output
        return result.stdout

    run("embed", image_folder, "--store", store, "--model", tiny_model, "--workers", "0", "--json")
    built = json.loads(run("index", "--store", store, "--shards", "3", "--json"))
    assert (built["count"], built["shards"], built["touched"], built["rebuilt"]) == (12, 3, [0, 1, 2], True)
    assert "index built: 12 vectors in 3 shards (3 written)" in run("index", "--store", store, "--rebuild")
    for query in sorted(image_folder.rglob("*.png"))[::5]:
        hits = [json.loads(line) for line in run("search", query, "--store", store, "--k", "3", "--json", "--keep-query-images").splitlines()]
        assert hits[0]["path"] == str(query) and len(hits) == 3
    info = json.loads(run("info", "--store", store, "--json"))
    assert info["index"]["shards"] == 3 and info["index"]["status"] == "current"
