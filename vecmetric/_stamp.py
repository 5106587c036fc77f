"""``FolderStamp``: proof, from a few ``stat`` calls, that folders are as they were when last read.

Every write vecmetric commits renames a file into a store's folder or its ``_index`` folder (new
parts, rewritten parts, a new index generation), and a rename changes the folder's mtime. So a
reader that kept what it read need not list the folder again while the mtimes stay the same.
One catch: file systems stamp times from a coarse clock (a few milliseconds; seconds on some), so
a change in the same tick as the reading could leave an mtime as it was. An mtime is therefore
trusted only once it is older than ``SETTLED_NS`` at the time of the reading (git's "racy"
index entries are the same problem, solved the same way).
"""

from __future__ import annotations

import os
import time

__all__ = ["FolderStamp", "SETTLED_NS"]

SETTLED_NS = 2_000_000_000


class FolderStamp:
    """The mtimes and inodes of some folders, and whether they prove that nothing changed.

    Args:
        folders: the folders to watch (a missing one counts as a stamp of its own).

    Use: ``if stamp.unchanged(): return``; otherwise ``taken = stamp.take()``, read everything,
    then ``stamp.settle(taken)``.
    """

    def __init__(self, *folders):
        self.folders = [os.fspath(f) for f in folders]
        self._settled: tuple | None = None

    def take(self) -> tuple:
        """``(time of the reading, ((mtime_ns, inode) or None per folder))``."""
        now = time.time_ns()
        stats = []
        for folder in self.folders:
            try:
                st = os.stat(folder)
                stats.append((st.st_mtime_ns, st.st_ino))
            except OSError:
                stats.append(None)
        return now, tuple(stats)

    def settle(self, taken: tuple) -> None:
        """Remember ``taken`` (from before the reading) as proof for later, if its mtimes are old enough to prove anything."""
        now, stats = taken
        newest = max((s[0] for s in stats if s is not None), default=0)
        self._settled = stats if now - newest > SETTLED_NS else None

    def forget(self) -> None:
        """The next ``unchanged`` says False (what was read is no longer trusted)."""
        self._settled = None

    def unchanged(self) -> bool:
        """Whether the folders are provably as they were at the last settled reading."""
        return self._settled is not None and self.take()[1] == self._settled
