"""Fixtures for training and evaluation tests: small generated class folders and a tiny model."""

from __future__ import annotations

import shutil

import pytest
from _helpers import RecordingReporter, fast_options, make_class_folders


@pytest.fixture
def class_folders(tmp_path):
    return make_class_folders(tmp_path / "data")


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """One finished 2-epoch run shared by read-only tests: ``(data_dir, run_dir, result)``."""
    from vecmetric.train import train

    base = tmp_path_factory.mktemp("trained")
    data = make_class_folders(base / "data")
    result = train(data, base / "run", fast_options(epochs=2, embedding_dim=16), RecordingReporter())
    return data, base / "run", result


@pytest.fixture
def copy_run(tmp_path, trained_run):
    """A writable copy of the shared run folder."""
    data, run, _ = trained_run
    target = tmp_path / "run"
    shutil.copytree(run, target)
    return data, target
