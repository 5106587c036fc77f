"""Stores to serve: bundled Omniglot characters embedded with the tiny model (its ONNX export in ``_model/``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from serve_helpers import build_store, wait_for


@pytest.fixture(scope="module")
def served_store(tmp_path_factory) -> Path:
    """One store per test module, never changed by the tests (4 characters x 5 drawings)."""
    return build_store(tmp_path_factory.mktemp("served"))


@pytest.fixture
def own_store(tmp_path) -> Path:
    """A store of the test's own, to change (3 characters x 4 drawings)."""
    return build_store(tmp_path / "own", classes=3, per_class=4)


@pytest.fixture
def client_for():
    """``client_for(store, **create_app_kwargs)``: a started TestClient (lifespan run, index loaded), closed after the test."""
    from fastapi.testclient import TestClient

    from vecmetric.serve import create_app

    opened = []

    def make(store, base_url: str = "http://127.0.0.1:8000", **kwargs):
        kwargs.setdefault("thumbnails_on_disk", False)
        client = TestClient(create_app(store, **kwargs), base_url=base_url, raise_server_exceptions=False)
        client.__enter__()
        opened.append(client)
        if kwargs.get("warm_up", True):
            wait_for(lambda: client.get("/healthz").status_code == 200, what="/healthz")
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)
