"""What the libraries under vecmetric say (open_clip, timm, huggingface_hub, torch, Ray): quiet by default.

vecmetric reports in its own words (one ``Error:`` line, warnings about the input); the log lines
and Python warnings of the libraries it calls would repeat or contradict that (a failed download
logged before the error, retry warnings with URLs). ``vecmetric --verbose COMMAND`` shows them,
each prefixed with the name of the library that said it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
from typing import Iterator

__all__ = ["configure_logging", "quiet_native_logs"]

_QUIET_ENV = {
    "HF_HUB_VERBOSITY": "error",  # huggingface_hub has a handler of its own: it must be told before it is imported
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "RAY_DATA_LOG_LEVEL": "WARNING",
    "RAY_LOG_TO_DRIVER": "0",  # what Ray's workers print stays in their log files
}
# A log line of a native library on the process's stderr: Ray's C++ core (spdlog/glog style,
# "[2026-01-31 12:00:00,123 E 4242 4242] core_worker.cc:2465: ..."). Fatal lines ("F") are kept.
_NATIVE_LOG_LINE = re.compile(rb"^(\x1b\[[0-9;]*m)*(\(\w+\)\s*)?(\x1b\[[0-9;]*m)*\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [DIWE] \d+ \d+\] ")
_state = {"verbose": False}


def configure_logging(verbose: bool) -> None:
    """Route library logging and warnings: swallowed unless ``verbose``, then printed to stderr with their source."""
    _state["verbose"] = verbose
    logging.captureWarnings(True)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_vecmetric", False):
            root.removeHandler(handler)
    if verbose:
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        root.setLevel(logging.INFO)
    else:
        for name, value in _QUIET_ENV.items():
            os.environ.setdefault(name, value)
        handler = logging.NullHandler()  # stands in for logging's last-resort stderr handler
        root.setLevel(logging.CRITICAL)
    handler._vecmetric = True  # type: ignore[attr-defined]
    root.addHandler(handler)


@contextlib.contextmanager
def quiet_native_logs() -> Iterator[None]:
    """Drop what native code logs straight to file descriptor 2 (Ray's C++ core), unless ``--verbose``.

    Ray's driver-side C++ logs advice at ERROR level on stderr (for instance that Ray Data's actors have
    constructor arguments in the object store, on every run); Python logging cannot reach it. Inside
    this context fd 2 is a pipe read by a thread that passes every other line on, while Python's
    ``sys.stderr`` (progress bars, vecmetric's messages) writes to the real stderr directly, so a
    terminal stays a terminal.
    """
    if _state["verbose"]:
        yield
        return
    sys.stderr.flush()
    real = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    python_stderr = sys.stderr
    sys.stderr = os.fdopen(os.dup(real), "w", buffering=1, encoding=getattr(python_stderr, "encoding", None) or "utf-8", errors="backslashreplace")
    pump = threading.Thread(target=_pass_on, args=(read_end, os.dup(real)), name="vecmetric-native-log-filter", daemon=True)
    pump.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        sys.stderr.close()
        sys.stderr = python_stderr
        os.dup2(real, 2)  # the pipe's last write end closes: the pump reads to the end and stops
        pump.join(timeout=5)
        os.close(real)


def _pass_on(read_end: int, target: int) -> None:
    """Copy lines from ``read_end`` to ``target`` (both closed at the end), leaving out native log lines."""
    with os.fdopen(read_end, "rb") as lines, os.fdopen(target, "wb", buffering=0) as out:
        for line in lines:
            if not _NATIVE_LOG_LINE.match(line):
                out.write(line)
