"""Typed errors raised by the vecmetric library, and every exit code of the command line.

Every error carries the exit code the command line uses for it. The CLI prints
``Error: <message>`` in red on stderr and exits with ``exit_code``; it never shows a
traceback for these. ``EXIT_CODES`` lists every code the CLI can return, errors or not;
the root ``--help`` and the README print it.
"""

from __future__ import annotations

__all__ = [
    "EXIT_CODES",
    "PROBLEMS_REMAIN_EXIT_CODE",
    "INTERRUPTED_EXIT_CODE",
    "VecmetricError",
    "reason",
    "UsageError",
    "InputError",
    "EncoderError",
    "ExportError",
    "StoreError",
    "StoreMismatchError",
    "ManifestError",
    "StoreLockedError",
    "IndexStateError",
    "TrainError",
    "MoveError",
    "EngineError",
]


PROBLEMS_REMAIN_EXIT_CODE = 9  # verify found problems that remain (not an error: the report is the result)
INTERRUPTED_EXIT_CODE = 130  # Ctrl-C; work done so far is kept
ENGINE_EXIT_CODE = 10

EXIT_CODES = {
    0: "ok",
    1: "other error",
    2: "bad usage",
    3: "bad input",
    4: "model",
    5: "store",
    6: "index",
    7: "training",
    8: "store locked by another process",
    PROBLEMS_REMAIN_EXIT_CODE: "verify found problems that remain",
    ENGINE_EXIT_CODE: "Ray (--engine ray) missing, or its cluster failed",
    INTERRUPTED_EXIT_CODE: "interrupted",
}


class VecmetricError(Exception):
    """Base class of every error vecmetric raises for a user's mistake or a bad input."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class UsageError(VecmetricError):
    """Options that cannot go together, found after the command line was parsed."""

    exit_code = 2


class InputError(VecmetricError):
    """An input folder or file is missing, empty or unreadable."""

    exit_code = 3


class EncoderError(VecmetricError):
    """A model spec is unknown or its weights cannot be loaded."""

    exit_code = 4


class ExportError(EncoderError):
    """An exported (ONNX) query model is missing, failed, damaged or belongs to another model.

    Callers that can run the torch model instead catch this and fall back to it.
    """


class StoreError(VecmetricError):
    """A store is missing or damaged."""

    exit_code = 5


class StoreMismatchError(StoreError):
    """A store was made by another model, dimension or metric than the one asked for."""


class ManifestError(StoreError):
    """A store's manifest is lost or damaged while its data is there (``verify --repair`` rebuilds it)."""


class StoreLockedError(VecmetricError):
    """Another live process holds the store's lock."""

    exit_code = 8


class IndexStateError(VecmetricError):
    """An index is missing, damaged or out of step with its store."""

    exit_code = 6


class TrainError(VecmetricError):
    """Training data, options or the run folder cannot be used."""

    exit_code = 7


class MoveError(InputError):
    """Files cannot be set aside (or put back) as asked: a target inside an embed root, a target
    that cannot be written, a file that changed or is gone. Raised before anything moves."""
class EngineError(VecmetricError):
    """Ray is not installed for ``--engine ray`` (embed, index), or its cluster cannot be reached or run the job."""

    exit_code = ENGINE_EXIT_CODE


def reason(exc: BaseException, limit: int = 200) -> str:
    """A library exception as one line for an error message: its first non-empty line,
    shortened at a word boundary (with an ellipsis) when longer than ``limit`` characters."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0].rstrip(" ,;:.")
    return cut + "…"
