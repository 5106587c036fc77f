"""A store lock: one writer at a time, stale locks of dead processes recovered."""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from pathlib import Path

from .._fsutil import pid_alive, temp_path_for
from ..errors import StoreError, StoreLockedError

LOCK_NAME = "_lock"


class StoreLock:
    """An exclusive lock file holding the owner's pid, host and command.

    A second writer gets ``StoreLockedError`` at once (it does not wait), naming the owner.
    A lock left by a dead process on this host is taken over.
    """

    def __init__(self, folder: Path, purpose: str):
        self.path = Path(folder) / LOCK_NAME
        self.purpose = purpose
        self._held = False

    def acquire(self) -> "StoreLock":
        """Take the lock, or raise ``StoreLockedError`` naming the live owner."""
        for _ in range(3):
            if self._try_create():
                return self
            owner = self._read_owner()
            if owner is None or self.is_stale():
                self._remove_stale()
                continue
            raise self._locked_error(owner)
        raise StoreLockedError(f"could not take the lock {self.path}")

    def raise_if_held(self) -> None:
        """Raise ``StoreLockedError`` when another live process holds the lock (without taking it)."""
        owner = self._read_owner() if self.path.exists() else None
        mine = owner is not None and owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname()
        if owner is not None and not mine and not self.is_stale():
            raise self._locked_error(owner)

    def _locked_error(self, owner: dict) -> StoreLockedError:
        return StoreLockedError(
            f"store {self.path.parent} is in use by another vecmetric process "
            f"(pid {owner.get('pid')} on {owner.get('host')}, running {owner.get('purpose')})",
            hint=f"wait for it to finish; if that process is gone, delete {self.path}",
        )

    def _try_create(self) -> bool:
        """Create the lock file, with its owner already inside; False if it exists already.

        The owner is written to a temporary file that is then hard-linked to the lock's name (atomic,
        and it fails when the name exists), so no process ever sees an empty lock file, however long
        its owner is paused. Where the file system has no hard links, an exclusive create does.
        """
        owner = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "purpose": self.purpose, "since": time.time()})
        tmp = temp_path_for(self.path)
        try:
            tmp.write_text(owner)
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                return False
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
                    raise
                return self._create_exclusive(owner)
        except OSError as exc:
            raise StoreError(
                f"cannot write to store {self.path.parent}: {exc.strerror or exc}",
                hint="the store is read-only or missing: search works while its index is current; to change it, fix permissions",
            ) from None
        finally:
            tmp.unlink(missing_ok=True)
        self._held = True
        return True

    def _create_exclusive(self, owner: str) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as fh:
            fh.write(owner)
        self._held = True
        return True

    def is_stale(self) -> bool:
        """True when the lock file exists but its owner on this host is gone (or it is unreadable)."""
        if not self.path.exists():
            return False
        owner = self._read_owner()
        if owner is None:
            return True
        pid = owner.get("pid")
        return owner.get("host") == socket.gethostname() and isinstance(pid, int) and not pid_alive(pid)

    def _read_owner(self) -> dict | None:
        try:
            owner = json.loads(self.path.read_text())
            if not isinstance(owner, dict):
                raise ValueError("no owner")
            return owner
        except FileNotFoundError:
            return None  # released meanwhile: try again
        except (OSError, ValueError):
            # Half-written by a process killed while creating it: treat as stale if old enough.
            try:
                if time.time() - self.path.stat().st_mtime < 5:
                    return {"pid": "?", "host": "?", "purpose": "starting"}
            except OSError:
                pass
            return None

    def _remove_stale(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    def release(self) -> None:
        if self._held:
            self._held = False
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    def __enter__(self) -> "StoreLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
