"""Dedup through a real store: planted duplicates embedded by the tiny model, the index built when missing,
moves that take the rows along and bring them back with their ids and vectors, leaks between two stores.

Truths: the planted groups (by construction), and connected components recomputed with numpy from the
vectors read straight from the Parquet files.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from _helpers import PLANTED_THRESHOLD, fake_store, file_snapshot, parquet_rows, plant_duplicates

from vecmetric.dedup import dedup_store, move_store_duplicates, read_move_log, undo_store_moves
from vecmetric.errors import InputError, MoveError, StoreMismatchError, UsageError
from vecmetric.index import IndexStatus, build_index, index_status
from vecmetric.store import StoreLock, embed_directory, open_store
from vecmetric.verify import verify_store


def brute_groups(store: Path, threshold: float) -> set[frozenset[str]]:
    """Connected components (2+ rows) of exact cosine distance <= threshold or equal content hash."""
    rows = parquet_rows(store)
    v = np.stack(rows.column("embedding").to_numpy(zero_copy_only=False)).astype(np.float64)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    hashes = np.array(rows.column("content_hash").to_pylist())
    linked = (1 - v @ v.T <= threshold) | (hashes[:, None] == hashes[None, :])
    paths = rows.column("path").to_pylist()
    seen, out = set(), set()
    for start in range(len(paths)):
        if start in seen:
            continue
        comp, stack = set(), [start]
        while stack:
            i = stack.pop()
            if i not in comp:
                comp.add(i)
                stack.extend(np.flatnonzero(linked[i]).tolist())
        seen |= comp
        if len(comp) > 1:
            out.add(frozenset(paths[i] for i in comp))
    return out


@pytest.fixture
def library(planted_store):
    return planted_store


def as_sets(groups) -> set[frozenset[str]]:
    return {frozenset(m.path for m in g.members) for g in groups}


def test_planted_duplicates_are_found_with_their_groups_keepers_and_exact_distances(library):
    photos, store, truth = library
    assert index_status(open_store(store)).status is IndexStatus.MISSING
    found = dedup_store(store, threshold=PLANTED_THRESHOLD)
    assert index_status(open_store(store)).usable  # built first, as search does
    assert as_sets(found.groups) == {frozenset(g) for g in truth} == brute_groups(store, PLANTED_THRESHOLD)
    assert {g.keeper.path for g in found.groups} == {g[0] for g in truth}  # the originals are the oldest
    kinds = {g.keeper.path: g.kind for g in found.groups}
    assert [kinds[g[0]] for g in truth] == ["near"] * 4 + ["exact"]
    rows = parquet_rows(store)
    vectors = dict(zip(rows.column("path").to_pylist(), np.stack(rows.column("embedding").to_numpy(zero_copy_only=False))))

    def cosine_distance(a, b):
        return 1 - float(vectors[a] @ vectors[b]) / float(np.linalg.norm(vectors[a]) * np.linalg.norm(vectors[b]))

    for g in found.groups:
        assert [m.keep for m in g.members] == [True] + [False] * (len(g.members) - 1)
        for m in g.members:
            assert m.distance == pytest.approx(max(0.0, cosine_distance(g.keeper.path, m.path)), abs=1e-5)
            others = [cosine_distance(m.path, o.path) for o in g.members if o is not m]
            assert min(others) <= PLANTED_THRESHOLD  # every member has another within the threshold
    assert found.threshold_from == "given" and found.rows == 16 + 4 * 2 + 1


def test_byte_identical_files_are_grouped_even_at_threshold_zero(library):
    _, store, truth = library
    found = dedup_store(store, threshold=0)
    assert as_sets(found.groups) == {frozenset(truth[-1])}
    assert found.groups[0].kind == "exact" and [m.distance for m in found.groups[0].members] == [0.0, 0.0]


def test_auto_picks_a_threshold_between_the_copies_and_the_distinct_images(library):
    _, store, truth = library
    found = dedup_store(store)  # a model without a measured default: --auto
    assert found.threshold_from == "auto" and found.auto.method == "valley"
    assert 0.012 < found.threshold < 0.076  # the planted copies' largest distance, the distinct images' smallest
    assert as_sets(found.groups) == {frozenset(g) for g in truth}
    with pytest.raises(InputError, match="no measured default"):
        dedup_store(store, auto=False)


def test_a_read_only_store_with_a_current_index_is_searched_without_writing(library, monkeypatch):
    _, store, truth = library
    build_index(open_store(store))
    before = {p.name: p.stat().st_mtime_ns for p in store.rglob("*")}

    def read_only(self):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(StoreLock, "_try_create", read_only)  # any attempt to take the lock fails
    assert as_sets(dedup_store(store, threshold=PLANTED_THRESHOLD).groups) == {frozenset(g) for g in truth}
    assert {p.name: p.stat().st_mtime_ns for p in store.rglob("*")} == before


def test_move_then_undo_restores_every_file_bit_for_bit_and_the_rows_with_their_ids_and_vectors(library, tmp_path):
    photos, store, truth = library
    files_before, rows_before = file_snapshot(photos), parquet_rows(store)
    found = dedup_store(store, threshold=PLANTED_THRESHOLD)
    moved = move_store_duplicates(found, tmp_path / "aside")
    moved_paths = {p for g in truth for p in g[1:]}
    assert {src for src, _ in moved.moves} == moved_paths and moved.rows == len(moved_paths)
    assert set(file_snapshot(photos)) == {str(Path(p).relative_to(photos)) for p in set(parquet_rows(store).column("path").to_pylist())}
    assert set(parquet_rows(store).column("path").to_pylist()) == set(rows_before.column("path").to_pylist()) - moved_paths
    for src, dst in moved.moves:  # paths kept relative to the embed root
        assert Path(dst).relative_to((tmp_path / "aside").resolve()) == Path(src).relative_to(photos)
    log = read_move_log(moved.log)
    assert log["state"] == "moved" and "ids" not in log and all(set(m) == {"from", "to", "size", "mtime_ns", "content_hash"} for m in log["moves"])
    assert verify_store(store).ok and index_status(open_store(store)).usable

    undone = undo_store_moves(moved.log)
    assert len(undone.moves) == len(moved_paths) and undone.rows == len(moved_paths)
    assert file_snapshot(photos) == files_before
    assert parquet_rows(store).equals(rows_before)  # same ids, paths, hashes, labels and vectors
    manifest = open_store(store).manifest
    assert manifest["next_id"] > max(rows_before.column("id").to_pylist()) and manifest["counts"]["rows"] == rows_before.num_rows
    report = verify_store(store)
    assert report.ok and not report.findings
    assert index_status(open_store(store)).usable
    assert as_sets(dedup_store(store, threshold=PLANTED_THRESHOLD).groups) == {frozenset(g) for g in truth}


def test_undo_replaces_the_row_of_a_path_embedded_again_meanwhile(library, tmp_path, make_images):
    photos, store, truth = library
    moved = move_store_duplicates(dedup_store(store, threshold=PLANTED_THRESHOLD), tmp_path / "aside")
    saved = pq.read_table(read_move_log(moved.log)["rows_file"])
    saved_ids = dict(zip(saved.column("path").to_pylist(), saved.column("id").to_pylist()))
    reused = Path(truth[0][1])
    other = make_images(tmp_path / "other", classes=1, per_class=1, seed=9)[0]
    reused.write_bytes(other.read_bytes())  # a new file at a moved file's path, embedded, then gone again
    embed_directory(photos, store, workers=0)
    reused.unlink()
    stale_id = parquet_rows(store).column("id").to_pylist()[parquet_rows(store).column("path").to_pylist().index(str(reused))]
    assert stale_id != saved_ids[str(reused)]
    undo_store_moves(moved.log)
    rows = parquet_rows(store)
    paths = rows.column("path").to_pylist()
    assert paths.count(str(reused)) == 1  # the saved row describes the file put back; the other is gone
    assert rows.column("id").to_pylist()[paths.index(str(reused))] == saved_ids[str(reused)]
    assert stale_id not in rows.column("id").to_pylist()
    assert verify_store(store).ok


def test_a_store_without_embed_roots_refuses_to_move_and_says_how_to_record_them(library, tmp_path):
    photos, store, _ = library
    st = open_store(store)
    del st.manifest["roots"]
    st.write_manifest()
    before = file_snapshot(photos)
    with pytest.raises(MoveError, match="records no embed root") as caught:
        move_store_duplicates(dedup_store(store, threshold=PLANTED_THRESHOLD), tmp_path / "aside")
    assert "vecmetric embed FOLDER" in str(caught.value) and caught.value.exit_code == 3
    assert file_snapshot(photos) == before


def test_a_store_changed_since_the_search_is_not_moved(library, tmp_path, make_images):
    photos, store, _ = library
    found = dedup_store(store, threshold=PLANTED_THRESHOLD)
    make_images(photos / "late", classes=1, per_class=1, seed=5)
    embed_directory(photos, store, workers=0)
    before = file_snapshot(photos)
    with pytest.raises(MoveError, match="changed since"):
        move_store_duplicates(found, tmp_path / "aside")
    assert file_snapshot(photos) == before


def test_against_finds_the_planted_leaks_and_keeps_every_reference_row(tmp_path, make_images, small_model):
    images = make_images(tmp_path / "all", classes=16, per_class=1, size=64)
    train, test = tmp_path / "train", tmp_path / "test"
    for i, path in enumerate(images):  # classes 0-9 for training, 10-15 for testing
        destination = (train if i < 10 else test) / path.parent.name / path.name
        destination.parent.mkdir(parents=True)
        path.rename(destination)
    train_images = sorted(train.rglob("*.png"))
    leaks = set()
    for group in plant_duplicates(train_images, near=(1, 4), exact=(7,), copies_to=test / "leaked"):
        for copy in map(Path, group[1:]):  # every copy goes to the test folder
            leaked = copy if copy.parent == test / "leaked" else test / "leaked" / f"{copy.parent.name} {copy.name}"
            copy.rename(leaked)
            leaks.add((group[0], str(leaked)))
    embed_directory(train, tmp_path / "train-store", model=small_model, workers=0)
    embed_directory(test, tmp_path / "test-store", model=small_model, workers=0)
    found = dedup_store(tmp_path / "test-store", threshold=PLANTED_THRESHOLD, against=tmp_path / "train-store")
    assert {(g.keeper.path, m.path) for g in found.groups for m in g.members[1:]} == leaks
    assert all(m.keep == m.path.startswith(str(train)) for g in found.groups for m in g.members)
    assert found.against == str((tmp_path / "train-store").resolve())
    with pytest.raises(InputError, match="itself"):
        dedup_store(tmp_path / "test-store", against=tmp_path / "test-store")


def test_the_default_model_gets_its_measured_default_and_an_inner_product_store_needs_a_threshold(tmp_path, fake_encoder, write_rows):
    default = fake_store(tmp_path / "default", fake_encoder, write_rows, spec="default")
    found = dedup_store(default.path)
    assert found.threshold_from == "default" and found.threshold == 0.25
    ip = fake_store(tmp_path / "ip", fake_encoder, write_rows, metric="ip")
    with pytest.raises(InputError, match="inner-product store needs an explicit --threshold"):
        dedup_store(ip.path)
    with pytest.raises(InputError, match="explicit"):
        dedup_store(ip.path, auto=True)
    assert not (ip.path / "_index").exists()  # refused before any index was built
    assert dedup_store(ip.path, threshold=-5).threshold == -5  # 1 - inner product goes below 0


def test_against_a_store_of_another_model_is_refused(tmp_path, fake_encoder, write_rows):
    mine = fake_store(tmp_path / "mine", fake_encoder, write_rows)
    other = fake_store(tmp_path / "other", fake_encoder, write_rows, dim=16)
    with pytest.raises(StoreMismatchError, match="holds vectors of"):
        dedup_store(mine.path, threshold=0.1, against=other.path)


def test_bad_options_are_refused_before_the_index_is_built(library):
    _, store, _ = library
    for kwargs in (dict(threshold="x"), dict(threshold=-1), dict(threshold=2.5), dict(keep="best")):
        with pytest.raises(InputError):
            dedup_store(store, **kwargs)
    with pytest.raises(UsageError, match="cannot go together"):
        dedup_store(store, threshold=0.1, auto=True)
    assert not (store / "_index").exists()
    assert os.path.isdir(store)


def test_undo_into_a_store_embedded_again_from_scratch_gives_taken_ids_new_ones(library, tmp_path, small_model):
    import shutil

    photos, store, truth = library
    moved = move_store_duplicates(dedup_store(store, threshold=PLANTED_THRESHOLD), tmp_path / "aside")
    saved = pq.read_table(read_move_log(moved.log)["rows_file"])
    shutil.rmtree(store)
    embed_directory(photos, store, model=small_model, workers=0)  # ids start at 0 again: the saved ones are taken
    assert set(saved.column("id").to_pylist()) & set(parquet_rows(store).column("id").to_pylist())
    undone = undo_store_moves(moved.log)
    rows = parquet_rows(store)
    ids, paths = rows.column("id").to_pylist(), rows.column("path").to_pylist()
    assert undone.rows == saved.num_rows and len(set(ids)) == len(ids) == 25 and len(set(paths)) == 25
    vectors = dict(zip(paths, rows.column("embedding").to_pylist()))
    assert all(vectors[p] == v for p, v in zip(saved.column("path").to_pylist(), saved.column("embedding").to_pylist()))
    assert open_store(store).manifest["next_id"] > max(ids)
    assert verify_store(store).ok and as_sets(dedup_store(store, threshold=PLANTED_THRESHOLD).groups) == {frozenset(g) for g in truth}
