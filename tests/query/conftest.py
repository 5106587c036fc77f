"""Stores of known vectors (no model, no images) for the query tests: every expected answer is numpy's."""

from __future__ import annotations

import pytest


@pytest.fixture
def vector_store(tmp_path, fake_encoder):
    """``vector_store(vectors, metric='cosine', labels=None, paths=None, index=True, parts=2)`` -> the store folder.

    Rows get ids 0..N-1, labels ``c{i % 5}`` and paths ``/data/c{i % 5}/{i:05d}.png`` unless given, and are
    written over ``parts`` Parquet files (ids and paths in order, as embed writes them). Its model is a fake
    one that cannot be loaded, so any attempt to embed fails loudly.
    """
    counter = [0]

    def make(vectors, metric="cosine", labels=None, paths=None, index=True, parts=2):
        import numpy as np
        import pyarrow as pa

        from vecmetric.index import build_index
        from vecmetric.store import create_store, numpy_to_embeddings, open_store, store_schema

        vectors = np.asarray(vectors, dtype=np.float32)
        n, dim = vectors.shape
        labels = [f"c{i % 5}" for i in range(n)] if labels is None else list(labels)
        paths = [f"/data/{labels[i]}/{i:05d}.png" for i in range(n)] if paths is None else list(paths)
        counter[0] += 1
        folder = tmp_path / f"vectors-{counter[0]}"
        store = create_store(folder, fake_encoder(dim, metric))
        bounds = np.linspace(0, n, parts + 1).astype(int)
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            ids = list(range(lo, hi))
            store.append(
                pa.table(
                    {
                        "id": pa.array(ids, pa.int64()),
                        "path": [paths[i] for i in ids],
                        "size": pa.array([1] * len(ids), pa.int64()),
                        "mtime_ns": pa.array([0] * len(ids), pa.int64()),
                        "content_hash": [f"h{i}" for i in ids],
                        "label": pa.array([labels[i] for i in ids], pa.string()),
                        "model": [store.model["fingerprint"]] * len(ids),
                        "embedding": numpy_to_embeddings(vectors[lo:hi]),
                    },
                    schema=store_schema(dim),
                )
            )
        store.write_manifest(next_id=n, counts={"rows": n})
        if index:
            build_index(open_store(folder), metric=metric)
        return folder

    return make


@pytest.fixture
def no_model(monkeypatch):
    """Make every way of loading a model (ONNX export or torch) fail the test."""
    import vecmetric.encoders
    import vecmetric.runtime

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded, but nothing needed embedding")

    monkeypatch.setattr(vecmetric.runtime, "open_query_encoder", refuse)
    monkeypatch.setattr(vecmetric.runtime, "load_export", refuse)
    monkeypatch.setattr(vecmetric.encoders, "load_encoder", refuse)
