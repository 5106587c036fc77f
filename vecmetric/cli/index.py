"""``vecmetric index``: build or update a store's HNSW index."""

from __future__ import annotations

from pathlib import Path

import typer

from ._common import JsonOption, StoreOption, handle_errors, print_json, stdout, store_path
from ._progress import RichReporter


@handle_errors
def index_command(
    store: Path = StoreOption,
    metric: str = typer.Option(None, "--metric", help="cosine, ip or l2. (default: the existing index's, else the store's model metric)", show_default=False),
    m: int = typer.Option(None, "--m", min=2, help="HNSW links per node (M). (default: 16)", show_default=False),
    ef_construction: int = typer.Option(None, "--ef-construction", min=1, help="HNSW build breadth. (default: 200)", show_default=False),
    ef: int = typer.Option(None, "--ef", min=1, help="Default query breadth saved with the index. (default: 64)", show_default=False),
    rebuild: bool = typer.Option(False, "--rebuild", help="Build from scratch instead of updating."),
    threads: int = typer.Option(-1, "--threads", help="Threads (-1: all cores)."),
    json_out: bool = JsonOption,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Build the store's HNSW index, or bring it up to date (new rows added, removed rows marked deleted)."""
    from ..distances import get_metric
    from ..index import build_index
    from ..store import open_store

    if metric is not None:
        get_metric(metric)
    st = open_store(store_path(store))
    with RichReporter(unit="vectors", quiet=quiet) as reporter:
        result = build_index(st, metric=metric, m=m, ef_construction=ef_construction, ef=ef, rebuild=rebuild, threads=threads, reporter=reporter)
    if json_out:
        print_json(result.to_dict())
    else:
        verb = "built" if result.rebuilt else "updated"
        stdout.print(
            f"index {verb}: {result.count} vectors ({result.metric}), {result.added} added, {result.deleted} deleted, {result.seconds:.2f} s"
        )


def register(app: typer.Typer) -> None:
    app.command("index")(index_command)
