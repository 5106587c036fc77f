"""Walking an image folder: recursive, symlink-loop safe, hidden entries skipped."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..images import is_image_path
from ._labels import label_for


def content_hash(data: bytes) -> str:
    """The content hash a store keeps per row (renamed and duplicate files share it)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


@dataclass(frozen=True)
class FileEntry:
    """An image file found on disk: absolute path, size, modification time, label (see ``label_for``)."""

    path: str
    size: int
    mtime_ns: int
    label: str | None


@dataclass
class ScanResult:
    files: list[FileEntry]
    ignored: int  # files without an image extension
    problems: list[tuple[str, str]]  # (path, reason) for entries that could not be read


def scan_folder(folder: str | os.PathLike, label_root: str | os.PathLike | None = None) -> ScanResult:
    """List the image files under ``folder``, sorted by path.

    Follows symbolic links to folders once (loops are cut), skips names starting with
    ``.``, and reports unreadable subfolders and non-UTF-8 names as problems. Files are
    labelled by ``label_for`` below ``label_root`` (default: ``folder`` itself; a store passes
    its outermost embed root that holds ``folder``).

    Raises:
        InputError: ``folder`` is missing or not a folder.
    """
    root = Path(folder).expanduser()
    if not root.exists():
        raise InputError(f"folder {folder} does not exist")
    if not root.is_dir():
        raise InputError(f"{folder} is not a folder")
    root = root.resolve()
    labels_from = str(Path(label_root).resolve()) if label_root is not None else str(root)
    files: list[FileEntry] = []
    problems: list[tuple[str, str]] = []
    ignored = 0
    seen_dirs: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        current = stack.pop()
        try:
            st = current.stat()
        except OSError as exc:
            problems.append((str(current), f"cannot read folder: {exc.strerror or exc}"))
            continue
        if (st.st_dev, st.st_ino) in seen_dirs:
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        try:
            entries = list(os.scandir(current))
        except OSError as exc:
            problems.append((str(current), f"cannot read folder: {exc.strerror or exc}"))
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = os.path.join(current, entry.name)
            try:
                path.encode("utf-8")
            except UnicodeEncodeError:
                # Show the name's real bytes (\xe9), not Python's surrogate escapes (\udce9).
                problems.append((os.fsencode(path).decode("utf-8", "backslashreplace"), "file name is not valid UTF-8"))
                continue
            try:
                if entry.is_dir():
                    stack.append(Path(path))
                    continue
                if not is_image_path(entry.name):
                    ignored += 1
                    continue
                est = entry.stat()
            except OSError as exc:
                problems.append((path, f"cannot stat: {exc.strerror or exc}"))
                continue
            files.append(FileEntry(path, est.st_size, est.st_mtime_ns, label_for(path, labels_from)))
    files.sort(key=lambda f: f.path)
    return ScanResult(files, ignored, problems)
