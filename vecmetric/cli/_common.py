"""What every command shares: the stderr console, error handling, common options."""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import VecmetricError

# Results go to stdout; progress, logs, warnings and errors to stderr.
# When stdout is a file or pipe, don't wrap tables at 80 columns: paths are long.
stdout = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
stderr = Console(stderr=True, highlight=False)

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
            raise typer.Exit(130) from None
        except BrokenPipeError:
            # stdout closed early (| head): not an error.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise typer.Exit(0) from None

    return wrapper
