"""Typed errors raised by the vecmetric library.

Every error carries the exit code the command line uses for it, so the mapping
lives in one place. The CLI prints ``Error: <message>`` in red on stderr and
exits with ``exit_code``; it never shows a traceback for these.

Exit codes:
    1   any other VecmetricError
    2   bad command-line usage (typer/click's own code)
    3   InputError: a missing, empty or unreadable input folder or file
    4   EncoderError: unknown model spec, weights that cannot be loaded
    5   StoreError: a store that is missing, damaged or made by another model
    6   IndexStateError: an index that is missing, damaged or does not match its store
    7   TrainError: training data or a run folder that cannot be used
    8   StoreLockedError: another vecmetric process holds the store's lock
    9   EngineError: an embed engine is not installed, or its cluster cannot run the job
    130 interrupted with Ctrl-C (work done so far is kept)
"""

from __future__ import annotations

__all__ = [
    "VecmetricError",
    "InputError",
    "EncoderError",
    "StoreError",
    "StoreMismatchError",
    "ManifestError",
    "StoreLockedError",
    "IndexStateError",
    "TrainError",
    "EngineError",
]


class VecmetricError(Exception):
    """Base class of every error vecmetric raises for a user's mistake or a bad input."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class InputError(VecmetricError):
    """An input folder or file is missing, empty or unreadable."""

    exit_code = 3


class EncoderError(VecmetricError):
    """A model spec is unknown or its weights cannot be loaded."""

    exit_code = 4


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


class EngineError(VecmetricError):
    """An embed engine is not installed (Ray), or its cluster cannot be reached or run the job."""

    exit_code = 9
