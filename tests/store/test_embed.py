"""``embed_directory``: the Parquet store round trip, incremental runs, bad input, locks, resume after kill."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from vecmetric.errors import InputError, StoreError, StoreLockedError, StoreMismatchError
from vecmetric.store import StoreLock, embed_directory, embeddings_to_numpy, open_store, scan_folder


def embed(folder, store, model, **kwargs):
    kwargs.setdefault("device", "cpu")
    kwargs.setdefault("precision", "fp32")
    kwargs.setdefault("workers", 0)
    kwargs.setdefault("batch_size", 8)
    return embed_directory(folder, store, model=model, **kwargs)


def rows_by_path(store_path) -> dict:
    table = open_store(store_path).read_table()
    vectors = embeddings_to_numpy(table.column("embedding"))
    out = {}
    for i, row in enumerate(table.drop(["embedding"]).to_pylist()):
        row["vector"] = vectors[i]
        assert row["path"] not in out, f"duplicate row for {row['path']}"
        out[row["path"]] = row
    return out


@pytest.fixture
def store_path(tmp_path):
    return tmp_path / "store"


# --- the round trip ---------------------------------------------------------------------------


def test_round_trip_matches_the_encoder(image_folder, store_path, tiny_model, tiny_encoder):
    result = embed(image_folder, store_path, tiny_model, batch_size=5)
    assert (result.found, result.embedded, result.reused, result.unchanged, result.removed) == (12, 12, 0, 0, 0)
    assert result.rows == 12 and result.skipped == [] and result.model == tiny_model
    assert result.store == str(store_path.resolve())

    store = open_store(store_path)
    assert store.count() == 12 and store.dim == 256 and store.metric == "cosine"
    schema = store.read_table().schema
    assert schema.names == ["id", "path", "size", "mtime_ns", "content_hash", "label", "model", "embedding"]
    assert str(schema.field("embedding").type) == "fixed_size_list<item: float>[256]"

    rows = rows_by_path(store_path)
    paths = sorted(str(p.resolve()) for p in image_folder.rglob("*.png"))
    assert sorted(rows) == paths
    expected = tiny_encoder.embed_paths(paths)
    for path, vector in zip(paths, expected):
        row = rows[path]
        st = os.stat(path)
        assert row["size"] == st.st_size and row["mtime_ns"] == st.st_mtime_ns
        assert row["label"] == Path(path).parent.name
        assert row["model"] == tiny_encoder.fingerprint
        assert len(row["content_hash"]) == 32
        np.testing.assert_allclose(row["vector"], vector, atol=1e-5)
    assert sorted(r["id"] for r in rows.values()) == list(range(12))

    manifest = json.loads((store_path / "_manifest.json").read_text())
    assert manifest["format"] == "vecmetric-store"
    assert manifest["model"]["spec"] == tiny_model and manifest["model"]["dim"] == 256
    assert manifest["model"]["fingerprint"] == tiny_encoder.fingerprint and manifest["model"]["metric"] == "cosine"
    assert manifest["next_id"] == 12 and manifest["counts"]["rows"] == 12
    assert {"vecmetric", "torch", "timm", "pyarrow"} <= set(manifest["versions"])
    assert not (store_path / "_lock").exists()


def test_pandas_reads_exactly_the_live_rows(image_folder, store_path, tiny_model):
    pd = pytest.importorskip("pandas")
    from vecmetric.index import build_index

    (image_folder / "class_00" / "broken.png").write_bytes(b"nope")
    embed(image_folder, store_path, tiny_model)
    build_index(open_store(store_path))  # adds _index/ beside the parts
    (image_folder / "class_01" / "img_000.png").unlink()
    embed(image_folder, store_path, tiny_model)  # rewrites a part
    names = {p.name for p in store_path.iterdir()}
    assert {"_manifest.json", "_errors.jsonl", "_index"} <= names
    assert all(n.startswith(("part-", "_")) for n in names), names

    frame = pd.read_parquet(store_path)
    assert len(frame) == 11 == open_store(store_path).count()
    assert set(frame.columns) == {"id", "path", "size", "mtime_ns", "content_hash", "label", "model", "embedding"}
    assert frame["path"].is_unique and frame["id"].is_unique
    assert len(frame["embedding"].iloc[0]) == 256


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(not _cuda_available(), reason="needs CUDA")
def test_embed_on_cuda_matches_cpu(image_folder, tmp_path, tiny_model):
    embed(image_folder, tmp_path / "cpu", tiny_model)
    result = embed_directory(image_folder, tmp_path / "gpu", model=tiny_model, device="auto", workers=2, batch_size=5)
    assert result.rows == 12 and result.skipped == []
    cpu, gpu = rows_by_path(tmp_path / "cpu"), rows_by_path(tmp_path / "gpu")
    assert cpu.keys() == gpu.keys()
    for path in cpu:
        assert float(cpu[path]["vector"] @ gpu[path]["vector"]) > 0.99
    assert open_store(tmp_path / "gpu").model["fingerprint"] == open_store(tmp_path / "cpu").model["fingerprint"]


def test_workers_decode_in_parallel_to_the_same_vectors(image_folder, tmp_path, tiny_model):
    embed(image_folder, tmp_path / "a", tiny_model, workers=0)
    embed(image_folder, tmp_path / "b", tiny_model, workers=2, batch_size=3)
    a, b = rows_by_path(tmp_path / "a"), rows_by_path(tmp_path / "b")
    assert a.keys() == b.keys()
    for path in a:
        np.testing.assert_allclose(a[path]["vector"], b[path]["vector"], atol=1e-5)


def test_small_flushes_write_many_parts(image_folder, store_path, tiny_model):
    from vecmetric.progress import Reporter

    events = []

    class Recording(Reporter):
        def start(self, task, total=None):
            events.append(("start", task, total))

        def advance(self, n=1, **fields):
            events.append(("advance", n))

    result = embed(image_folder, store_path, tiny_model, batch_size=2, flush_rows=4, reporter=Recording())
    store = open_store(store_path)
    assert len(store.parts()) == 3 and store.count() == 12 == result.rows
    assert events[0] == ("start", "Embedding", 12)
    assert [e for e in events if e[0] == "advance"] == [("advance", 2)] * 6


# --- incremental runs -------------------------------------------------------------------------


def test_second_run_embeds_nothing(image_folder, store_path, tiny_model):
    embed(image_folder, store_path, tiny_model)
    before = open_store(store_path).snapshot()
    again = embed(image_folder, store_path, tiny_model)
    assert (again.embedded, again.reused, again.removed, again.unchanged, again.rows) == (0, 0, 0, 12, 12)
    assert open_store(store_path).snapshot() == before  # no part rewritten


def test_changed_file_is_embedded_again(image_folder, store_path, tiny_model, tiny_encoder, make_images, tmp_path):
    embed(image_folder, store_path, tiny_model)
    target = image_folder / "class_00" / "img_001.png"
    old = rows_by_path(store_path)[str(target.resolve())]
    replacement = make_images(tmp_path / "other", classes=1, per_class=1, seed=42)[0]
    st = target.stat()
    shutil.copyfile(replacement, target)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))

    result = embed(image_folder, store_path, tiny_model)
    assert (result.embedded, result.reused, result.unchanged, result.removed, result.rows) == (1, 0, 11, 0, 12)
    new = rows_by_path(store_path)[str(target.resolve())]
    assert new["content_hash"] != old["content_hash"] and new["id"] != old["id"]
    np.testing.assert_allclose(new["vector"], tiny_encoder.embed_paths([str(target)])[0], atol=1e-5)
    assert not np.allclose(new["vector"], old["vector"], atol=1e-3)


def test_touched_file_keeps_one_row(image_folder, store_path, tiny_model):
    embed(image_folder, store_path, tiny_model)
    target = image_folder / "class_02" / "img_000.png"
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 3_000_000_000))
    result = embed(image_folder, store_path, tiny_model)
    assert result.rows == 12 and result.unchanged == 11
    rows = rows_by_path(store_path)  # asserts no duplicate path
    assert rows[str(target.resolve())]["mtime_ns"] == st.st_mtime_ns + 3_000_000_000


def test_deleted_file_is_dropped(image_folder, store_path, tiny_model):
    embed(image_folder, store_path, tiny_model)
    gone = image_folder / "class_01" / "img_002.png"
    gone.unlink()
    result = embed(image_folder, store_path, tiny_model)
    assert (result.removed, result.embedded, result.rows) == (1, 0, 11)
    assert str(gone.resolve()) not in rows_by_path(store_path)
    assert open_store(store_path).manifest["counts"]["rows"] == 11


def test_renamed_file_reuses_its_vector(image_folder, store_path, tiny_model):
    embed(image_folder, store_path, tiny_model)
    old_path = image_folder / "class_00" / "img_000.png"
    old = rows_by_path(store_path)[str(old_path.resolve())]
    (image_folder / "renamed").mkdir()
    new_path = image_folder / "renamed" / "moved.png"
    old_path.rename(new_path)

    result = embed(image_folder, store_path, tiny_model)
    assert (result.embedded, result.reused, result.removed, result.unchanged, result.rows) == (0, 1, 1, 11, 12)
    rows = rows_by_path(store_path)
    assert str(old_path.resolve()) not in rows
    new = rows[str(new_path.resolve())]
    np.testing.assert_array_equal(new["vector"], old["vector"])
    assert new["content_hash"] == old["content_hash"]
    assert new["label"] == "renamed"


def test_duplicate_content_reuses_the_vector(image_folder, store_path, tiny_model):
    embed(image_folder, store_path, tiny_model)
    source = image_folder / "class_02" / "img_003.png"
    copy = image_folder / "class_02" / "copy.png"
    shutil.copyfile(source, copy)
    result = embed(image_folder, store_path, tiny_model)
    assert (result.embedded, result.reused, result.removed, result.rows) == (0, 1, 0, 13)
    rows = rows_by_path(store_path)
    np.testing.assert_array_equal(rows[str(copy.resolve())]["vector"], rows[str(source.resolve())]["vector"])


def test_embedding_a_second_folder_keeps_the_first(image_folder, store_path, tiny_model, make_images, tmp_path):
    embed(image_folder, store_path, tiny_model)
    second = tmp_path / "second"
    make_images(second, classes=1, per_class=2, seed=7)
    result = embed(second, store_path, tiny_model)
    assert (result.embedded, result.removed, result.rows) == (2, 0, 14)


# --- bad input --------------------------------------------------------------------------------


def test_bad_files_are_skipped_logged_and_summarised(image_folder, store_path, tiny_model):
    bad = image_folder / "bad"
    bad.mkdir()
    (bad / "zero.jpg").write_bytes(b"")
    (bad / "text.png").write_text("hello, I am not a picture")
    good = (image_folder / "class_00" / "img_000.png").read_bytes()
    (bad / "truncated.png").write_bytes(good[: len(good) // 2])
    (bad / "notes.txt").write_text("ignored: no image extension")
    (bad / ".hidden.png").write_bytes(good)  # hidden entries are not walked

    result = embed(image_folder, store_path, tiny_model)
    assert result.found == 15 and result.ignored == 1
    assert result.embedded == 12 and result.rows == 12
    skipped = {Path(s["path"]).name: s["reason"] for s in result.skipped}
    assert set(skipped) == {"zero.jpg", "text.png", "truncated.png"}
    assert skipped["zero.jpg"] == "empty file"
    assert "not an image" in skipped["text.png"]
    assert "truncated" in skipped["truncated.png"] or "corrupt" in skipped["truncated.png"]
    assert result.to_dict()["skipped"] == 3

    logged = [json.loads(line) for line in (store_path / "_errors.jsonl").read_text().splitlines()]
    assert sorted(Path(e["path"]).name for e in logged) == ["text.png", "truncated.png", "zero.jpg"]
    assert all(e["reason"] for e in logged)
    assert open_store(store_path).manifest["counts"]["last_run_skipped"] == 3

    # Still bad next time: skipped again, nothing lost; fixed: embedded.
    (bad / "zero.jpg").write_bytes(good)
    again = embed(image_folder, store_path, tiny_model)
    assert len(again.skipped) == 2 and again.reused == 1 and again.rows == 13


def test_unreadable_file_is_skipped(image_folder, store_path, tiny_model):
    if os.geteuid() == 0:
        pytest.skip("root reads everything")
    locked = image_folder / "class_00" / "img_002.png"
    locked.chmod(0)
    try:
        result = embed(image_folder, store_path, tiny_model)
    finally:
        locked.chmod(0o644)
    assert result.rows == 11
    assert [Path(s["path"]).name for s in result.skipped] == ["img_002.png"]
    assert "cannot read" in result.skipped[0]["reason"]


def test_empty_and_missing_folders(tmp_path, store_path, tiny_model):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images found"):
        embed(tmp_path / "empty", store_path, tiny_model)
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "a.txt").write_text("x")
    with pytest.raises(InputError, match=r"1 files without an image extension"):
        embed(tmp_path / "texts", store_path, tiny_model)
    with pytest.raises(InputError, match="does not exist") as info:
        embed(tmp_path / "missing", store_path, tiny_model)
    assert info.value.exit_code == 3
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(InputError, match="is not a folder"):
        embed(tmp_path / "file.png", store_path, tiny_model)
    assert not store_path.exists()  # nothing created for a run that could not start


def test_store_made_by_another_model_is_refused(image_folder, store_path, tiny_model, other_tiny_model):
    embed(image_folder, store_path, tiny_model)
    before = open_store(store_path).snapshot()
    with pytest.raises(StoreMismatchError) as info:
        embed(image_folder, store_path, other_tiny_model)
    assert info.value.exit_code == 5
    assert tiny_model in str(info.value) and other_tiny_model in str(info.value)
    assert open_store(store_path).snapshot() == before
    # Leaving out the model uses the store's own.
    assert embed(image_folder, store_path, None).unchanged == 12


def test_folder_that_is_not_a_store(tmp_path, image_folder, tiny_model):
    other = tmp_path / "not-a-store"
    other.mkdir()
    (other / "precious.txt").write_text("keep me")
    with pytest.raises(StoreError, match="not a vecmetric store"):
        embed(image_folder, other, tiny_model)
    assert (other / "precious.txt").read_text() == "keep me"
    with pytest.raises(StoreError, match="no store at"):
        open_store(tmp_path / "nowhere")
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "_manifest.json").write_text("{broken")
    with pytest.raises(StoreError, match="damaged"):
        open_store(damaged)


# --- locks ------------------------------------------------------------------------------------


def write_lock(store_path: Path, pid: int) -> None:
    import socket

    store_path.mkdir(parents=True, exist_ok=True)
    (store_path / "_lock").write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "purpose": "embed", "since": 0}))


def test_lock_held_by_a_live_process(image_folder, store_path, tiny_model, other_process):
    embed(image_folder, store_path, tiny_model)
    write_lock(store_path, other_process.pid)
    (image_folder / "class_00" / "img_000.png").unlink()
    with pytest.raises(StoreLockedError) as info:
        embed(image_folder, store_path, tiny_model)
    assert f"pid {other_process.pid}" in str(info.value) and info.value.exit_code == 8
    assert open_store(store_path).count() == 12  # untouched
    assert json.loads((store_path / "_lock").read_text())["pid"] == other_process.pid  # not stolen


def test_stale_lock_of_a_dead_process_is_taken_over(image_folder, store_path, tiny_model):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    embed(image_folder, store_path, tiny_model)
    write_lock(store_path, dead.pid)
    (image_folder / "class_00" / "img_000.png").unlink()
    result = embed(image_folder, store_path, tiny_model)
    assert result.removed == 1 and result.rows == 11
    assert not (store_path / "_lock").exists()


def test_half_written_lock_file(tmp_path):
    store_path = tmp_path / "s"
    store_path.mkdir()
    lock_file = store_path / "_lock"
    lock_file.write_text("")  # a process died between creating and writing it
    with pytest.raises(StoreLockedError):  # too fresh to judge: someone may be writing it now
        StoreLock(store_path, "test").acquire()
    old = time.time() - 60
    os.utime(lock_file, (old, old))
    lock = StoreLock(store_path, "test").acquire()
    assert json.loads(lock_file.read_text())["pid"] == os.getpid()
    with pytest.raises(StoreLockedError):
        # Our own pid is alive: a second writer in this process is refused too.
        StoreLock(store_path, "again").acquire()
    lock.release()
    assert not lock_file.exists()


def test_scan_folder(image_folder, tmp_path):
    (image_folder / "class_00" / "README").write_text("x")
    (image_folder / "class_00" / "UPPER.JPG").write_bytes(b"x")
    os.symlink(image_folder, image_folder / "class_01" / "loop")  # a symlink loop is cut
    scan = scan_folder(image_folder)
    names = [Path(f.path).name for f in scan.files]
    assert len(scan.files) == 13 and "UPPER.JPG" in names
    assert scan.ignored == 1
    assert [f.path for f in scan.files] == sorted(f.path for f in scan.files)
    assert all(Path(f.path).is_absolute() for f in scan.files)
    assert {f.label for f in scan.files} == {"class_00", "class_01", "class_02"}


# --- killed runs ------------------------------------------------------------------------------

# Runs the real CLI, but writes a part for every batch and sleeps after each part write,
# so a kill lands while parts are being written.
SLOW_FLUSHING_CLI = """
import os, sys, time
os.environ["VECMETRIC_FLUSH_ROWS"] = "4"  # one part per batch of 4
from vecmetric.store import Store
_append = Store.append
def slow_append(self, rows):
    out = _append(self, rows)
    time.sleep(0.05)
    return out
Store.append = slow_append
sys.argv = ["vecmetric", *sys.argv[1:]]
from vecmetric.cli import main
main()
"""


def wait_for(predicate, proc, timeout=90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the embed finished before it could be killed (rc {proc.returncode}): {err[-2000:]}")
        time.sleep(0.01)
    proc.kill()
    pytest.fail("timed out waiting for the embed to make progress")


@pytest.fixture
def many_images(tmp_path, make_images):
    make_images(tmp_path / "many", classes=5, per_class=40, size=40, seed=3)
    return tmp_path / "many"


def embed_args(folder, store, model):
    return ["embed", str(folder), "--store", str(store), "--model", model, "--batch-size", "4", "--workers", "0", "--precision", "fp32", "--device", "cpu", "--quiet"]


def assert_same_store(store_path, reference_path):
    got, want = rows_by_path(store_path), rows_by_path(reference_path)  # each asserts unique paths
    assert got.keys() == want.keys()
    ids = [r["id"] for r in got.values()]
    assert len(set(ids)) == len(ids)
    for path in want:
        np.testing.assert_allclose(got[path]["vector"], want[path]["vector"], atol=1e-5)
        assert got[path]["content_hash"] == want[path]["content_hash"]


@pytest.mark.slow
def test_resume_after_kill_matches_an_uninterrupted_run(many_images, tmp_path, small_model):
    reference = tmp_path / "reference"
    assert embed(many_images, reference, small_model).rows == 200

    store_path = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_FLUSHING_CLI, *embed_args(many_images, store_path, small_model)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: store_path.is_dir() and len(list(store_path.glob("part-*.parquet"))) >= 3, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL

    # The store is readable as it was left: whole parts only, no duplicates, a lock of a dead process.
    store = open_store(store_path)
    done = store.count()
    assert 12 <= done < 200
    assert len(rows_by_path(store_path)) == done
    assert json.loads((store_path / "_lock").read_text())["pid"] == proc.pid

    # The next run takes over the dead process's lock and embeds only the rest.
    resumed = embed(many_images, store_path, small_model, batch_size=4)
    assert resumed.unchanged == done
    assert resumed.embedded + resumed.reused == 200 - done
    assert resumed.rows == 200
    assert_same_store(store_path, reference)
    assert not (store_path / "_lock").exists()
    assert open_store(store_path).manifest["next_id"] >= 200


@pytest.mark.slow
def test_ctrl_c_exits_130_and_the_next_run_completes(many_images, tmp_path, small_model):
    reference = tmp_path / "reference"
    embed(many_images, reference, small_model)

    store_path = tmp_path / "interrupted"
    args = [sys.executable, "-c", SLOW_FLUSHING_CLI, *embed_args(many_images, store_path, small_model)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: store_path.is_dir() and len(list(store_path.glob("part-*.parquet"))) >= 2, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Interrupted" in err and "Traceback" not in err
    assert not (store_path / "_lock").exists()  # released on the way out
    done = open_store(store_path).count()
    assert 8 <= done < 200  # flushed work is kept

    result = embed(many_images, store_path, small_model)
    assert result.unchanged == done and result.rows == 200
    assert_same_store(store_path, reference)
