"""Fixtures for the reliability tests: a fork server running the real CLI, a tiny model, images, a reference store.

Helpers that the tests import live in ``_reliability.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from _reliability import (
    NOBODY,
    TALLY,
    TINY_MODEL,
    ForkServer,
    Gallery,
    Unprivileged,
    closed_to_others,
    embed_in_process,
    make_gallery,
    package_folders,
)


def pytest_terminal_summary(terminalreporter):
    if TALLY:
        terminalreporter.section("reliability tally")
        for key in sorted(TALLY):
            terminalreporter.write_line(f"{key}: {TALLY[key]}")


@pytest.fixture(scope="session")
def cli(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fork-server")
    folder.chmod(0o777)  # children that drop to an unprivileged user write their output here
    server = ForkServer(folder)
    yield server
    server.close()


@pytest.fixture
def run_python_m(tmp_path):
    """``python -m vecmetric ARGS`` in a real subprocess (for what a forked child cannot show)."""

    def run(*args, timeout: float = 180, env: dict | None = None, **kwargs):
        full_env = dict(os.environ, OMP_NUM_THREADS="1")
        full_env.update(env or {})
        return subprocess.run(
            [sys.executable, "-m", "vecmetric", *[str(a) for a in args]],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
            **kwargs,
        )

    return run

@pytest.fixture(scope="session")
def model32(tmp_path_factory) -> str:
    """A checkpoint folder of the tiny model at 32 px (readable by everyone): cheap per image."""
    from vecmetric.encoders import PreprocessConfig, load_encoder, save_checkpoint

    encoder = load_encoder(TINY_MODEL, device="cpu")
    base = tmp_path_factory.mktemp("model32")
    folder = base / "test_efficientnet-32px"
    preprocess = PreprocessConfig(image_size=32, mean=encoder.preprocess.mean, std=encoder.preprocess.std, crop_pct=1.0)
    save_checkpoint(folder, encoder.model, encoder.architecture, preprocess)
    for p in (base, folder, *folder.iterdir()):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return str(folder)

@pytest.fixture(scope="session")
def gallery(tmp_path_factory, model32) -> Gallery:
    """8 small PNGs (2 classes) and the store of one uninterrupted embed; treat both as read-only."""
    base = tmp_path_factory.mktemp("gallery")
    files = make_gallery(base / "images", classes=2, per_class=4)
    embed_in_process(base / "images", base / "reference", model32)
    return Gallery(base / "images", base / "reference", len(files))


@pytest.fixture(scope="session")
def big_gallery(tmp_path_factory, model32) -> Gallery:
    """40 small PNGs: long enough a run to kill at random moments."""
    base = tmp_path_factory.mktemp("big-gallery")
    files = make_gallery(base / "images", classes=4, per_class=10, seed=7)
    embed_in_process(base / "images", base / "reference", model32)
    return Gallery(base / "images", base / "reference", len(files))

@pytest.fixture
def nobody(tmp_path):
    """An unprivileged user for permission tests (root ignores chmod); skips when there is none."""
    if os.geteuid() != 0:
        yield Unprivileged(None, {}, [])  # already unprivileged: chmod works
        return
    try:
        import pwd

        pwd.getpwuid(NOBODY)
    except KeyError:
        pytest.skip("running as root and there is no 'nobody' user to drop to")
    blocked = closed_to_others(*package_folders())
    if blocked is not None:
        pytest.skip(
            f"the unprivileged user cannot enter {blocked} (mode {blocked.stat().st_mode & 0o777:o}) on the way to this "
            "checkout's Python packages; run the suite from a clone in a folder other users may enter to include this test"
        )
    user = Unprivileged(NOBODY, {}, [])
    user.reach(tmp_path)
    home = tmp_path / "nobody-home"
    home.mkdir()
    os.chown(home, NOBODY, NOBODY)
    cache = home / ".cache"
    user.env = {"HOME": str(home), "XDG_CACHE_HOME": str(cache), "VECMETRIC_CACHE_DIR": str(cache / "vecmetric"), "TORCH_HOME": str(home / "torch")}
    yield user
    for path, mode in reversed(user.changed):
        path.chmod(mode)
