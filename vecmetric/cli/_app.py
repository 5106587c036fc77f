"""The root ``vecmetric`` app: each command lives in its own module."""

from __future__ import annotations

import typer

from .. import __version__
from . import embed, eval as eval_cmd, index, info, models, search, train, verify

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


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Deep metric learning and vector search over images.

    Exit codes: 0 ok, 1 other error, 2 bad usage, 3 bad input, 4 model, 5 store, 6 index, 7 training, 8 store locked by another process, 9 verify found problems that remain, 130 interrupted.
    """


for module in (embed, index, search, info, verify, models, train, eval_cmd):
    module.register(app)
