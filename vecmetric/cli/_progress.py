"""A rich progress bar on stderr that the library drives through a ``progress(event, data)`` callback."""

from __future__ import annotations

import contextlib
from typing import Iterator

from ._common import escape, stderr


@contextlib.contextmanager
def progress_bar(description: str, unit: str = "images", quiet: bool = False) -> Iterator:
    """Yield a ``progress(event, data)`` callback showing items done, rate and ETA.

    The bar appears on the first ``start`` event, so work that turns out to be
    unnecessary (or fails early) prints nothing.
    """
    state: dict = {}

    def callback(event: str, data: dict) -> None:
        if quiet:
            return
        if event == "start":
            if "bar" not in state:
                from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

                bar = Progress(
                    TextColumn("[bold]{task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TaskProgressColumn(),
                    TextColumn("{task.fields[rate]}"),
                    TimeElapsedColumn(),
                    TextColumn("ETA"),
                    TimeRemainingColumn(),
                    console=stderr.get(),
                )
                bar.start()
                state["bar"], state["task"] = bar, bar.add_task(description, total=None, rate="")
            state["bar"].update(state["task"], total=data["total"])
        elif "bar" in state and event == "advance":
            bar, task = state["bar"], state["task"]
            bar.advance(task, data["n"])
            speed = bar.tasks[task].speed
            if speed:
                bar.update(task, rate=f"{speed:,.1f} {unit}/s")
        elif event == "log":
            console = state["bar"].console if "bar" in state else stderr
            console.print(f"[yellow]{escape(data['message'])}[/yellow]", highlight=False, soft_wrap=True)

    try:
        yield callback
    finally:
        if "bar" in state:
            state["bar"].stop()
