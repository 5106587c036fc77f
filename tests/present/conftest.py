"""Fixtures for the presentation tests: solid-colour images and search hits that point at them."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from _present_helpers import COLOURS


@pytest.fixture
def solid_images(tmp_path):
    """``solid_images(n, size=(200, 200))`` -> paths of PNGs, each one colour from ``COLOURS``."""
    from PIL import Image

    def make(n: int = 4, size=(200, 200)) -> list[str]:
        folder = tmp_path / "solid"
        folder.mkdir(exist_ok=True)
        paths = []
        for i in range(n):
            path = folder / f"colour_{i}.png"
            Image.new("RGB", size, COLOURS[i]).save(path)
            paths.append(str(path))
        return paths

    return make


@pytest.fixture
def make_hits():
    """``make_hits(query, paths)`` -> SearchHit-like results, ranked in order, distance 0.1 * rank."""

    def make(query: str, paths: list[str]):
        return [
            SimpleNamespace(query=query, rank=r, path=p, distance=0.1 * r, label=Path(p).parent.name, id=100 + r)
            for r, p in enumerate(paths, start=1)
        ]

    return make
