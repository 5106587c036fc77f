"""Damaged stores and indexes: detected with a message that says how to recover, and recovered."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from _reliability import assert_same_store, copy_store, embed_args, embed_in_process, make_gallery, one_error_line, rows_by_path

from vecmetric.errors import IndexStateError, ManifestError, StoreError
from vecmetric.index import build_index
from vecmetric.query import search_store
from vecmetric.store import open_store
from vecmetric.verify import verify_store


def kinds(report) -> list[str]:
    return sorted(f.kind for f in report.findings)


@pytest.fixture
def indexed(gallery, tmp_path):
    """A copy of the reference store, split over two parts, with a current index."""
    store = copy_store(gallery.reference, tmp_path / "store")
    st = open_store(store)
    table = st.read_table()
    for part in st.parts():
        part.unlink()
    st.append(table.slice(0, 4))
    st.append(table.slice(4))
    build_index(open_store(store))
    assert verify_store(store).findings == []
    return store


def queries_of(gallery) -> list[str]:
    return [str(p) for p in sorted(gallery.images.rglob("*.png"))]


def assert_search_finds_each_image_itself(store: Path, gallery) -> None:
    for hits in search_store(store, queries_of(gallery), k=1, device="cpu", keep_query_images=True):
        assert hits[0].path == hits[0].query and hits[0].distance < 1e-4, hits[0]


def test_truncated_part(cli, gallery, model32, indexed):
    part = open_store(indexed).parts()[1]
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])

    done = cli.run("search", queries_of(gallery)[0], "--store", indexed, "--exact")
    one_error_line(done, 5, "damaged Parquet file", "vecmetric verify --repair")
    done = cli.run(*embed_args(gallery.images, indexed, model32))
    one_error_line(done, 5, "damaged Parquet file", "vecmetric verify --repair")
    check = cli.run("verify", "--store", indexed)
    assert check.code == 9 and "damaged-part" in check.out
    assert "run 'vecmetric verify --repair'" in check.err

    repair = cli.run("verify", "--store", indexed, "--repair", "--json")
    assert repair.code == 0, repair.out + repair.err
    report = json.loads(repair.out)
    assert report["ok"] and "damaged-part" in {f["kind"] for f in report["findings"]}
    assert (indexed / "_quarantine" / part.name).is_file()  # set aside, never deleted
    assert open_store(indexed).count() == 4

    result = embed_in_process(gallery.images, indexed, model32)  # the lost rows come back
    assert result.embedded == 4 and result.rows == 8
    assert_same_store(indexed, gallery.reference)
    assert_search_finds_each_image_itself(indexed, gallery)
    assert verify_store(indexed).findings == []


@pytest.mark.parametrize("damage", ["deleted", "garbage", "not-json-object", "wrong-format"])
def test_lost_or_garbage_manifest_is_rebuilt_from_the_parts(cli, gallery, indexed, damage):
    manifest = indexed / "_manifest.json"
    original = json.loads(manifest.read_text())
    if damage == "deleted":
        manifest.unlink()
    elif damage == "garbage":
        manifest.write_bytes(b"\x00\xffnot json{{{")
    elif damage == "not-json-object":
        manifest.write_text("[1, 2, 3]")
    else:
        manifest.write_text(json.dumps({**original, "format": "something-else"}))

    with pytest.raises(ManifestError) as info:
        open_store(indexed)
    assert "verify --repair" in str(info.value)
    done = cli.run("info", "--store", indexed)
    one_error_line(done, 5, "verify --repair")
    with pytest.raises(StoreError):
        verify_store(indexed)  # without --repair: nothing to check against

    report = verify_store(indexed, repair=True)
    assert report.ok and "manifest" in kinds(report)
    rebuilt = open_store(indexed).manifest
    assert rebuilt["model"] == original["model"] and rebuilt["next_id"] >= 8 and rebuilt["counts"]["rows"] == 8
    assert_same_store(indexed, gallery.reference)
    assert_search_finds_each_image_itself(indexed, gallery)
    assert verify_store(indexed).findings == []


def test_manifest_counts_that_disagree_with_the_data(gallery, indexed):
    st = open_store(indexed)
    st.write_manifest(counts={"rows": 99}, next_id=3)
    report = verify_store(indexed)
    assert kinds(report) == ["manifest"] and not report.ok
    detail = report.findings[0].detail
    assert "says 99 rows, the data holds 8" in detail and "next_id 3 is below" in detail
    assert verify_store(indexed, repair=True).ok
    fixed = open_store(indexed).manifest
    assert fixed["counts"]["rows"] == 8 and fixed["next_id"] >= 8
    assert verify_store(indexed).findings == []


def test_index_of_a_store_of_another_model_is_rebuilt(gallery, indexed, model32, tmp_path, other_tiny_model):
    other = tmp_path / "other"
    make_gallery(tmp_path / "other-images", classes=1, per_class=3, seed=5)
    embed_in_process(tmp_path / "other-images", other, other_tiny_model)
    build_index(open_store(other))
    shutil.rmtree(indexed / "_index")
    shutil.copytree(other / "_index", indexed / "_index")

    report = verify_store(indexed)
    assert kinds(report) == ["index"] and not report.ok  # dimension 96, not 256
    assert_search_finds_each_image_itself(indexed, gallery)  # rebuilt automatically before searching
    assert verify_store(indexed).findings == []


def test_index_of_another_store_of_the_same_model_is_not_trusted(gallery, indexed, model32, tmp_path):
    """Same model, same row ids 0..N-1, different images: the index must not be 'updated' in place."""
    other = tmp_path / "other"
    make_gallery(tmp_path / "other-images", classes=2, per_class=4, seed=77)
    embed_in_process(tmp_path / "other-images", other, model32)
    build_index(open_store(other))
    assert sorted(rows_by_path(other)[p]["id"] for p in rows_by_path(other)) == list(range(8))
    shutil.rmtree(indexed / "_index")
    shutil.copytree(other / "_index", indexed / "_index")

    report = verify_store(indexed)
    assert kinds(report) == ["index"], report.findings
    assert_search_finds_each_image_itself(indexed, gallery)
    assert verify_store(indexed).findings == []

    shutil.rmtree(indexed / "_index")
    shutil.copytree(other / "_index", indexed / "_index")
    assert verify_store(indexed, repair=True).ok
    assert_search_finds_each_image_itself(indexed, gallery)


def test_sidecar_with_the_wrong_dimension(cli, gallery, indexed):
    sidecar = indexed / "_index" / "index.json"
    data = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**data, "dim": 128}))

    report = verify_store(indexed)
    assert kinds(report) == ["index"] and not report.ok
    check = cli.run("verify", "--store", indexed)
    assert check.code == 9 and "the index has dimension 128, the store 256" in check.out
    repair = cli.run("verify", "--store", indexed, "--repair")
    assert repair.code == 0 and "repaired index" in repair.out
    assert_search_finds_each_image_itself(indexed, gallery)
    assert verify_store(indexed).findings == []
    # search never queries it at the wrong dimension (which returned wrong neighbours): it rebuilds it first
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "dim": 128}))
    assert_search_finds_each_image_itself(indexed, gallery)
    assert verify_store(indexed).findings == []


def test_damaged_index_files(cli, gallery, indexed):
    from vecmetric.index import HnswIndex

    binary = next((indexed / "_index").glob("hnsw-*.bin"))
    binary.write_bytes(binary.read_bytes()[:100])
    with pytest.raises(IndexStateError, match="index --rebuild"):
        HnswIndex.load(indexed / "_index")
    report = verify_store(indexed)
    assert kinds(report) == ["index"] and "damaged" in report.findings[0].detail
    # search rebuilds a damaged index from the stored vectors before it answers
    done = cli.run("search", queries_of(gallery)[0], "--store", indexed, "--k", "1", "--json")
    assert done.code == 0 and json.loads(done.out)["rank"] == 1, done.err
    assert_search_finds_each_image_itself(indexed, gallery)
    binary = next((indexed / "_index").glob("hnsw-*.bin"))
    binary.write_bytes(b"\0" * 64)
    repair = cli.run("verify", "--store", indexed, "--repair")
    assert repair.code == 0 and "repaired index" in repair.out, repair.out
    assert verify_store(indexed).findings == []
