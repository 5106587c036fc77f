"""One progress protocol for every long library call (embed, index, train, eval).

A ``Reporter`` receives what a call is doing; the base class shows nothing (warnings go
to Python's ``warnings``), so the library stays quiet when used from Python. The CLI's
subclass draws a rich progress bar on stderr.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Reporter", "SilentReporter", "reporter_or_default"]


class Reporter:
    """Receives progress; every method is a no-op here except ``warn``.

    The calls, in order: ``start`` opens a phase (a description and, when known, how many
    units it has), ``advance`` counts units done (``fields`` are figures to show beside the
    bar, e.g. ``loss``), ``finished`` hands over a phase's summary (a training epoch's record),
    ``log`` and ``warn`` print a line; ``close`` ends the reporting.
    """

    def start(self, task: str, total: int | None = None) -> None:
        """A phase begins: ``task`` describes it, ``total`` counts its units (None: unknown)."""

    def advance(self, n: int = 1, **fields: Any) -> None:
        """``n`` more units of the current phase are done."""

    def finished(self, task: str, summary: dict[str, Any]) -> None:
        """A phase ended with these figures (e.g. ``task="epoch"`` and the epoch's record)."""

    def log(self, message: str) -> None:
        """An informational line."""

    def warn(self, message: str) -> None:
        """Something the user should know; the work goes on."""
        import warnings

        warnings.warn(message, stacklevel=2)

    def close(self) -> None:
        """No more progress will come."""


class SilentReporter(Reporter):
    """Reports nothing, warnings included (DDP's other ranks: rank zero reports for all)."""

    def warn(self, message: str) -> None:
        pass


def reporter_or_default(reporter: Reporter | None) -> Reporter:
    """``reporter``, or the quiet base ``Reporter`` when None."""
    return reporter if reporter is not None else Reporter()
