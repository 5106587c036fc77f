"""``vecmetric embed --engine ray`` from the command line: a Ray instance of its own, on loopback only,
quiet, gone when the command ends; and the one-line errors when Ray is missing or an option does not fit."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time

import psutil
import pytest
from _helpers import assert_loopback_only, descendants, one_error_line, sockets_of

from vecmetric.cli._app import app

RAY_SETTINGS = ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_USAGE_STATS_ENABLED", "RAY_AUTH_MODE", "RAY_ADDRESS")


@pytest.mark.slow
def test_embed_with_its_own_ray_instance_stays_on_loopback_and_quiet(tmp_path_factory, tmp_path, make_images, small_model):
    if importlib.util.find_spec("ray") is None:
        pytest.skip("ray is not installed (pip install 'vecmetric[ray]')")
    images = tmp_path / "images"
    make_images(images, classes=3, per_class=10)
    (images / "class_00" / "broken.png").write_bytes(b"")
    store = tmp_path / "store"
    env = {k: v for k, v in os.environ.items() if k not in RAY_SETTINGS}  # vecmetric must set them itself
    env.update(VECMETRIC_FLUSH_ROWS="2", RAY_TMPDIR=str(tmp_path_factory.mktemp("r")), OMP_NUM_THREADS="1")
    argv = [sys.executable, "-m", "vecmetric", "embed", str(images), "--store", str(store), "--model", small_model]
    argv += ["--engine", "ray", "--precision", "fp32", "--quiet", "--json"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        seen, sockets, names = set(), [], set()
        deadline = time.monotonic() + 300
        while proc.poll() is None and not list(store.glob("part-*.parquet")):  # rows arrive: Ray is up, the actor embeds
            assert time.monotonic() < deadline, "no rows written"
            time.sleep(0.01)
        tree = descendants(proc.pid) if proc.poll() is None else []
        names, sockets = sockets_of(tree)
        seen = {p.pid: p for p in tree}
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    result = json.loads(out)
    assert (result["embedded"], result["rows"], result["skipped"]) == (30, 30, 1)
    assert err.strip().splitlines() == [  # vecmetric's own lines, nothing from Ray
        f"skipped {images / 'class_00' / 'broken.png'}: empty file",
        f"1 files skipped; all listed in {store.resolve() / '_errors.jsonl'}",
    ], err
    assert {"gcs_server", "raylet"} <= names, names
    assert_loopback_only(sockets)
    gone, alive = psutil.wait_procs([p for pid, p in seen.items() if pid != proc.pid], timeout=60)
    assert alive == [], f"Ray processes left behind: {[p.pid for p in alive]}"


def test_without_ray_the_ray_engine_is_one_line_saying_how_to_install_it(runner, monkeypatch, image_folder, tiny_model):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real_find_spec(name, *a))
    result = runner.invoke(app, ["embed", str(image_folder), "--model", tiny_model, "--engine", "ray"])
    line = one_error_line(result, 10, "needs Ray, which is not installed", "pip install 'vecmetric[ray]'")
    assert line == "Error: the ray engine needs Ray, which is not installed (install it with: pip install 'vecmetric[ray]')"


@pytest.mark.parametrize(
    "options, needle",
    [
        (["--engine", "spark"], "--engine must be one of local, ray, not 'spark'"),
        (["--engine", "ray", "--device", "cuda"], "--device cuda applies to the local engine"),
        (["--engine", "ray", "--decode", "device"], "--decode device applies to the local engine"),
        (["--gpus-per-worker", "1"], "--gpus-per-worker applies to --engine ray"),
    ],
)
def test_options_that_do_not_fit_the_engine_are_refused_before_any_work(runner, image_folder, tiny_model, tmp_path, options, needle):
    if "ray" in options and importlib.util.find_spec("ray") is None:
        pytest.skip("ray is not installed")
    result = runner.invoke(app, ["embed", str(image_folder), "--store", str(tmp_path / "s"), "--model", tiny_model, *options])
    one_error_line(result, 3, needle)
    assert not (tmp_path / "s").exists()
