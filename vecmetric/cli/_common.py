"""What every command shares: the stderr console, error handling, common options."""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

import typer

from ..errors import INTERRUPTED_EXIT_CODE, VecmetricError


class _LazyConsole:
    """A ``rich.console.Console`` made on first use: rich costs ~50 ms to import, which
    ``search --json`` (plain JSON lines, no bar) never needs."""

    def __init__(self, **kwargs: Any):
        self._kwargs = kwargs
        self._console = None

    def get(self):
        """The console itself (what rich's ``console=`` arguments need)."""
        if self._console is None:
            from rich.console import Console

            kwargs = dict(self._kwargs)
            if kwargs.pop("stdout_width", False):
                # When stdout is a file or pipe, don't wrap tables at 80 columns: paths are long.
                kwargs["width"] = None if sys.stdout.isatty() else 200
            self._console = Console(**kwargs)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.get(), name)


# Results go to stdout; progress, logs, warnings and errors to stderr.
stdout = _LazyConsole(highlight=False, soft_wrap=True, stdout_width=True)
stderr = _LazyConsole(stderr=True, highlight=False)


def escape(text: str) -> str:
    """``rich.markup.escape``, imported when first needed."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)

STORE_ENV = "VECMETRIC_STORE"
DEFAULT_STORE = "vecmetric-store"

StoreOption = typer.Option(
    None,
    "--store",
    "-s",
    help=f"Store folder. (default: ${STORE_ENV} or ./{DEFAULT_STORE})",
    show_default=False,
)
DeviceOption = typer.Option("auto", "--device", help="auto (CUDA, then Apple MPS, then CPU), cpu, cuda, cuda:N or mps.")
JsonOption = typer.Option(False, "--json", help="Print one JSON object per line instead of a table.")
AllowPickleOption = typer.Option(
    False,
    "--allow-pickle-files",
    help="Accept a checkpoint folder that also holds pickle files (.pt, .pth, .bin, .ckpt). They are never read; only safetensors + JSON are.",
)


def store_path(store: Path | None) -> Path:
    """The store folder: ``--store``, else ``$VECMETRIC_STORE``, else ``./vecmetric-store``."""
    return Path(store or os.environ.get(STORE_ENV) or DEFAULT_STORE)


def warn(message: str) -> None:
    stderr.print(f"[yellow]Warning:[/yellow] {escape(message)}", highlight=False, soft_wrap=True)


def print_json(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")


def handle_errors(func: Callable) -> Callable:
    """Turn vecmetric's typed errors into one red line on stderr and their exit code."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except VecmetricError as exc:
            stderr.print(f"[bold red]Error:[/bold red] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            stderr.print("[bold red]Interrupted:[/bold red] work finished so far is kept; run the command again to continue.")
            raise typer.Exit(INTERRUPTED_EXIT_CODE) from None
        except BrokenPipeError:
            # stdout closed early (| head): not an error.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise typer.Exit(0) from None

    return wrapper
