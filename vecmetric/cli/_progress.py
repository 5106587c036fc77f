"""``RichReporter``: the library's progress protocol drawn as a rich progress bar on stderr."""

from __future__ import annotations

from typing import Any

from ..progress import Reporter
from ._common import escape, stderr, warn


class RichReporter(Reporter):
    """A bar per phase with count, rate, elapsed time and ETA; log lines print above it.

    The bar appears at the first ``start``, so work that turns out to be unnecessary (or fails
    early) prints nothing. ``quiet`` hides the bar and log lines but keeps warnings.

    Args:
        unit: what is counted, for the rate (``images``, ``vectors``, ``steps``).
        quiet: draw no bar and print no log lines.
        transient: remove the bar when it stops (training draws one per epoch).
    """

    def __init__(self, unit: str = "images", quiet: bool = False, transient: bool = False):
        self.unit = unit
        self.quiet = quiet
        self.transient = transient
        self._bar = None
        self._task = None
        self._fields: dict[str, Any] = {}

    def _ensure_bar(self):
        if self._bar is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[figures]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=stderr.get(),
                transient=self.transient,
            )
            self._bar.start()
        return self._bar

    def start(self, task: str, total: int | None = None) -> None:
        if self.quiet:
            return
        bar = self._ensure_bar()
        if self._task is not None:
            bar.remove_task(self._task)
        self._task = bar.add_task(task, total=total, figures="")
        self._fields = {}

    def advance(self, n: int = 1, **fields: Any) -> None:
        if self._bar is None or self._task is None:
            return
        self._bar.advance(self._task, n)
        self._fields.update(fields)
        figures = [f"{key} {value:.4f}" for key, value in self._fields.items()]
        speed = next(task.speed for task in self._bar.tasks if task.id == self._task)
        if speed:
            figures.append(f"{speed:,.1f} {self.unit}/s")
        self._bar.update(self._task, figures="  ".join(figures))

    def log(self, message: str) -> None:
        if self.quiet:
            return
        console = self._bar.console if self._bar is not None else stderr
        console.print(escape(message), highlight=False, soft_wrap=True)

    def warn(self, message: str) -> None:
        if self._bar is not None:
            self._bar.console.print(f"[yellow]Warning:[/yellow] {escape(message)}", highlight=False, soft_wrap=True)
        else:
            warn(message)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
            self._task = None

    def __enter__(self) -> "RichReporter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
