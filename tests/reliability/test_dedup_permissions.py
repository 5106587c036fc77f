"""``vecmetric dedup`` for someone who may not write: a read-only store with a current index is listed; a read-only
``--move-to`` folder, or a store that cannot be locked, is one ``Error:`` line with nothing moved.

Run as an unprivileged user (root ignores modes): the ``nobody`` fixture drops to one when the suite runs as root.
"""

from __future__ import annotations

import json

from _helpers import PLANTED_THRESHOLD, file_snapshot, one_error_line
from _reliability import give_to, readable_by_all

from vecmetric.index import build_index
from vecmetric.store import open_store


def test_dedup_lists_a_read_only_store_and_refuses_targets_it_cannot_write(cli, planted_store, tmp_path, nobody):
    photos, store, truth = planted_store
    build_index(open_store(store))
    readable_by_all(store)
    readable_by_all(photos)
    nobody.reach(store, photos)
    if nobody.uid is None:  # already unprivileged: read-only by mode
        for p in [store, *store.rglob("*")]:
            p.chmod(0o555 if p.is_dir() else 0o444)
    store_before = sorted((str(p), p.stat().st_mtime_ns) for p in store.rglob("*"))
    files_before = file_snapshot(photos)
    as_nobody = dict(user=nobody.uid, env=nobody.env)

    listed = cli.run("dedup", "--store", store, "--threshold", str(PLANTED_THRESHOLD), "--json", **as_nobody)
    assert listed.code == 0, listed.err
    assert {frozenset(f["path"] for f in json.loads(line)["files"]) for line in listed.out.splitlines()} == {frozenset(g) for g in truth}

    read_only = tmp_path / "read-only"
    read_only.mkdir()
    read_only.chmod(0o555)
    refused = cli.run("dedup", "--store", store, "--threshold", str(PLANTED_THRESHOLD), "--move-to", read_only, **as_nobody)
    one_error_line(refused, 3, f"cannot write to --move-to {read_only}", "Permission denied", "nothing was moved")

    writable = tmp_path / "writable"
    writable.mkdir()
    give_to(writable, nobody.uid)
    locked_out = cli.run("dedup", "--store", store, "--threshold", str(PLANTED_THRESHOLD), "--move-to", writable, **as_nobody)
    one_error_line(locked_out, 5, f"cannot write to store {store}", "Permission denied")

    assert file_snapshot(photos) == files_before
    assert sorted((str(p), p.stat().st_mtime_ns) for p in store.rglob("*")) == store_before
    assert list(read_only.iterdir()) == [] and list(writable.iterdir()) == []
