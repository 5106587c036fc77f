"""``vecmetric index``: build or update a store's HNSW index."""

from __future__ import annotations

import contextlib
from pathlib import Path

import typer

from ._common import JsonOption, StoreOption, handle_errors, print_json, stdout, store_path
from ._logging import quiet_native_logs
from ._progress import RichReporter


@handle_errors
def index_command(
    store: Path = StoreOption,
    metric: str = typer.Option(None, "--metric", help="cosine, ip or l2. (default: the existing index's, else the store's model metric)", show_default=False),
    m: int = typer.Option(None, "--m", min=2, help="HNSW links per node (M). (default: 16)", show_default=False),
    ef_construction: int = typer.Option(None, "--ef-construction", min=1, help="HNSW build breadth. (default: 200)", show_default=False),
    ef: int = typer.Option(None, "--ef", min=1, help="Default query breadth saved with the index. (default: 64)", show_default=False),
    rebuild: bool = typer.Option(False, "--rebuild", help="Build from scratch instead of updating."),
    threads: int = typer.Option(-1, "--threads", help="Threads (-1: all cores; with --engine ray, each shard task's share of the cluster)."),
    shards: int = typer.Option(
        None, "--shards", min=1, help="Split the rows over N hnswlib indexes; search queries them all and merges exactly. (default: the existing index's, else 1)", show_default=False
    ),
    engine: str = typer.Option("local", "--engine", help="local (shards one after another here) or ray (shards built in parallel Ray tasks; needs pip install 'vecmetric[ray]')."),
    address: str = typer.Option(None, "--address", help="Ray cluster for --engine ray, e.g. auto or HEAD:6379. (default: a Ray instance on this machine, loopback only)", show_default=False),
    json_out: bool = JsonOption,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Build the store's HNSW index, or bring it up to date (new rows added, removed rows marked deleted).

    With --shards N the rows are split over N indexes: a row stays in the shard it was first put
    in, new rows go to the smallest shards, and an update rewrites only the shards it changes.
    """
    from ..distances import get_metric
    from ..index import build_index
    from ..store import open_store

    if metric is not None:
        get_metric(metric)
    st = open_store(store_path(store))
    native_logs = quiet_native_logs() if engine == "ray" else contextlib.nullcontext()
    with native_logs, RichReporter(unit="vectors", quiet=quiet) as reporter:
        result = build_index(
            st, metric=metric, m=m, ef_construction=ef_construction, ef=ef, rebuild=rebuild, threads=threads, reporter=reporter,
            shards=shards, engine=engine, address=address,
        )
    if json_out:
        print_json(result.to_dict())
    else:
        verb = "built" if result.rebuilt else "updated"
        where = f" in {result.shards} shards ({len(result.touched)} written)" if result.shards > 1 else ""
        stdout.print(
            f"index {verb}: {result.count} vectors{where} ({result.metric}), {result.added} added, {result.deleted} deleted, {result.seconds:.2f} s"
        )


def register(app: typer.Typer) -> None:
    app.command("index")(index_command)
