"""The embed planner: compare a folder with the store and decide what to keep, embed, relabel and remove.

Every engine gets the same plan, so the local and the Ray engine keep a store the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ._scan import FileEntry
from ._store import Store

__all__ = ["EmbedPlan", "plan_embed"]


@dataclass
class EmbedPlan:
    """What one embed run must do.

    Attributes:
        todo: files to embed (new, or changed since they were embedded).
        unchanged: files whose rows stay as they are.
        stale_ids: rows of changed files, and older duplicate rows of one path.
        missing_ids: rows of files under the folder that are gone.
        relabel: ``{row id: label}`` for unchanged rows whose label the label rule now gives otherwise
            (stores made before embed roots were recorded).
        known_hashes: content hashes of rows that stay (a file with one of them reuses its vector).
        next_id: the first row id to hand out.
    """

    todo: list[FileEntry]
    unchanged: int
    stale_ids: list[int]
    missing_ids: list[int]
    relabel: dict[int, str | None]
    known_hashes: set[str]
    next_id: int


def plan_embed(store: Store, files: list[FileEntry], root: Path) -> EmbedPlan:
    """Compare the files found under ``root`` (absolute) with the store's rows."""
    table = store.read_table(["id", "path", "size", "mtime_ns", "content_hash", "label"])
    columns = [table.column(name).to_pylist() for name in ("id", "path", "size", "mtime_ns", "content_hash", "label")]
    by_path: dict[str, tuple[int, int, int, str, str | None]] = {}
    stale: list[int] = []
    for row_id, path, size, mtime, digest, label in sorted(zip(*columns), key=lambda row: row[0]):
        if path in by_path:  # duplicate path (should not happen): keep the newest row
            stale.append(by_path[path][0])
        by_path[path] = (row_id, size, mtime, digest, label)
    on_disk = set()
    todo: list[FileEntry] = []
    relabel: dict[int, str | None] = {}
    unchanged = 0
    for entry in files:
        on_disk.add(entry.path)
        old = by_path.get(entry.path)
        if old is not None and old[1] == entry.size and old[2] == entry.mtime_ns:
            unchanged += 1
            if old[4] != entry.label:
                relabel[old[0]] = entry.label
            continue
        if old is not None:
            stale.append(old[0])
        todo.append(entry)
    prefix = str(root).rstrip(os.sep) + os.sep
    missing = [row[0] for path, row in by_path.items() if path.startswith(prefix) and path not in on_disk]
    stale_set = set(stale)
    known = {row[3] for row in by_path.values() if row[0] not in stale_set and row[3]}
    ids = columns[0]
    next_id = max(int(store.manifest.get("next_id", 0)), (max(ids) + 1) if ids else 0)
    return EmbedPlan(todo, unchanged, stale, missing, relabel, known, next_id)
