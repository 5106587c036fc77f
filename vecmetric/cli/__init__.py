"""The command-line interface: a thin layer over the Python API."""

from __future__ import annotations

import sys


def main() -> None:
    """Entry point of the ``vecmetric`` console script."""
    from ._app import app

    try:
        app()
    except SystemExit as exc:
        _exit(exc.code)
    _exit(0)


def _exit(code) -> None:
    """Exit with ``code``, skipping the interpreter's teardown once torch is loaded.

    Tearing down torch, timm and friends takes about a second of CPU (module dictionaries,
    garbage collection) after the work is done, every command, for nothing: the clean-up
    that matters (atexit handlers, which stop worker processes, run ``weakref.finalize``
    callbacks and flush logging) runs first, then the streams are flushed. Without torch,
    or with a non-daemon thread still running, the exit is the ordinary one.
    """
    import threading

    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    busy = any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread())
    if "torch" not in sys.modules or busy:
        sys.exit(code)
    import atexit
    import os

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken pipe: nothing left to say
            pass
    os._exit(code)


__all__ = ["main"]
