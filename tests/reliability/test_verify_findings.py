"""``vecmetric verify``: each kind of finding is detected, and repaired where that needs no re-embedding.

(Damaged parts, manifests and indexes: test_damaged_stores.py; stale locks: test_faults.py.)
"""

from __future__ import annotations

import json
import os
import shutil

import pytest
from _reliability import draw, embed_in_process, rows_by_path

from vecmetric.index import build_index
from vecmetric.store import open_store
from vecmetric.verify import verify_store


@pytest.fixture
def setup(gallery, tmp_path):
    """A private copy of the gallery, its store (with an index) and the store's rows."""
    images = tmp_path / "images"
    shutil.copytree(gallery.images, images)
    store = tmp_path / "store"
    return images, store


@pytest.fixture
def embedded(setup, model32):
    images, store = setup
    embed_in_process(images, store, model32)
    build_index(open_store(store))
    assert verify_store(store).findings == []
    return images, store


def verify_cli(cli, store, *extra):
    done = cli.run("verify", "--store", store, "--json", *extra)
    assert "Traceback" not in done.err and done.out.count("\n") == 1, done.err[-3000:]
    return done.code, json.loads(done.out)


def test_clean_store(cli, embedded):
    images, store = embedded
    code, report = verify_cli(cli, store)
    assert code == 0 and report["ok"] and report["rows"] == 8 and report["findings"] == []
    plain = cli.run("verify", "--store", store)
    assert plain.out.startswith("ok: 8 rows, 8 files checked, no problems")


def test_missing_files_are_orphaned_vectors(cli, embedded):
    images, store = embedded
    gone = images / "class_0" / "img_01.png"
    gone.unlink()
    code, report = verify_cli(cli, store)
    assert code == 9 and [f["kind"] for f in report["findings"]] == ["missing-file"]
    assert "1 rows point to files that no longer exist" in report["findings"][0]["detail"]
    assert report["findings"][0]["paths"] == [str(gone)]  # named, so the user can act on it
    assert f"    {gone}" in cli.run("verify", "--store", store).out.splitlines()
    assert verify_cli(cli, store, "--skip-files")[0] == 0  # not looked at

    code, report = verify_cli(cli, store, "--repair")
    assert code == 0 and report["findings"][0]["repaired"]
    assert str(gone) not in rows_by_path(store) and len(rows_by_path(store)) == 7
    assert verify_cli(cli, store)[0] == 0  # index updated too


def test_changed_files_are_reported_not_repaired(cli, embedded, model32):
    images, store = embedded
    changed = images / "class_1" / "img_02.png"
    draw(changed, seed=4242)
    code, report = verify_cli(cli, store, "--repair")
    assert code == 9
    finding = report["findings"][0]
    assert finding["kind"] == "changed-file" and not finding["repairable"] and not finding["repaired"]
    assert finding["paths"] == [str(changed)]
    assert "run 'vecmetric embed'" in finding["detail"]
    embed_in_process(images, store, model32)
    assert verify_cli(cli, store)[0] == 9  # the index is now out of step...
    assert verify_cli(cli, store, "--repair")[0] == 0  # ...which repair brings up to date
    assert verify_cli(cli, store)[0] == 0


def test_duplicate_rows(cli, embedded):
    images, store = embedded
    st = open_store(store)
    table = st.read_table()
    first = table.slice(0, 2)
    import pyarrow as pa

    next_id = st.manifest["next_id"]
    dup = first.set_column(0, "id", pa.array([next_id, next_id + 1], pa.int64()))
    st.write_manifest(next_id=next_id + 2, counts={"rows": 10})
    st.append(dup)
    code, report = verify_cli(cli, store)
    assert code == 9 and {f["kind"] for f in report["findings"]} >= {"duplicate-path"}
    code, report = verify_cli(cli, store, "--repair")
    assert code == 0, report
    rows = rows_by_path(store)  # unique again; the newest row of each path kept
    assert len(rows) == 8 and {rows[p]["id"] for p in first.column("path").to_pylist()} == {next_id, next_id + 1}


def test_duplicate_ids_need_a_person(cli, embedded):
    images, store = embedded
    st = open_store(store)
    row = st.read_table().slice(0, 1)
    import pyarrow as pa

    st.append(row.set_column(1, "path", pa.array([str(images / "class_0" / "img_03.png")])))
    code, report = verify_cli(cli, store, "--repair")
    assert code == 9 and "duplicate-id" in {f["kind"] for f in report["findings"] if not f["repaired"]}
    # Deleting "the older duplicate of img_03" by its id would also have deleted img_00's row.
    paths = open_store(store).read_table(["path"]).column("path").to_pylist()
    assert sorted(set(paths)) == sorted(str(p) for p in images.rglob("*.png")) and len(paths) == 9


def test_rows_of_another_model_are_reported(cli, embedded):
    images, store = embedded
    st = open_store(store)
    row = st.read_table().slice(0, 1)
    import pyarrow as pa

    row = row.set_column(0, "id", pa.array([st.manifest["next_id"]], pa.int64()))
    row = row.set_column(row.schema.get_field_index("model"), "model", pa.array(["someone-else"]))
    st.write_manifest(next_id=st.manifest["next_id"] + 1)
    st.append(row)
    code, report = verify_cli(cli, store)
    assert code == 9 and "foreign-model" in {f["kind"] for f in report["findings"]}


def test_leftover_temporary_files(cli, embedded):
    images, store = embedded
    dead = store / "_tmp-p999999999-0badc0de-part-000.parquet.partial"
    dead.write_bytes(b"half a part")
    dead_index = store / "_index" / "_tmp-0badc0de0bad-hnsw-1.bin.partial"  # older name, no pid
    dead_index.write_bytes(b"half an index")
    live = store / f"_tmp-p{os.getpid()}-c0ffee00-part-001.parquet.partial"  # a writer still at work
    live.write_bytes(b"being written")
    code, report = verify_cli(cli, store)
    assert code == 9 and [f["kind"] for f in report["findings"]] == ["temporary-file"]
    assert report["findings"][0]["paths"] == sorted([str(dead), str(dead_index)])  # the live writer's file is not one
    code, report = verify_cli(cli, store, "--repair")
    assert code == 0
    assert not dead.exists() and not dead_index.exists() and live.exists()


def test_index_out_of_step(cli, embedded, model32):
    images, store = embedded
    draw(images / "class_2" / "new.png", seed=5151)
    embed_in_process(images, store, model32)
    code, report = verify_cli(cli, store)
    assert code == 9 and report["findings"][0]["kind"] == "index" and "the index is stale" in report["findings"][0]["detail"]
    code, report = verify_cli(cli, store, "--repair")
    assert code == 0 and report["findings"][0]["repaired"]
    assert verify_cli(cli, store)[0] == 0


def test_verify_of_no_store(cli, tmp_path):
    done = cli.run("verify", "--store", tmp_path / "nothing")
    assert done.code == 5 and done.err.startswith("Error: no store at") and "Traceback" not in done.err


def test_many_files_listed_in_text_are_cut_with_a_count_and_all_in_json(cli, embedded):
    images, store = embedded
    gone = sorted(images.rglob("*.png"))[:7]
    for path in gone:
        path.unlink()
    code, report = verify_cli(cli, store)
    assert code == 9 and report["findings"][0]["paths"] == [str(p) for p in gone]
    text = cli.run("verify", "--store", store).out.splitlines()
    listed = [line.strip() for line in text if line.startswith("    /")]
    assert listed == [str(p) for p in gone[:5]]
    assert "    ... and 2 more (--json lists them all)" in text
