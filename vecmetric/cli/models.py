"""``vecmetric models [PATTERN]``: the encoders the loader knows."""

from __future__ import annotations

import typer

from ._common import JsonOption, handle_errors, print_json, stdout


@handle_errors
def models_command(
    pattern: str = typer.Argument(None, help="Glob or substring filter, e.g. 'timm:resnet*' or 'ViT-B-32'."),
    json_out: bool = JsonOption,
) -> None:
    """List model specs: default, timm:NAME and open_clip:ARCH@TAG (and say what each source is)."""
    from ..encoders import list_models, list_sources

    names = list_models(pattern)
    if json_out:
        for name in names:
            print_json({"spec": name})
        return
    if pattern is None:
        for source in list_sources():
            stdout.print(f"[bold]{source.prefix}[/bold]: {source.help}")
        stdout.print("a checkpoint folder written by 'vecmetric train' is a spec too\n")
    for name in names:
        stdout.print(name, markup=False)


def register(app: typer.Typer) -> None:
    app.command("models")(models_command)
