"""Moving duplicates aside and back: paths kept relative to the embed root, bit-for-bit undo, refusals before any move."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from vecmetric.dedup import Group, Member, _move, move_duplicates, read_move_log, undo_moves
from vecmetric.errors import MoveError


@pytest.fixture
def library(tmp_path):
    """An embed root with nested files, and groups whose non-keepers are three of them."""
    root = tmp_path / "photos"
    files = {
        "2019/a.jpg": b"A" * 100,
        "2019/copies/a (1).jpg": b"A" * 100,
        "2020/b.png": b"B-original" * 50,
        "2020/b-small.png": b"B-small" * 20,
        "c.webp": b"C" * 33,
        "c-edit.webp": b"C-edit" * 7,
    }
    for i, (rel, data) in enumerate(sorted(files.items())):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, ns=(1_600_000_000_000_000_000 + i * 7_000_000_001, 1_500_000_000_000_000_000 + i * 3_000_000_007))
    ids = {rel: i for i, rel in enumerate(sorted(files))}

    def member(rel, keep):
        return Member(str(root / rel), ids[rel], 0.0 if keep else 0.1, keep)
    groups = [
        Group(0, "exact", [member("2019/a.jpg", True), member("2019/copies/a (1).jpg", False)]),
        Group(1, "near", [member("2020/b.png", True), member("2020/b-small.png", False)]),
        Group(2, "near", [member("c.webp", True), member("c-edit.webp", False)]),
    ]
    return root, groups


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``folder``: relative path -> (bytes, mtime in ns)."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


def test_move_keeps_paths_relative_to_the_root_and_undo_restores_every_file_bit_for_bit(library, tmp_path):
    root, groups = library
    before = snapshot(root)
    result = move_duplicates(groups, [root], tmp_path / "aside", extra={"store": "s"})
    moved = snapshot(tmp_path / "aside")
    assert {k: v for k, v in moved.items() if not k.endswith(".json")} == {
        rel: before[rel] for rel in ("2019/copies/a (1).jpg", "2020/b-small.png", "c-edit.webp")
    }
    assert set(snapshot(root)) == set(before) - {"2019/copies/a (1).jpg", "2020/b-small.png", "c-edit.webp"}
    log = read_move_log(result.log)
    assert result.log.parent == (tmp_path / "aside").resolve() and log["state"] == "moved" and log["store"] == "s"
    assert [Path(m["from"]).relative_to(root) for m in log["moves"]] == [Path("2019/copies/a (1).jpg"), Path("2020/b-small.png"), Path("c-edit.webp")]
    assert all(set(m) == {"from", "to", "size", "mtime_ns", "content_hash"} for m in log["moves"])  # paths, not row ids
    undone = undo_moves(result.log)
    assert len(undone.moves) == 3
    assert snapshot(root) == before
    assert [p.name for p in (tmp_path / "aside").iterdir()] == [result.log.name]  # the emptied folders went too
    assert read_move_log(result.log)["state"] == "undone"
    with pytest.raises(MoveError, match="undone already"):
        undo_moves(result.log)


@pytest.mark.parametrize("inside", ["photos", "photos/2020/aside"])
def test_a_target_inside_an_embed_root_is_refused_and_nothing_moves(library, tmp_path, inside):
    root, groups = library
    before = snapshot(root)
    with pytest.raises(MoveError, match="inside the embed root") as caught:
        move_duplicates(groups, [tmp_path / "elsewhere", root], tmp_path / inside)
    assert caught.value.exit_code == 3  # MoveError is an InputError
    assert snapshot(root) == before


def test_a_target_reached_through_a_link_into_the_root_is_refused(library, tmp_path):
    root, groups = library
    (tmp_path / "link").symlink_to(root / "2019")
    with pytest.raises(MoveError, match="inside the embed root"):
        move_duplicates(groups, [root], tmp_path / "link" / "aside")


def test_an_unwritable_target_is_refused_before_anything_moves(library, tmp_path):
    # A file where a folder is expected stops root too (chmod does not).
    root, groups = library
    (tmp_path / "not-a-folder").write_text("x")
    before = snapshot(root)
    with pytest.raises(MoveError, match="cannot write"):
        move_duplicates(groups, [root], tmp_path / "not-a-folder" / "aside")
    assert snapshot(root) == before


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders; the test above covers root")
def test_a_read_only_target_is_refused_before_anything_moves(library, tmp_path):
    root, groups = library
    target = tmp_path / "ro"
    target.mkdir()
    target.chmod(0o500)
    before = snapshot(root)
    try:
        with pytest.raises(MoveError, match="cannot write"):
            move_duplicates(groups, [root], target)
    finally:
        target.chmod(0o700)
    assert snapshot(root) == before


def test_a_failure_mid_way_puts_the_moved_files_back(library, tmp_path, monkeypatch):
    root, groups = library
    before = snapshot(root)
    real_move, calls = _move._move_file, []

    def failing(source, destination):
        calls.append(source)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real_move(source, destination)

    monkeypatch.setattr(_move, "_move_file", failing)
    with pytest.raises(MoveError, match="put back") as caught:
        move_duplicates(groups, [root], tmp_path / "aside", log_path=tmp_path / "log.json")
    assert str(calls[2]) in str(caught.value)  # the file whose move failed
    assert snapshot(root) == before
    assert json.loads((tmp_path / "log.json").read_text())["state"] == "rolled back"


def test_ctrl_c_mid_way_puts_the_moved_files_back(library, tmp_path, monkeypatch):
    root, groups = library
    before = snapshot(root)
    real_move, calls = _move._move_file, []

    def interrupted(source, destination):
        calls.append(source)
        if len(calls) == 3:
            raise KeyboardInterrupt
        real_move(source, destination)

    monkeypatch.setattr(_move, "_move_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        move_duplicates(groups, [root], tmp_path / "aside", log_path=tmp_path / "log.json")
    assert snapshot(root) == before
    assert json.loads((tmp_path / "log.json").read_text())["state"] == "rolled back"


def test_a_file_outside_every_root_or_a_taken_destination_is_refused(library, tmp_path):
    root, groups = library
    before = snapshot(root)
    with pytest.raises(MoveError, match="not under any embed root"):
        move_duplicates(groups, [root / "2020"], tmp_path / "aside")
    (tmp_path / "aside2" / "2020").mkdir(parents=True)
    (tmp_path / "aside2" / "2020" / "b-small.png").write_bytes(b"someone else's")
    with pytest.raises(MoveError, match="already exists"):
        move_duplicates(groups, [root], tmp_path / "aside2")
    assert snapshot(root) == before


def test_undo_refuses_a_changed_file_and_moves_nothing_back(library, tmp_path):
    root, groups = library
    result = move_duplicates(groups, [root], tmp_path / "aside")
    (tmp_path / "aside" / "c-edit.webp").write_bytes(b"changed")
    with pytest.raises(MoveError, match="changed since"):
        undo_moves(result.log)
    assert not (root / "2020" / "b-small.png").exists()
    with pytest.raises(MoveError, match="not a vecmetric dedup move log"):
        (tmp_path / "other.json").write_text("{}")
        undo_moves(tmp_path / "other.json")


def test_files_reached_through_a_linked_folder_keep_their_walked_path(tmp_path):
    outside = tmp_path / "elsewhere" / "album"
    outside.mkdir(parents=True)
    (outside / "a.jpg").write_bytes(b"a")
    (outside / "a-copy.jpg").write_bytes(b"a")
    root = tmp_path / "photos"
    root.mkdir()
    (root / "linked").symlink_to(outside)  # embed follows linked folders and records these paths
    groups = [Group(0, "exact", [Member(str(root / "linked" / "a.jpg"), 0, 0.0, True), Member(str(root / "linked" / "a-copy.jpg"), 1, 0.0, False)])]
    result = move_duplicates(groups, [root], tmp_path / "aside")
    assert result.moves == [(str(root / "linked" / "a-copy.jpg"), str((tmp_path / "aside").resolve() / "linked" / "a-copy.jpg"))]
    undo_moves(result.log)
    assert (outside / "a-copy.jpg").read_bytes() == b"a"


def test_an_undo_interrupted_mid_way_can_be_run_again(library, tmp_path, monkeypatch):
    root, groups = library
    before = snapshot(root)
    result = move_duplicates(groups, [root], tmp_path / "aside")
    real_move, calls = _move._move_file, []

    def interrupted(source, destination):
        calls.append(source)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C (or a kill) after the first file is back
        real_move(source, destination)

    monkeypatch.setattr(_move, "_move_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        undo_moves(result.log)
    assert read_move_log(result.log)["state"] == "moved" and snapshot(root) != before
    monkeypatch.setattr(_move, "_move_file", real_move)
    assert len(undo_moves(result.log).moves) == 2  # the file already back is recognised by its bytes
    assert snapshot(root) == before
