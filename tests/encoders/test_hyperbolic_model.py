"""A hyperbolic run (``--geometry hyperbolic``): the Poincare-ball head in its checkpoint, eval with the exact distance,
the store manifest's geometry, and its ONNX export with the head inside the graph."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
from _helpers import RecordingReporter, fast_options, make_class_folders

VAL = ("precision_at_1", "r_precision", "mean_average_precision_at_r")
CURVATURE = 0.5


@pytest.fixture(scope="module")
def hyperbolic_run(tmp_path_factory):
    from vecmetric.train import train

    base = tmp_path_factory.mktemp("hyperbolic")
    data = make_class_folders(base / "data")
    options = fast_options(epochs=2, embedding_dim=16, loss="supcon", geometry="hyperbolic", curvature=CURVATURE)
    result = train(data, base / "run", options, RecordingReporter())
    val = base / "val"
    for name in ("class_04", "class_05"):
        shutil.copytree(data / name, val / name)
    return data, val, base / "run", result


def test_the_checkpoint_records_the_ball_and_its_vectors_lie_inside(hyperbolic_run):
    from vecmetric.encoders import load_encoder

    data, _, run, _ = hyperbolic_run
    config = json.loads((run / "config.json").read_text())
    assert config["metric"] == "poincare"
    assert {k: config["architecture"][k] for k in ("geometry", "curvature", "clip_r")} == {"geometry": "hyperbolic", "curvature": CURVATURE, "clip_r": 2.3}
    assert config["training"]["args"]["geometry"] == "hyperbolic" and config["training"]["args"]["loss"] == "supcon"
    encoder = load_encoder(str(run), device="cpu")
    assert encoder.metric == "poincare" and encoder.geometry.curvature == CURVATURE
    assert encoder.describe()["geometry"] == {"name": "hyperbolic", "curvature": CURVATURE, "clip_r": 2.3}
    vectors = encoder.embed_paths(sorted(str(p) for p in data.rglob("*.png"))[:12])
    norms = np.linalg.norm(vectors, axis=1) * math.sqrt(CURVATURE)  # 1 is the boundary
    assert (norms < math.tanh(math.sqrt(CURVATURE) * 2.3) + 1e-5).all() and norms.min() > 0


def test_euclidean_descriptions_are_unchanged_so_fingerprints_stay():
    from vecmetric.encoders import ArchitectureConfig

    assert ArchitectureConfig("timm", "x", 8, True).to_dict() == {"source": "timm", "name": "x", "embedding_dim": 8, "normalize": True}


def test_eval_uses_the_exact_poincare_distance_and_reproduces_validation(hyperbolic_run):
    from vecmetric.evaluate import evaluate

    _, val, run, result = hyperbolic_run
    scores = evaluate(val, str(run), device="cpu", workers=0)
    for key in VAL:
        assert scores[key] == pytest.approx(result.best[key], abs=1e-9), key


def test_the_store_manifest_records_the_geometry_and_store_eval_matches(hyperbolic_run, tmp_path):
    from vecmetric.distances import geometry_of
    from vecmetric.evaluate import evaluate
    from vecmetric.store import embed_directory, open_store

    _, val, run, _ = hyperbolic_run
    embed_directory(val, tmp_path / "store", model=str(run), device="cpu", workers=0)
    store = open_store(tmp_path / "store")
    assert store.metric == "poincare"
    assert store.model["geometry"] == {"name": "hyperbolic", "curvature": CURVATURE, "clip_r": 2.3}
    assert geometry_of(store.model).curvature == CURVATURE
    # The store's index is built in the poincare metric's candidate space, l2; its candidates re-ranked exactly are the
    # store's exact Poincare neighbours.
    from vecmetric.distances import poincare_distances, rerank_poincare
    from vecmetric.index import build_index
    from vecmetric.index._hnsw import HnswIndex
    from vecmetric.store import embeddings_to_numpy

    build_index(store)
    index = HnswIndex.load(store.index_dir)
    assert (index.sidecar["metric"], index.sidecar["space"]) == ("poincare", "l2")
    table = store.read_table(columns=["id", "embedding"])
    ids, vectors = np.asarray(table.column("id").to_pylist()), embeddings_to_numpy(table.column("embedding"))
    candidates, _ = index.query(vectors, len(ids))
    by_id = {i: v for i, v in zip(ids, vectors)}
    found, _ = rerank_poincare(vectors, candidates, np.stack([[by_id[i] for i in row] for row in candidates]), 5, CURVATURE)
    exact = ids[np.argsort(poincare_distances(vectors, vectors, CURVATURE), axis=1, kind="stable")[:, :5]]
    assert (found == exact).mean() >= 0.95
    from_store = evaluate(store=tmp_path / "store")
    from_folder = evaluate(val, str(run), device="cpu", workers=0)
    for key in VAL:
        assert from_store[key] == pytest.approx(from_folder[key], abs=1e-6), key


def test_onnx_export_keeps_the_poincare_head_in_the_graph(hyperbolic_run, exported, mixed_images):
    from vecmetric.images import load_image_array
    from vecmetric.runtime import load_export

    _, _, run, _ = hyperbolic_run
    encoder, info = exported(str(run))
    assert info.ok, info.reason
    assert info.towers["image"]["check"]["passed"] and info.towers["image"]["check"]["max_relative_error"] <= 1e-3
    onnx = load_export(info.folder, encoder.fingerprint)
    assert onnx.describe() == encoder.describe()
    batch = np.stack([load_image_array(p, encoder.preprocess) for p in mixed_images])
    expected, got = encoder.embed_tensors(batch), onnx.embed_tensors(batch)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-5)
    from vecmetric.distances import poincare_distances

    d_torch, d_onnx = poincare_distances(expected, expected, CURVATURE), poincare_distances(got, got, CURVATURE)
    assert (np.argsort(d_onnx, axis=1)[:, :3] == np.argsort(d_torch, axis=1)[:, :3]).mean() >= 0.9
