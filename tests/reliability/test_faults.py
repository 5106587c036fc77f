"""Concurrent use, disk and permission faults, awkward folders and file names: clear messages, nothing lost."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from _helpers import one_error_line
from _reliability import (
    assert_readable,
    assert_same_store,
    copy_store,
    draw,
    embed_args,
    embed_in_process,
    give_to,
    image_state,
    make_gallery,
    readable_by_all,
    rows_by_path,
    wait_until,
)

from vecmetric.store import open_store
from vecmetric.verify import verify_store

# --- two processes, one store ------------------------------------------------------------------------


def test_second_writer_exits_8_at_once_and_the_first_completes(cli, big_gallery, model32, tmp_path):
    store = tmp_path / "store"
    first = cli.start(*embed_args(big_gallery.images, store, model32), env={"VECMETRIC_FLUSH_ROWS": "4"})
    wait_until(lambda: (store / "_lock").exists(), first)
    first.signal(signal.SIGSTOP)  # paused while holding the lock, however fast this machine is
    try:
        owner = json.loads((store / "_lock").read_text())
        assert owner["pid"] == first.pid and owner["host"] == socket.gethostname()
        second = cli.run(*embed_args(big_gallery.images, store, model32))
        indexer = cli.run("index", "--store", store, "--quiet")
        repair = cli.run("verify", "--store", store, "--repair")
        assert json.loads((store / "_lock").read_text())["pid"] == first.pid  # not stolen
    finally:
        first.signal(signal.SIGCONT)
    one_error_line(second, 8, "in use by another vecmetric process", f"pid {first.pid}", "running embed")
    one_error_line(indexer, 8, f"pid {first.pid}")
    one_error_line(repair, 8, f"pid {first.pid}")
    # Refused at once, not after waiting for the lock: the first process was stopped, holding the lock,
    # while the three others ran to their end (a wait for the lock would have hung until cli.run's timeout).

    assert first.wait().code == 0
    assert_same_store(store, big_gallery.reference)
    assert not (store / "_lock").exists()


def test_repair_racing_an_embed_waits_for_the_lock_and_loses_no_row(cli, big_gallery, model32, tmp_path):
    """verify --repair takes the lock before it writes anything, a rebuilt manifest included."""
    store = tmp_path / "store"
    first = cli.start(*embed_args(big_gallery.images, store, model32), env={"VECMETRIC_FLUSH_ROWS": "4"})
    wait_until(lambda: len(list(store.glob("part-*.parquet"))) >= 2, first, what="two parts")
    first.signal(signal.SIGSTOP)  # paused mid-run, holding the lock
    try:
        (store / "_manifest.json").unlink()  # lost while the embed runs: repair must not rebuild it under the embed
        before = sorted(p.name for p in store.iterdir())
        repair = cli.run("verify", "--store", store, "--repair")
        after = sorted(p.name for p in store.iterdir())
    finally:
        first.signal(signal.SIGCONT)
    one_error_line(repair, 8, f"pid {first.pid}", "running embed")
    assert after == before  # nothing written, no manifest rebuilt behind the writer's back
    assert first.wait().code == 0  # the embed writes its manifest again and completes
    assert_same_store(store, big_gallery.reference)
    assert verify_store(store).findings == []


def test_two_embeds_racing_to_create_a_store(cli, gallery, model32, tmp_path):
    store = tmp_path / "store"
    children = [cli.start(*embed_args(gallery.images, store, model32)) for _ in range(2)]
    done = [c.wait() for c in children]
    codes = sorted(d.code for d in done)
    assert codes in ([0, 0], [0, 8]), [d.err for d in done]
    for d in done:
        if d.code == 8:
            one_error_line(d, 8, "in use by another vecmetric process")
    assert_same_store(store, gallery.reference)


def test_stale_lock_of_a_dead_process_is_reported_and_recovered(cli, gallery, model32, tmp_path):
    store = copy_store(gallery.reference, tmp_path / "store")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (store / "_lock").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "purpose": "embed", "since": 0}))
    report = verify_store(store)
    assert [f.kind for f in report.findings] == ["stale-lock"] and not report.ok
    done = cli.run(*embed_args(gallery.images, store, model32))
    assert done.code == 0, done.err
    assert not (store / "_lock").exists()
    assert_same_store(store, gallery.reference)
    (store / "_lock").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "purpose": "index", "since": 0}))
    assert cli.run("verify", "--store", store).code == 9
    repaired = cli.run("verify", "--store", store, "--repair")
    assert repaired.code == 0 and "repaired stale-lock" in repaired.out
    assert not (store / "_lock").exists()


# --- disk full ----------------------------------------------------------------------------------------


def test_disk_full_is_one_line_exit_5_and_keeps_earlier_rows(cli, model32, tmp_path):
    images = tmp_path / "images"
    make_gallery(images, classes=1, per_class=4, seed=11)
    store = tmp_path / "store"
    embed_in_process(images, store, model32)
    part_bytes = max(p.stat().st_size for p in store.glob("part-*.parquet"))
    make_gallery(images / "more", classes=3, per_class=4, seed=12)  # 12 new: one part 3x as big
    before = rows_by_path(store)

    done = cli.run(*embed_args(images, store, model32), fsize=2 * part_bytes)
    one_error_line(done, 5, f"cannot write to store {store}", "File too large", "work written so far is kept")
    assert rows_by_path(store).keys() == before.keys()  # earlier rows intact
    assert assert_readable(store) == 4
    assert not list(store.glob("_tmp-*"))  # the failed write cleaned up after itself
    assert not (store / "_lock").exists()

    done = cli.run(*embed_args(images, store, model32))  # space again: the run completes
    assert done.code == 0, done.err
    embed_in_process(images, tmp_path / "reference", model32)
    assert_same_store(store, tmp_path / "reference")


def test_disk_full_with_decoding_workers_stops_with_exit_3(gallery, model32, tmp_path):
    """Worker batches travel through shared memory, which the file-size limit also stops."""

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (16_000, 16_000))

    store = tmp_path / "store"
    args = [*embed_args(gallery.images, store, model32)]
    args[args.index("--workers") + 1] = "1"
    args[args.index("--batch-size") + 1] = "8"  # 8 x 3 x 32 x 32 bytes: over the limit
    env = dict(os.environ, VECMETRIC_WORKER_TIMEOUT="5", OMP_NUM_THREADS="1")
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "vecmetric", *args], capture_output=True, text=True, env=env, preexec_fn=limit, timeout=300)
    assert proc.returncode == 3, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    # The worker's own traceback (printed by multiprocessing in the worker) may precede it.
    assert last.startswith("Error: the decoding workers stopped answering") and "--workers 0" in last
    assert time.monotonic() - started < 240
    assert_readable(store)
    assert not (store / "_lock").exists()


# --- permissions ---------------------------------------------------------------------------------------


def test_read_only_store(cli, gallery, model32, tmp_path, nobody):
    """Someone who may not write the store: search works on a current index; writes fail with exit 5."""
    from vecmetric.index import build_index

    store = copy_store(gallery.reference, tmp_path / "store")
    build_index(open_store(store))
    readable_by_all(store)
    nobody.reach(store, gallery.images, model32)
    if nobody.uid is None:
        for p in [store, *store.rglob("*")]:
            p.chmod(0o555 if p.is_dir() else 0o444)
    query = sorted(gallery.images.rglob("*.png"))[0]
    before = sorted(p.name for p in store.rglob("*"))

    found = cli.run("search", query, "--store", store, "--k", "1", "--json", "--keep-query-images", user=nobody.uid, env=nobody.env)
    assert found.code == 0, found.err
    assert json.loads(found.out.splitlines()[0])["path"] == str(query)

    embed = cli.run(*embed_args(gallery.images, store, model32), user=nobody.uid, env=nobody.env)
    one_error_line(embed, 5, f"cannot write to store {store}", "Permission denied")
    index = cli.run("index", "--store", store, "--rebuild", "--quiet", user=nobody.uid, env=nobody.env)
    one_error_line(index, 5, "Permission denied")
    verify = cli.run("verify", "--store", store, "--repair", user=nobody.uid, env=nobody.env)
    one_error_line(verify, 5, "Permission denied")
    assert sorted(p.name for p in store.rglob("*")) == before
    assert_same_store(store, gallery.reference)


def test_unreadable_subfolder_is_reported_and_the_rest_embedded(cli, model32, tmp_path, nobody):
    images = tmp_path / "images"
    make_gallery(images, classes=3, per_class=2, seed=21)
    readable_by_all(images)
    (images / "class_1").chmod(0o000)
    store = tmp_path / "store"
    store.mkdir()
    give_to(store, nobody.uid)
    nobody.reach(images, model32)
    try:
        done = cli.run(*embed_args(images, store, model32), user=nobody.uid, env=nobody.env)
    finally:
        (images / "class_1").chmod(0o755)
    assert done.code == 0, done.err
    assert "4 embedded" in done.out and "1 skipped" in done.out
    assert f"skipped {images / 'class_1'}: cannot read folder: Permission denied" in done.err
    assert {Path(p).parent.name for p in rows_by_path(store)} == {"class_0", "class_2"}
    errors = [json.loads(line) for line in (store / "_errors.jsonl").read_text().splitlines()]
    assert errors == [{"path": str(images / "class_1"), "reason": "cannot read folder: Permission denied"}]


# --- awkward folders and names -------------------------------------------------------------------------


def test_symlink_loops_do_not_hang_and_files_are_embedded_once(cli, model32, tmp_path):
    images = tmp_path / "images"
    make_gallery(images, classes=2, per_class=2, seed=31)
    os.symlink(images, images / "class_0" / "loop")  # back to the top
    os.symlink(images / "class_1", images / "alias")  # the same folder under two names
    os.symlink("self.png", images / "self.png")  # a link to itself
    os.symlink(tmp_path / "nowhere.png", images / "dangling.png")
    store = tmp_path / "store"
    done = cli.run(*embed_args(images, store, model32), timeout=60)
    assert done.code == 0, done.err
    rows = rows_by_path(store)
    assert len(rows) == 4  # each image once, whichever name reached it first
    assert len({r["hash"] for r in rows.values()}) == 4
    skipped = {json.loads(line)["path"] for line in (store / "_errors.jsonl").read_text().splitlines()}
    assert skipped == {str(images / "self.png"), str(images / "dangling.png")}


def test_names_with_spaces_newlines_and_bad_bytes(cli, model32, tmp_path):
    images = tmp_path / "images"
    good = [
        draw(images / "with space" / "a b.png", 1),
        draw(images / "with space" / "new\nline.png", 2),
        draw(images / "ünïcødé" / "😀 [bold]x[/bold].png", 3),
        draw(images / "quote's" / '"dq".png', 4),
    ]
    bad_dir = os.fsencode(images) + b"/latin1-\xe9"
    os.mkdir(bad_dir)
    bad_file = bad_dir + b"/img.png"
    draw(Path(os.fsdecode(bad_file)), 5)
    also_bad = os.fsencode(images) + b"/bad-\xff\xfe.png"
    shutil.copyfile(os.fsencode(good[0]), also_bad)
    before = image_state(images)

    store = tmp_path / "store"
    done = cli.run(*embed_args(images, store, model32))
    assert done.code == 0, done.err
    assert "4 embedded" in done.out and "2 skipped" in done.out
    assert sorted(rows_by_path(store)) == sorted(str(p) for p in good)
    errors = [json.loads(line) for line in (store / "_errors.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {e["reason"] for e in errors} == {"file name is not valid UTF-8"}
    assert sorted(e["path"] for e in errors) == sorted([f"{images}/bad-\\xff\\xfe.png", f"{images}/latin1-\\xe9"])  # the real bytes
    assert "not valid UTF-8" in done.err and "Traceback" not in done.err
    assert image_state(images) == before  # nothing renamed, moved or lost
    assert os.path.exists(bad_file) and os.path.exists(also_bad)

    # The odd names work as queries, and as results, through the CLI.
    hits = cli.run("search", good[1], "--store", store, "--k", "1", "--json", "--exact", "--keep-query-images")
    assert hits.code == 0, hits.err
    assert json.loads(hits.out.splitlines()[0])["path"] == str(good[1])


def test_image_files_are_never_written(cli, gallery, model32, tmp_path):
    images = tmp_path / "images"
    shutil.copytree(gallery.images, images)
    before = image_state(images)
    store = tmp_path / "store"
    assert cli.run(*embed_args(images, store, model32)).code == 0
    query = sorted(images.rglob("*.png"))[0]
    assert cli.run("search", query, "--store", store, "--k", "3").code == 0
    assert cli.run("index", "--store", store, "--rebuild", "--quiet").code == 0
    shutil.move(images / "class_1" / "img_03.png", tmp_path / "moved.png")  # a missing file to repair
    del before[str(images / "class_1" / "img_03.png")]
    repaired = cli.run("verify", "--store", store, "--repair")
    assert repaired.code == 0, repaired.out + repaired.err
    assert cli.run("info", "--store", store).code == 0
    assert image_state(images) == before
