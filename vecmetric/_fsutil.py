"""Atomic file writes: write to a hidden temporary name, fsync, rename over the target."""

from __future__ import annotations

import json
import os
import signal
import uuid
from pathlib import Path
from typing import Any, Callable

# Fault injection for the crash-safety tests: "N:STAGE" kills this process with SIGKILL when
# its N-th atomic write (counting from 1) reaches STAGE ("written": the temporary file is
# complete but not renamed; "renamed": the file is in place). Unset in normal use.
FAULT_ENV = "VECMETRIC_FAULT_AT_WRITE"
_write_count = 0


def _fault_point(stage: str) -> None:
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    number, _, wanted = spec.partition(":")
    if wanted == stage and int(number) == _write_count:
        os.kill(os.getpid(), signal.SIGKILL)


def temp_path_for(path: Path) -> Path:
    """A hidden sibling name (``_`` prefix: pyarrow, Spark and DuckDB skip it) that names the writer's pid."""
    return path.with_name(f"_tmp-p{os.getpid()}-{uuid.uuid4().hex[:8]}-{path.name}.partial")


def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_dead_temporary(path: Path) -> bool:
    """True for a ``_tmp-*.partial`` file whose writer is gone (killed mid-write): debris.

    Names without a pid (older versions) count as dead: callers hold the store's lock.
    """
    name = path.name
    if not (name.startswith("_tmp-") and name.endswith(".partial")):
        return False
    tag = name[len("_tmp-") :].split("-", 1)[0]
    if tag.startswith("p") and tag[1:].isdigit():
        pid = int(tag[1:])
        return pid != os.getpid() and not pid_alive(pid)
    return True


def remove_dead_temporaries(folder: Path) -> int:
    """Delete the temporary files that killed writers left in ``folder``; returns how many.

    Call only while holding the store's lock (no other process writes then).
    """
    removed = 0
    try:
        candidates = list(Path(folder).glob("_tmp-*.partial"))
    except OSError:
        return 0
    for tmp in candidates:
        if is_dead_temporary(tmp):
            try:
                tmp.unlink()
                removed += 1
            except OSError:
                pass
    return removed


def fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> None:
    """Call ``write(tmp_path)``, fsync the result, then rename it to ``path`` in one step.

    A crash at any moment leaves either the old file or the new one, never a mix.
    """
    global _write_count
    _write_count += 1
    path = Path(path)
    tmp = temp_path_for(path)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        _fault_point("written")
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    fsync_dir(path.parent)
    _fault_point("renamed")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | os.PathLike, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def read_tagged_json(path: str | os.PathLike, fmt: str, error: type[Exception], what: str) -> dict[str, Any]:
    """A JSON object whose ``format`` is ``fmt`` (run descriptions, checkpoint configs).

    Raises:
        error: the file cannot be read or parsed, or it is not an object of that format.
    """
    try:
        doc = read_json(path)
    except (OSError, ValueError) as exc:
        raise error(f"cannot read {path}: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise error(f"{path} is not a vecmetric {what}")
    return doc
