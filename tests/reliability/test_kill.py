"""Crash safety: ``vecmetric embed``, ``index`` and ``train`` killed at every write and at random moments.

After each kill the store (or run folder) must be readable as it was left, the next run must
complete, and its result must equal an uninterrupted run. Kill points are counted in the
session's "reliability tally".
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
from pathlib import Path

import pytest
from _reliability import (
    assert_readable,
    assert_same_store,
    copy_store,
    draw,
    embed_args,
    embed_in_process,
    make_gallery,
    tally,
    wait_until,
)

from vecmetric.store import open_store
from vecmetric.verify import verify_store

FAULT = "VECMETRIC_FAULT_AT_WRITE"
FLUSH = {"VECMETRIC_FLUSH_ROWS": "4"}  # 4 images per part: a dozen writes for a dozen images
MAX_WRITES = 60  # a run that writes more than this is not the run we think it is


def kill_at_every_write(start, check, stage: str, key: str) -> int:
    """Run ``start(env)`` with the fault hook at write 1, 2, ... until a run completes unharmed.

    ``check(n, done)`` inspects and repairs by re-running after each kill. Returns the number of
    writes a complete run makes.
    """
    for n in range(1, MAX_WRITES):
        done = start({FAULT: f"{n}:{stage}"}).wait()
        if done.code == 0:
            return n - 1
        assert done.code == -signal.SIGKILL, f"write {n}:{stage}: exit {done.code}\n{done.err[-3000:]}"
        tally(key)
        check(n, done)
    pytest.fail(f"still killed at write {MAX_WRITES}")


def assert_no_problems(store_path: Path, check_files: bool = True) -> None:
    report = verify_store(store_path, check_files=check_files)
    assert report.findings == [], [f.to_dict() for f in report.findings]


# --- embed killed at each write --------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["written", "renamed"])
def test_embed_killed_at_every_write_of_a_new_store(cli, gallery, model32, tmp_path, stage):
    """Kill before and after each rename; the next run completes and equals an uninterrupted one."""
    runs = []

    def start(env):
        store = tmp_path / f"store-{len(runs)}"
        runs.append(store)
        return cli.start(*embed_args(gallery.images, store, model32), env={**FLUSH, **env})

    def check(n, done):
        store = runs[-1]
        kept = assert_readable(store)
        assert kept <= gallery.count
        result = embed_in_process(gallery.images, store, model32)
        assert result.rows == gallery.count and result.unchanged == kept
        assert_same_store(store, gallery.reference)
        assert not (store / "_lock").exists()
        assert_no_problems(store)  # a completing run also clears what the killed one left
        shutil.rmtree(store)

    writes = kill_at_every_write(start, check, stage, f"embed kill points (new store, {stage})")
    # first manifest, embed root, the export copied from the cache (graph, export.json), the runtime,
    # 2 x (manifest + part), errors, final manifest
    assert writes == 1 + 1 + 2 + 1 + 2 * 2 + 2
    assert_same_store(runs[-1], gallery.reference)


@pytest.mark.parametrize("stage", ["written", "renamed"])
def test_embed_killed_at_every_write_of_an_update(cli, model32, tmp_path, stage):
    """An update deletes rows (rewriting parts in place), re-embeds a changed file and adds new ones."""
    images = tmp_path / "images"
    make_gallery(images, classes=2, per_class=4, seed=3)
    before = embed_in_process(images, tmp_path / "before", model32, flush_rows=4)
    assert before.rows == 8
    (images / "class_0" / "img_00.png").unlink()  # gone: its row is deleted
    draw(images / "class_1" / "img_01.png", seed=999)  # changed: embedded again
    os.utime(images / "class_1" / "img_01.png", ns=(1, 1))
    draw(images / "class_2" / "img_00.png", seed=1000)  # new
    draw(images / "class_2" / "img_01.png", seed=1001)
    shutil.copy2(images / "class_1" / "img_02.png", images / "class_2" / "copy.png")  # duplicate: reuses a vector
    after = copy_store(tmp_path / "before", tmp_path / "after")
    want = embed_in_process(images, after, model32, flush_rows=4)
    assert (want.removed, want.embedded, want.reused, want.rows) == (1, 3, 1, 10)
    runs = []

    def start(env):
        store = copy_store(tmp_path / "before", tmp_path / f"store-{len(runs)}")
        runs.append(store)
        return cli.start(*embed_args(images, store, model32), env={**FLUSH, **env})

    def check(n, done):
        store = runs[-1]
        assert_readable(store)
        result = embed_in_process(images, store, model32)
        assert result.rows == 10
        assert_same_store(store, after)
        assert_no_problems(store)
        shutil.rmtree(store)

    writes = kill_at_every_write(start, check, stage, f"embed kill points (update, {stage})")
    assert writes >= 5
    assert_same_store(runs[-1], after)


def test_embed_killed_by_the_hook_in_a_real_python_m_process(run_python_m, gallery, model32, tmp_path):
    """The hook works in a fresh ``python -m vecmetric`` too (not only in forked children)."""
    store = tmp_path / "store"
    proc = run_python_m(*embed_args(gallery.images, store, model32), env={**FLUSH, FAULT: "7:renamed"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    tally("embed kill points (python -m, renamed)")
    # manifest, root, export graph and export.json, runtime, manifest, then the first part (4 rows): killed after it
    assert assert_readable(store) == 4
    embed_in_process(gallery.images, store, model32)
    assert_same_store(store, gallery.reference)


# --- embed killed or interrupted at random moments --------------------------------------------------


def test_embed_killed_at_random_moments(cli, big_gallery, model32, tmp_path):
    """SIGKILL after a random number of parts (a state, not a clock): between writes, mid-batch."""
    parts = big_gallery.count // int(FLUSH["VECMETRIC_FLUSH_ROWS"])
    rng = random.Random(20261127)
    for k in range(4):
        store = tmp_path / f"store-{k}"
        child = cli.start(*embed_args(big_gallery.images, store, model32), env=FLUSH)
        target = rng.randint(1, parts - 3)  # three parts still to write: the run is far from its end
        wait_until(lambda: len(list(store.glob("part-*.parquet"))) >= target, child, what=f"{target} parts")
        child.signal(signal.SIGKILL)
        assert child.wait().code == -signal.SIGKILL
        tally("embed kill points (random SIGKILL)")
        kept = assert_readable(store)
        assert kept >= target * int(FLUSH["VECMETRIC_FLUSH_ROWS"])
        result = embed_in_process(big_gallery.images, store, model32)
        assert result.unchanged == kept and result.rows == big_gallery.count
        assert_same_store(store, big_gallery.reference)
        shutil.rmtree(store)


def test_ctrl_c_at_random_moments_exits_130_and_keeps_the_work(cli, big_gallery, model32, tmp_path):
    """SIGINT after a random number of parts, delivered while the process is stopped so it lands mid-run."""
    parts = big_gallery.count // int(FLUSH["VECMETRIC_FLUSH_ROWS"])
    rng = random.Random(130)
    for k in range(4):
        store = tmp_path / f"store-{k}"
        child = cli.start(*embed_args(big_gallery.images, store, model32), env=FLUSH)
        target = rng.randint(1, parts - 3)
        wait_until(lambda: len(list(store.glob("part-*.parquet"))) >= target, child, what=f"{target} parts")
        child.signal(signal.SIGSTOP)
        child.signal(signal.SIGINT)  # pending until the process runs again
        child.signal(signal.SIGCONT)
        done = child.wait()
        tally("embed interrupt points (random SIGINT)")
        assert done.code == 130, done.err
        assert "Interrupted" in done.err and "Traceback" not in done.err
        assert len(done.err.strip().splitlines()) == 1
        assert not (store / "_lock").exists()  # released on the way out
        kept = assert_readable(store)  # no duplicate rows (a Ctrl-C during a flush once made some)
        assert kept >= target * int(FLUSH["VECMETRIC_FLUSH_ROWS"])
        result = embed_in_process(big_gallery.images, store, model32)
        assert result.unchanged == kept
        assert_same_store(store, big_gallery.reference)
        assert_no_problems(store)


# --- index killed at each write -------------------------------------------------------------------


def search_top1(store_path: Path, queries: list[Path], model: str) -> list[str]:
    from vecmetric.query import search_store

    found = search_store(store_path, [str(q) for q in queries], k=1, device="cpu", keep_query_images=True)
    return [hits[0].path for hits in found]


@pytest.mark.parametrize("stage", ["written", "renamed"])
def test_index_killed_at_every_write(cli, gallery, model32, tmp_path, stage):
    """A fresh build, then an update after rows changed; search works after every kill."""
    from vecmetric.index import build_index

    queries = sorted(gallery.images.rglob("*.png"))[::3]
    base = copy_store(gallery.reference, tmp_path / "base")
    runs = []

    def start_build(env):
        store = copy_store(base, tmp_path / f"build-{len(runs)}")
        runs.append(store)
        return cli.start("index", "--store", store, "--quiet", env=env)

    def check(n, done):
        store = runs[-1]
        assert_readable(store)
        # Search still works: it brings the index up to date when the kill left it behind.
        assert search_top1(store, queries, model32) == [str(q) for q in queries]
        build_index(open_store(store))  # a completing run (takes over the dead process's lock)
        assert not (store / "_lock").exists()
        assert_no_problems(store)
        shutil.rmtree(store)

    writes = kill_at_every_write(start_build, check, stage, f"index kill points (build, {stage})")
    assert writes == 3  # hnsw-<gen>.bin, ids-<gen>.npy, then index.json (the commit point)

    # An update: the index exists, rows were removed and added since.
    indexed = copy_store(base, tmp_path / "indexed")
    build_index(open_store(indexed))
    st = open_store(indexed)
    first, second = st.read_table(["id"]).column("id").to_pylist()[:2]
    st.delete_ids([first, second])
    st.write_manifest(counts={"rows": st.count()})
    updates = []

    def start_update(env):
        store = copy_store(indexed, tmp_path / f"update-{len(updates)}")
        updates.append(store)
        return cli.start("index", "--store", store, "--quiet", env=env)

    def check_update(n, done):
        store = updates[-1]
        hits = search_top1(store, queries[1:], model32)
        assert hits == [str(q) for q in queries[1:]]
        build_index(open_store(store))
        assert_no_problems(store)
        shutil.rmtree(store)

    assert kill_at_every_write(start_update, check_update, stage, f"index kill points (update, {stage})") == 3


# --- train killed after its first epoch ------------------------------------------------------------


def test_train_killed_after_the_first_epoch_resumes_to_the_same_weights(cli, tmp_path):
    from safetensors.numpy import load_file

    data = tmp_path / "data"
    for c in range(6):
        for i in range(4):
            draw(data / f"class_{c}" / f"img_{i}.png", seed=50 + c * 10 + i, size=36)
    args = ["train", data, "--model", "timm:test_efficientnet@random", "--image-size", "32", "--batch-size", "8",
            "--m-per-class", "2", "--epochs", "3", "--val-classes", "class_4,class_5", "--device", "cpu", "--workers", "0",
            "--lr", "1e-3", "--json"]
    straight = cli.run(*args, "--out", tmp_path / "straight", timeout=300)
    assert straight.code == 0, straight.err

    run_dir = tmp_path / "killed"
    child = cli.start(*args, "--out", run_dir)
    state = run_dir / "last" / "state.json"

    def finished_epochs() -> int:
        try:
            return json.loads(state.read_text())["epoch"]
        except (OSError, ValueError, KeyError):
            return 0

    wait_until(lambda: finished_epochs() >= 1, child, timeout=300, what="a finished epoch")
    child.signal(signal.SIGKILL)
    assert child.wait().code == -signal.SIGKILL, "the run ended before it could be killed"
    tally("train kill points (SIGKILL after epoch 1)")
    assert finished_epochs() == 1  # the run folder is readable as left, one epoch of three done

    resumed = cli.run(*args, "--out", run_dir, "--resume", timeout=300)
    assert resumed.code == 0, resumed.err
    for name in ("model.safetensors", "last/model.safetensors"):
        want, got = load_file(tmp_path / "straight" / name), load_file(run_dir / name)
        assert want.keys() == got.keys()
        for key in want:
            assert (want[key] == got[key]).all(), f"{name}: {key} differs"
