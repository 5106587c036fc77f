"""Setting duplicates aside: move the non-keepers to a folder, log every move, and undo from the log.

Nothing is ever deleted or overwritten. The log is JSON (``MOVE_LOG_FORMAT``), written
atomically before the first move and again after the last, and holds paths, not row ids::

    {"format": "vecmetric-dedup-moves", "format_version": 1, "created_at": ..., "target": ...,
     "roots": [...], "state": "moved" | "undone",
     "moves": [{"from": ABS, "to": ABS, "size": ..., "mtime_ns": ..., "content_hash": ...}, ...],
     ...extra (e.g. "store", "rows_file": the removed rows, for the caller to restore)}

``content_hash`` is the store's hash of the file's bytes (``vecmetric.store``'s), taken at
move time: undo checks each file against it before it moves anything back.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from .._fsutil import atomic_write_json, read_json
from ..errors import MoveError

MOVE_LOG_FORMAT = "vecmetric-dedup-moves"


@dataclass
class MoveResult:
    """What a move or an undo did: the log, the (from, to) of each file, and the store rows it touched."""

    log: Path
    moves: list[tuple[str, str]] = field(default_factory=list)
    rows: int = 0  # store rows removed (a move) or restored (an undo), when a store took part


def _real(path: str | os.PathLike) -> Path:
    return Path(os.path.realpath(os.fspath(path)))


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _hash_file(path: Path) -> str:
    from ..store import content_hash

    return content_hash(path.read_bytes())


def check_target(target: str | os.PathLike, roots: Iterable[str | os.PathLike]) -> Path:
    """Create ``target`` if needed and prove it writable; refuse one inside an embed root.

    Returns:
        The target, resolved.

    Raises:
        MoveError: ``target`` is inside (or is) an embed root, or cannot be created or written.
    """
    import tempfile

    real = _real(target)
    for root in roots:
        if _is_within(real, _real(root)):
            raise MoveError(
                f"--move-to {target} is inside the embed root {root}",
                hint="choose a folder outside every folder the store embeds, or the moved files would be embedded again",
            )
    try:
        real.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".vecmetric-probe-", dir=real)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise MoveError(f"cannot write to --move-to {target}: {exc.strerror or exc}", hint="nothing was moved") from None
    return real


def _relative(source: Path, roots: list[Path]) -> Path | None:
    """``source`` relative to the deepest root holding it: as written (a store records paths walked
    through linked folders), else with every link resolved."""
    for candidate, bases in ((source, [Path(os.path.abspath(r)) for r in roots]), (_real(source), [_real(r) for r in roots])):
        holding = [b for b in bases if _is_within(candidate, b)]
        if holding:
            return candidate.relative_to(max(holding, key=lambda b: len(b.parts)))
    return None


def _plan(paths: list[str], roots: list[Path], target: Path) -> list[dict[str, Any]]:
    """Source and destination of each file, checked before anything moves."""
    plan, taken = [], set()
    for path in paths:
        source = Path(os.path.abspath(path))
        relative = _relative(source, roots)
        if relative is None:
            raise MoveError(f"{path} is not under any embed root of the store", hint="nothing was moved")
        destination = target / relative
        if not source.is_file():
            raise MoveError(f"{path} is gone or not a file", hint="run 'vecmetric embed' to update the store; nothing was moved")
        if destination.exists() or destination in taken:
            raise MoveError(f"{destination} already exists", hint="choose an empty --move-to folder; nothing was moved")
        taken.add(destination)
        st = source.stat()
        plan.append({"from": str(source), "to": str(destination), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "content_hash": _hash_file(source)})
    return plan


def _move_file(source: Path, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    if destination.exists():
        raise FileExistsError(str(destination))
    shutil.move(str(source), str(destination))  # a rename, or copy2 (bytes and times) + unlink across disks


def move_duplicates(groups, roots: Iterable[str | os.PathLike], target: str | os.PathLike, log_path: str | os.PathLike | None = None, extra: dict[str, Any] | None = None) -> MoveResult:
    """Move every non-keeper of ``groups`` under ``target``, keeping its path relative to its embed root.

    Everything is checked before the first move (target outside every root and writable,
    every file present and under a root, no destination taken); a move that still fails
    (disk full, say) or a Ctrl-C puts the files already moved back, so nothing is left half moved.

    Args:
        groups: ``Group`` objects (members with ``keep`` False are moved).
        roots: the embed roots the store records.
        target: the folder to move into (created if missing).
        log_path: where the JSON log goes (default ``target/vecmetric-dedup-<time>.json``).
        extra: more fields for the log (the caller's store path, the file of removed rows).

    Returns:
        A ``MoveResult`` with the log's path and each (from, to).

    Raises:
        MoveError: a check failed (nothing moved), or a move failed (the moved files put back).
    """
    root_list = [Path(r) for r in roots]
    real_target = check_target(target, root_list)
    paths = [m.path for g in groups for m in g.members if not m.keep]
    plan = _plan(paths, root_list, real_target)
    log = Path(log_path) if log_path else real_target / f"vecmetric-dedup-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.json"
    doc = {
        "format": MOVE_LOG_FORMAT,
        "format_version": 1,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "target": str(real_target),
        "roots": [os.path.abspath(r) for r in root_list],
        "state": "moving",
        **(extra or {}),
        "moves": plan,
    }
    try:
        atomic_write_json(log, doc)  # first, so a crash mid-way leaves a log to undo from
    except OSError as exc:
        raise MoveError(f"cannot write the move log {log}: {exc.strerror or exc}", hint="nothing was moved") from None
    done: list[dict[str, Any]] = []
    try:
        for step in plan:
            _move_file(Path(step["from"]), Path(step["to"]))
            done.append(step)
    except (OSError, KeyboardInterrupt) as exc:  # a full disk, or Ctrl-C: nothing is left half moved
        failed = step
        for back in reversed(done):
            _move_file(Path(back["to"]), Path(back["from"]))
        doc["state"] = "rolled back"
        atomic_write_json(log, doc)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise MoveError(f"moving {failed['from']} failed: {exc.strerror or exc}", hint="the files already moved were put back") from None
    doc["state"] = "moved"
    atomic_write_json(log, doc)
    return MoveResult(log, [(s["from"], s["to"]) for s in plan])


def read_move_log(log_path: str | os.PathLike) -> dict[str, Any]:
    """The move log at ``log_path``.

    Raises:
        MoveError: unreadable, or not a vecmetric dedup move log.
    """
    try:
        doc = read_json(log_path)
    except OSError as exc:
        raise MoveError(f"cannot read the move log {log_path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise MoveError(f"cannot read the move log {log_path}: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != MOVE_LOG_FORMAT or not isinstance(doc.get("moves"), list):
        raise MoveError(f"{log_path} is not a vecmetric dedup move log")
    return doc


def _undo_plan(doc: dict[str, Any], log_path) -> list[tuple[Path, Path]]:
    """The (moved file, its old place) pairs still to move back, every one checked first.

    A file already back in its old place with the bytes it was moved with is left out: it was
    never moved (a crash or a rollback mid-way) or an interrupted undo put it back already.
    """
    if doc.get("state") == "undone":
        raise MoveError(f"the moves in {log_path} were undone already")
    pending = []
    for step in doc["moves"]:
        source, destination = Path(step["to"]), Path(step["from"])
        if not source.is_file():
            if destination.is_file() and _hash_file(destination) == step["content_hash"]:
                continue
            raise MoveError(f"{source} is missing", hint="nothing was moved back")
        if _hash_file(source) != step["content_hash"]:
            raise MoveError(f"{source} changed since it was moved", hint="nothing was moved back")
        if destination.exists():
            raise MoveError(f"{destination} exists again", hint="move it away first; nothing was moved back")
        pending.append((source, destination))
    return pending


def undo_moves(log_path: str | os.PathLike, before_moving: Callable[[dict[str, Any], list[tuple[Path, Path]]], None] | None = None) -> MoveResult:
    """Put every file a ``move_duplicates`` log records back where it was, bit for bit.

    Checks first that each moved file is still there with the bytes it was moved with (its
    content hash) and that nothing has taken its old place; then moves them all back, removes
    the folders the moves left empty under the target, and marks the log ``undone`` (last, so
    an undo killed mid-way can be run again: files already back are recognised by their bytes).

    Args:
        log_path: the move log.
        before_moving: called with the log and the (moved file, old place) pairs after every
            check passed and before the first file moves (the store restores its rows there).

    Raises:
        MoveError: the log is unreadable or already undone, a moved file is missing or
            changed, or its old place is taken (nothing is moved back then).
    """
    doc = read_move_log(log_path)
    pending = _undo_plan(doc, log_path)
    if before_moving is not None:
        before_moving(doc, pending)
    for source, destination in pending:
        _move_file(source, destination)
    target = Path(doc["target"])
    for source, _ in pending:  # tidy the folders the moves created, deepest first, if empty
        for folder in source.parents:
            if folder == target or not _is_within(folder, target):
                break
            try:
                folder.rmdir()
            except OSError:
                break
    doc["state"] = "undone"
    doc["undone_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    atomic_write_json(log_path, doc)
    return MoveResult(Path(log_path), [(str(s), str(d)) for s, d in pending])
