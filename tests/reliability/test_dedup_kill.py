"""``dedup --move-to`` killed at each of its writes: ``--undo LOG`` or ``verify --repair`` recovers.

The kill points come from ``VECMETRIC_FAULT_AT_WRITE`` (``vecmetric._fsutil``): the process kills itself
with SIGKILL at its N-th atomic write, so no timing is involved. With the index current, the move's
writes are, in order: 1 the saved rows, 2 the log (``moving``), 3 the log (``moved``, after every file
moved), 4 the first Parquet part rewritten without the moved rows.
"""

from __future__ import annotations

import os

import pytest
from _helpers import PLANTED_THRESHOLD, file_snapshot, parquet_rows

from vecmetric._fsutil import FAULT_ENV
from vecmetric.dedup import read_move_log, undo_store_moves
from vecmetric.index import build_index
from vecmetric.store import open_store
from vecmetric.verify import verify_store


@pytest.mark.parametrize(
    "kill_at, recover, files_moved",
    [
        ("1:renamed", None, False),  # rows saved, no log yet: nothing moved, nothing to undo
        ("2:renamed", "undo", False),  # the log written, no file moved yet
        ("3:written", "undo", True),  # every file moved, the log still says "moving", the rows still in the store
        ("3:written", "repair", True),  # ... or verify --repair finishes the move (drops the rows of the moved files)
        ("4:renamed", "undo", True),  # the rows deleted from the store, its manifest and index not yet updated
    ],
)
def test_a_move_killed_at_a_write_is_recovered(planted_store, tmp_path, run_vecmetric, kill_at, recover, files_moved):
    photos, store, truth = planted_store
    build_index(open_store(store))  # so that the move's writes are the first the process makes
    files_before, rows_before = file_snapshot(photos), parquet_rows(store)
    moved_paths = {p for g in truth for p in g[1:]}
    aside = tmp_path / "aside"
    killed = run_vecmetric("dedup", "--store", str(store), "--threshold", str(PLANTED_THRESHOLD), "--move-to", str(aside), env={**os.environ, FAULT_ENV: kill_at})
    assert killed.returncode == -9, killed.stderr[-2000:]
    still_there = set(file_snapshot(photos))
    assert (still_there == set(files_before)) is not files_moved
    logs = sorted(aside.glob("vecmetric-dedup-*.json"))
    if recover is None:
        assert logs == [] and file_snapshot(photos) == files_before and parquet_rows(store).equals(rows_before)
    elif recover == "undo":
        undone = undo_store_moves(logs[0])
        assert read_move_log(logs[0])["state"] == "undone" and len(undone.moves) == (len(moved_paths) if files_moved else 0)
        assert file_snapshot(photos) == files_before
        assert parquet_rows(store).equals(rows_before)
    else:
        assert not verify_store(store).ok
        verify_store(store, repair=True)
        assert set(parquet_rows(store).column("path").to_pylist()) == set(rows_before.column("path").to_pylist()) - moved_paths
    report = verify_store(store, repair=True)  # clears the dead process's lock, if it is still there
    assert all(f.kind == "stale-lock" for f in report.findings), report.findings
    assert verify_store(store).ok and not verify_store(store).findings
