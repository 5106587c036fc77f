"""A hyperbolic store is refused by the server, with one error line that points to ``vecmetric search``."""

from __future__ import annotations

import pytest
from _helpers import one_error_line

from vecmetric.errors import StoreError


@pytest.fixture
def ball_store(own_store):
    """``own_store`` whose manifest says its model embeds into the Poincare ball."""
    from vecmetric.store import open_store

    store = open_store(own_store)
    store.write_manifest(model={**store.model, "metric": "poincare", "geometry": {"name": "hyperbolic", "curvature": 1.0, "clip_r": 2.3}})
    return own_store


def test_create_app_refuses_a_hyperbolic_store(ball_store):
    from vecmetric.serve import create_app

    with pytest.raises(StoreError, match="serve does not support hyperbolic stores yet") as caught:
        create_app(ball_store)
    assert "Poincare" in caught.value.hint


def test_vecmetric_serve_refuses_a_hyperbolic_store_in_one_line(run_vecmetric, ball_store):
    done = run_vecmetric("serve", "--store", str(ball_store), "--port", "0")
    one_error_line(done, 5, "serve does not support hyperbolic stores yet", "use vecmetric search")
