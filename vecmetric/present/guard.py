"""Decoding untrusted images inside a server: a byte cap, a pixel cap, a bound on concurrent
decodes, and a time limit that holds in any thread.

``vecmetric.images.time_limit`` uses SIGALRM, which Python delivers only to the main thread. A
thread with a deadline can stop *waiting*, but nothing stops the decode: Pillow's C code runs on,
holding a core and its memory, and an async exception is seen only between bytecodes. So the
guard decodes in worker processes; one that overruns is killed, which frees all it held, and
is replaced on next use. At most ``workers`` such processes exist, one decode each.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
from typing import Any, Callable

from ..images import MAX_PIXELS, ImageDecodeError
from .thumbnails import thumbnail_bytes

SERVER_MAX_BYTES = 20_000_000
SERVER_DECODE_SECONDS = 10.0
WORKER_START_SECONDS = 120.0  # a fresh interpreter importing Pillow on a loaded machine


class DecodeBusyError(ImageDecodeError):
    """Every worker stayed busy for ``wait_seconds``: the input may be fine, try again later."""


def _one_line(text: str) -> str:
    return " ".join(str(text).split()) or "decoding failed"


def _serve(fd: int) -> None:
    """A worker's loop: receive ``(func, data, args)``, send back ``(True, result)`` or ``(False, reason)``."""
    import signal
    from multiprocessing.connection import Connection

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    import PIL.Image  # noqa: F401  (before "ready", so its import is not charged to the first decode)

    conn = Connection(fd)
    conn.send("ready")
    while True:
        try:
            func, data, args = conn.recv()
        except (EOFError, OSError):
            return
        try:
            reply = (True, func(data, *args))
        except ImageDecodeError as exc:
            reply = (False, _one_line(exc))
        except Exception as exc:  # a worker must answer, whatever the image did to the decoder
            reply = (False, _one_line(f"{type(exc).__name__}: {exc}"))
        conn.send(reply)


class _Worker:
    """One decoding process, talking over a socket pair.

    A fresh interpreter (not multiprocessing's fork, which can deadlock a child of a threaded
    server, nor its spawn, which re-runs the parent's main script: a server script's top level).
    """

    def __init__(self):
        import socket
        import subprocess
        from multiprocessing.connection import Connection

        ours, theirs = socket.socketpair()
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        code = f"from vecmetric.present.guard import _serve; _serve({theirs.fileno()})"
        self.process = subprocess.Popen([sys.executable, "-c", code], pass_fds=[theirs.fileno()], env=env, stdin=subprocess.DEVNULL)
        theirs.close()
        self.conn = Connection(ours.detach())
        if not self.conn.poll(WORKER_START_SECONDS) or self._recv() != "ready":
            self.kill()
            raise ImageDecodeError("the decoder process did not start")

    def alive(self) -> bool:
        return self.process.poll() is None

    def _recv(self):
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            return None

    def call(self, func: Callable, data: bytes, args: tuple, seconds: float) -> Any:
        try:
            self.conn.send((func, data, args))
            answered = self.conn.poll(seconds)
        except OSError:  # the process died, or close() killed it
            self.kill()
            raise ImageDecodeError("the decoder process died") from None
        if not answered:
            self.kill()
            raise ImageDecodeError(f"decoding took longer than {seconds:g} s")
        reply = self._recv()
        if reply is None:
            self.kill()
            raise ImageDecodeError(f"the decoder process died (exit code {self.process.poll()})")
        ok, value = reply
        if not ok:
            raise ImageDecodeError(value)
        return value

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        self.conn.close()


class DecodeGuard:
    """Runs image decodes for a server under limits, in a small pool of worker processes.

    Args:
        max_bytes: larger inputs are refused before any decoding.
        max_pixels: larger images are refused from their header (decompression bombs).
        workers: at most this many decodes run at once (each in its own process).
        seconds: a decode that runs longer is stopped (its process killed).
        wait_seconds: how long a call waits for a free worker before it gives up (default: ``seconds``).

    Use it as a context manager, or call ``close()``, to end the workers.
    """

    def __init__(
        self,
        *,
        max_bytes: int = SERVER_MAX_BYTES,
        max_pixels: int = MAX_PIXELS,
        workers: int = 2,
        seconds: float = SERVER_DECODE_SECONDS,
        wait_seconds: float | None = None,
    ):
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self.max_bytes, self.max_pixels, self.workers, self.seconds = max_bytes, max_pixels, workers, seconds
        self.wait_seconds = seconds if wait_seconds is None else wait_seconds
        self._idle: queue.LifoQueue[_Worker | None] = queue.LifoQueue()
        for _ in range(workers):
            self._idle.put(None)  # started on first use
        self._live: set[_Worker] = set()
        self._lock = threading.Lock()
        self._closed = False

    def thumbnail(self, data: bytes, size: int, fmt: str = "JPEG") -> bytes:
        """``thumbnail_bytes(data, size, fmt)`` under the guard's limits.

        Raises:
            ImageDecodeError: over the byte or pixel cap, too slow, or not a usable image; the message is one line.
            DecodeBusyError: all workers stayed busy past ``wait_seconds`` (an ``ImageDecodeError`` too).
        """
        return self.run(thumbnail_bytes, data, size, fmt, self.max_pixels)

    def run(self, func: Callable, data: bytes, *args) -> Any:
        """``func(data, *args)`` in a worker process under the byte cap, time limit and concurrency bound.

        ``func`` must be a module-level function (it is pickled); its result must be picklable.
        The pixel cap is ``func``'s to apply (``thumbnail`` passes it on).

        Raises:
            ImageDecodeError: as ``thumbnail``.
        """
        if len(data) > self.max_bytes:
            raise ImageDecodeError(f"file too large: {len(data)} bytes is over the {self.max_bytes} byte limit")
        try:
            worker = self._idle.get(timeout=self.wait_seconds)
        except queue.Empty:
            raise DecodeBusyError(f"busy: {self.workers} decodes already running") from None
        try:
            if worker is not None and not worker.alive():
                self._forget(worker)
                worker = None
            if worker is None:
                if self._closed:
                    raise ImageDecodeError("the decode guard is closed")
                worker = _Worker()
                with self._lock:
                    self._live.add(worker)
            try:
                return worker.call(func, data, args, self.seconds)
            except ImageDecodeError:
                if not worker.alive():
                    self._forget(worker)
                    worker = None
                raise
        finally:
            if worker is not None and self._closed:
                self._forget(worker)
                worker.kill()
                worker = None
            self._idle.put(worker)

    def _forget(self, worker: _Worker) -> None:
        with self._lock:
            self._live.discard(worker)

    def close(self) -> None:
        """End every worker, busy or idle; calls in flight fail with ImageDecodeError."""
        self._closed = True
        drained = 0
        while True:
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                break
            drained += 1
            if worker is not None:
                self._forget(worker)
                worker.kill()
        for _ in range(drained):
            self._idle.put(None)  # later calls find a slot and learn that the guard is closed
        with self._lock:
            busy = list(self._live)
        for worker in busy:
            # Only the signal: the calling thread owns the connection, sees it end, and cleans up.
            worker.process.kill()

    def __enter__(self) -> "DecodeGuard":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
