"""The ray engine under kills, on a loopback Ray instance this module starts: a Ray worker killed
mid-batch, the driver (``vecmetric embed --engine ray``) killed mid-run and resumed by either engine.

The truth is the reference store of an uninterrupted local run; ``verify`` must find nothing after each.
"""

from __future__ import annotations

import signal
import threading
import time

import pytest
from _helpers import descendants
from _reliability import assert_readable, assert_same_store, embed_args, embed_in_process, tally, wait_until

from vecmetric.verify import verify_store

FLUSH = {"VECMETRIC_FLUSH_ROWS": "4"}


def assert_no_problems(store_path) -> None:
    report = verify_store(store_path)
    assert report.findings == [], [f.to_dict() for f in report.findings]


def busy_embed_worker(running: threading.Thread, deadline: float):
    """The embed actor's process while it runs a batch (Ray titles it ``ray::...(_EmbedWorker).submit`` then)."""
    import psutil

    while running.is_alive() and time.monotonic() < deadline:
        for proc in descendants():
            try:
                title = " ".join(proc.cmdline()).strip()  # the title is padded with spaces
            except psutil.Error:
                continue
            if "_EmbedWorker" in title and title.endswith(".submit"):
                return proc
        time.sleep(0.005)
    raise AssertionError("no embed actor was seen running a batch before the run ended")


@pytest.mark.slow
def test_a_ray_worker_killed_mid_batch_is_retried_and_the_store_is_complete(ray_loopback, big_gallery, model32, tmp_path):
    store = tmp_path / "store"
    results, failed = [], []

    def run():
        try:
            results.append(embed_in_process(big_gallery.images, store, model32, engine="ray", flush_rows=4))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            failed.append(exc)

    runner = threading.Thread(target=run)
    runner.start()
    victim = busy_embed_worker(runner, time.monotonic() + 180)
    victim.send_signal(signal.SIGKILL)
    tally("ray workers killed mid-batch")
    runner.join(timeout=300)

    assert not runner.is_alive() and failed == []
    assert (results[0].embedded, results[0].rows, results[0].skipped) == (big_gallery.count, big_gallery.count, [])
    assert_same_store(store, big_gallery.reference)
    assert_no_problems(store)


@pytest.mark.parametrize("resume_with", ["local", "ray"])
def test_a_killed_driver_leaves_a_store_that_either_engine_resumes(cli, ray_loopback, big_gallery, model32, tmp_path, resume_with):
    """``vecmetric embed --engine ray --address`` (a driver joining this module's cluster) killed after a
    few parts: the store is readable, and the next run adds exactly the rows that were missing."""
    ray, root = ray_loopback
    store = tmp_path / "store"
    address = ray.get_runtime_context().gcs_address
    assert address.startswith("127.0.0.1:")
    env = {**FLUSH, "HOME": str(root)}  # the cluster's auth token is under its HOME
    child = cli.start(*embed_args(big_gallery.images, store, model32, "--engine", "ray", "--address", address), env=env)
    wait_until(lambda: len(list(store.glob("part-*.parquet"))) >= 2, child, timeout=240, what="2 parts")
    child.signal(signal.SIGKILL)
    assert child.wait().code == -signal.SIGKILL
    tally("ray drivers killed mid-run")

    kept = assert_readable(store)
    assert 8 <= kept < big_gallery.count
    result = embed_in_process(big_gallery.images, store, model32, engine=resume_with)
    assert (result.unchanged, result.embedded, result.rows) == (kept, big_gallery.count - kept, big_gallery.count)
    assert_same_store(store, big_gallery.reference)
    assert_no_problems(store)
