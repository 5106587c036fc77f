"""The root ``vecmetric`` app: each command lives in its own module."""

from __future__ import annotations

import typer

from .. import __version__
from ..errors import EXIT_CODES
from . import dedup, embed, export, index, info, models, search, serve, train, verify
from . import eval as eval_cmd
from ._logging import configure_logging

app = typer.Typer(
    name="vecmetric",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"vecmetric {__version__}")
        raise typer.Exit()


@app.callback(help="Deep metric learning and vector search over images.\n\nExit codes: " + ", ".join(f"{code} {meaning}" for code, meaning in EXIT_CODES.items()) + ".")
def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show what the libraries underneath log (open_clip, timm, huggingface_hub, torch, Ray)."),
) -> None:
    """The root: options that apply to every command."""
    configure_logging(verbose)


for module in (embed, index, search, dedup, serve, info, verify, export, models, train, eval_cmd):
    module.register(app)
