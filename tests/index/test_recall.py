"""HNSW against brute force: recall, incremental updates, staleness, damaged or foreign indexes."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from vecmetric.errors import IndexStateError, InputError
from vecmetric.index import (
    HnswIndex,
    IndexParams,
    IndexStatus,
    build_index,
    exact_search,
    index_status,
    load_current_index,
    pairwise_distances,
    recall_at_k,
)
from vecmetric.store import create_store, open_store

METRICS = ["cosine", "ip", "l2"]


def prepare(vectors, metric):
    """ip search is meant for normalised vectors (as cosine models make); keep ip meaningful."""
    if metric == "ip":
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


# --- exact search is itself right ---------------------------------------------------------------


@pytest.mark.parametrize("metric", METRICS)
def test_exact_search_against_numpy(metric):
    rng = np.random.default_rng(5)
    data = rng.normal(size=(50, 8)).astype(np.float32)
    queries = rng.normal(size=(4, 8)).astype(np.float32)
    ids = np.arange(1000, 1050)
    # Distances worked out independently, the way hnswlib defines them.
    if metric == "cosine":
        dn = data / np.linalg.norm(data, axis=1, keepdims=True)
        qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        truth = 1 - qn @ dn.T
    elif metric == "ip":
        truth = 1 - queries @ data.T
    else:
        truth = np.array([[np.sum((q - d) ** 2) for d in data] for q in queries])
    order = np.argsort(truth, axis=1, kind="stable")[:, :7]

    labels, distances = exact_search(data, queries, k=7, metric=metric, ids=ids)
    assert labels.shape == distances.shape == (4, 7)
    np.testing.assert_array_equal(labels, ids[order])
    np.testing.assert_allclose(distances, np.take_along_axis(truth, order, axis=1), rtol=1e-4, atol=1e-4)
    assert (np.diff(distances, axis=1) >= 0).all()
    # Scanning in small chunks gives the same answer.
    chunked, _ = exact_search(data, queries, k=7, metric=metric, ids=ids, chunk=6)
    np.testing.assert_array_equal(chunked, labels)
    np.testing.assert_allclose(pairwise_distances(queries, data, metric), truth, rtol=1e-4, atol=1e-4)


def test_exact_search_k_larger_than_data():
    data = np.eye(3, dtype=np.float32)
    labels, distances = exact_search(data, data[:1], k=10, metric="l2")
    assert labels.tolist() == [[0, 1, 2]]
    assert distances[0, 0] == 0.0 and distances[0, 1] == pytest.approx(2.0)


def test_recall_at_k():
    assert recall_at_k([[1, 2, 3]], [[1, 2, 3]]) == 1.0
    assert recall_at_k([[1, 2, 9], [4, 5, 6]], [[1, 2, 3], [7, 8, 6]]) == pytest.approx(3 / 6)
    assert recall_at_k([], []) == 1.0


# --- recall -------------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", METRICS)
def test_hnsw_recall_at_10(metric, clustered_vectors, tmp_path):
    data = prepare(clustered_vectors(n=3000, dim=32, clusters=30, seed=1), metric)
    queries = prepare(clustered_vectors(n=200, dim=32, clusters=30, seed=1)[:200] + 0.1, metric)
    ids = np.arange(3000, dtype=np.int64) * 3 + 11  # labels need not be 0..N-1

    index = HnswIndex.create(tmp_path / "idx", 32, IndexParams(metric=metric, m=16, ef_construction=200, ef=100), capacity=1000)
    index.add(data[:1500], ids[:1500])
    index.add(data[1500:], ids[1500:])  # grows past the initial capacity
    assert index.count == 3000
    found, dist = index.query(queries, k=10)
    truth, truth_dist = exact_search(data, queries, k=10, metric=metric, ids=ids)
    recall = recall_at_k(found, truth)
    assert recall >= 0.95, f"{metric}: recall@10 {recall:.3f}"
    # Distances mean the same as exact ones.
    np.testing.assert_allclose(dist[:, 0], truth_dist[:, 0], rtol=1e-3, atol=1e-3)

    # Saved and loaded, it answers the same.
    index.save(note="x")
    again = HnswIndex.load(tmp_path / "idx")
    assert again.count == 3000 and again.metric == metric and again.sidecar["dim"] == 32
    np.testing.assert_array_equal(again.query(queries, k=10)[0], found)


@pytest.fixture
def vector_store(tmp_path, fake_encoder, write_rows, clustered_vectors):
    """A store of 3000 clustered 32-d vectors written directly (no images), ids 0..2999."""

    def make(metric="cosine", n=3000, name="store"):
        store = create_store(tmp_path / name, fake_encoder(32, metric=metric))
        vectors = prepare(clustered_vectors(n=n, dim=32, clusters=30, seed=2), metric)
        write_rows(store, range(n // 2), vectors[: n // 2])
        write_rows(store, range(n // 2, n), vectors[n // 2 :])
        return store, vectors

    return make


@pytest.mark.parametrize("metric", METRICS)
def test_build_index_on_a_store(metric, vector_store):
    store, vectors = vector_store(metric)
    assert not index_status(store).usable
    result = build_index(store, metric=metric, m=16, ef_construction=200, ef=100)
    assert (result.metric, result.count, result.added, result.deleted, result.rebuilt) == (metric, 3000, 3000, 0, True)
    assert index_status(store).usable

    sidecar = json.loads((store.index_dir / "index.json").read_text())
    assert sidecar["metric"] == metric and sidecar["dim"] == 32 and sidecar["M"] == 16
    assert sidecar["ef_construction"] == 200 and sidecar["ef"] == 100 and sidecar["count"] == 3000
    assert sidecar["model_fingerprint"] == store.model["fingerprint"]
    assert sidecar["store_snapshot"] == store.snapshot()

    queries = vectors[::15] + np.float32(0.05)
    index = load_current_index(store)
    found, _ = index.query(queries, k=10)
    truth, _ = exact_search(vectors, queries, k=10, metric=metric)
    assert recall_at_k(found, truth) >= 0.95


def test_incremental_update_adds_and_marks_deleted(vector_store, write_rows, clustered_vectors):
    store, vectors = vector_store("cosine", n=2000)
    build_index(store)
    extra = clustered_vectors(n=300, dim=32, clusters=30, seed=9)
    write_rows(store, range(2000, 2300), extra)
    doomed = list(range(0, 2000, 7))  # 286 rows, spread over both parts
    assert store.delete_ids(doomed) == len(doomed)
    assert not index_status(store).usable

    result = build_index(store)
    assert not result.rebuilt
    assert result.added == 300 and result.deleted == len(doomed)
    assert result.count == 2300 - len(doomed) == store.count()
    assert index_status(store).usable
    sidecar = json.loads((store.index_dir / "index.json").read_text())
    assert sidecar["deleted"] == len(doomed) and sidecar["count"] == result.count

    index = load_current_index(store)
    live = np.setdiff1d(np.arange(2300), doomed)
    np.testing.assert_array_equal(index.ids, live)
    # Query right on deleted vectors: they must never come back.
    queries = vectors[doomed[:50]]
    found, _ = index.query(queries, k=20)
    assert not set(found.ravel().tolist()) & set(doomed)
    all_vectors = np.concatenate([vectors, extra])
    truth, _ = exact_search(all_vectors[live], queries, k=20, ids=live)
    assert recall_at_k(found, truth) >= 0.95
    # New rows are found: each is its own nearest neighbour.
    found_new, dist_new = index.query(extra[:20], k=1)
    assert found_new[:, 0].tolist() == list(range(2000, 2020))
    assert np.abs(dist_new).max() < 1e-4

    # Nothing changed: nothing to do.
    again = build_index(store)
    assert (again.added, again.deleted, again.rebuilt) == (0, 0, False)


def test_changed_parameters_rebuild(vector_store):
    store, _ = vector_store("cosine", n=500)
    build_index(store, m=8)
    assert build_index(store, m=8).rebuilt is False
    result = build_index(store, metric="l2")
    assert result.rebuilt and result.metric == "l2"
    assert build_index(store).metric == "l2"  # the index's metric is kept by default
    rebuilt = build_index(store, rebuild=True)
    assert rebuilt.rebuilt and rebuilt.metric == "l2"  # --rebuild keeps the index's parameters
    assert json.loads((store.index_dir / "index.json").read_text())["M"] == 8


def test_index_goes_stale_after_embed(image_folder, tmp_path, tiny_model):
    from vecmetric.store import embed_directory

    store_path = tmp_path / "store"
    embed_directory(image_folder, store_path, model=tiny_model, device="cpu", workers=0)
    store = open_store(store_path)
    build_index(store)
    assert index_status(store).usable
    (image_folder / "class_00" / "img_000.png").unlink()
    embed_directory(image_folder, store_path, model=tiny_model, device="cpu", workers=0)
    assert not index_status(store).usable
    index = load_current_index(store)  # brought up to date, never silently stale
    assert index_status(store).usable and index.count == 11


def test_damaged_sidecar_is_refused_then_rebuilt(vector_store):
    store, _ = vector_store("cosine", n=400)
    build_index(store)
    sidecar = store.index_dir / "index.json"
    sidecar.write_text("{ not json")
    with pytest.raises(IndexStateError, match="damaged"):
        HnswIndex.load(store.index_dir)
    assert not index_status(store).usable
    index = load_current_index(store)
    assert index.count == 400 and index_status(store).usable


def test_missing_or_mismatched_index_files(vector_store):
    store, _ = vector_store("cosine", n=400)
    build_index(store)
    side = json.loads((store.index_dir / "index.json").read_text())
    ids_file = store.index_dir / f"ids-{side['generation']}.npy"
    ids_file.unlink()
    with pytest.raises(IndexStateError, match="damaged"):
        HnswIndex.load(store.index_dir)
    assert build_index(store).rebuilt  # an unreadable index is rebuilt, not trusted

    side = json.loads((store.index_dir / "index.json").read_text())
    side["elements"] = 9999
    (store.index_dir / "index.json").write_text(json.dumps(side))
    with pytest.raises(IndexStateError, match="does not match its sidecar"):
        HnswIndex.load(store.index_dir)
    assert build_index(store).rebuilt

    with pytest.raises(IndexStateError, match="no index"):
        HnswIndex.load(store.path / "nowhere")


def test_index_copied_from_another_store(vector_store):
    a, _ = vector_store("cosine", n=300, name="a")
    b, _ = vector_store("cosine", n=300, name="b")
    b.write_manifest(model={**b.model, "fingerprint": "other-0123456789abcdef", "spec": "test:other"})
    build_index(a)
    shutil.copytree(a.index_dir, b.index_dir)
    # Another store's index: foreign (not merely stale), so the update rebuilds it.
    assert index_status(b).status is IndexStatus.FOREIGN
    assert build_index(b).rebuilt

    # Even with a forged snapshot, the model fingerprint gives it away, and search's loader rebuilds it.
    shutil.rmtree(b.index_dir)
    shutil.copytree(a.index_dir, b.index_dir)
    side = json.loads((b.index_dir / "index.json").read_text())
    side["store_snapshot"] = b.snapshot()
    (b.index_dir / "index.json").write_text(json.dumps(side))
    state = index_status(b)
    assert state.status is IndexStatus.FOREIGN and "another store" in state.reason
    index = load_current_index(b)
    assert index.sidecar["model_fingerprint"] == b.model["fingerprint"] and index_status(b).usable


def test_empty_store_index(tmp_path, fake_encoder):
    store = create_store(tmp_path / "empty", fake_encoder(8))
    result = build_index(store)
    assert result.count == 0
    labels, distances = load_current_index(store).query(np.ones((2, 8), dtype=np.float32), k=5)
    assert labels.shape == (2, 0)


def test_unknown_metric(vector_store):
    store, _ = vector_store("cosine", n=50)
    with pytest.raises(InputError, match="unknown --metric .hamming."):
        build_index(store, metric="hamming")
