"""``vecmetric search QUERY...``: nearest stored images to query images (or texts)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List

import typer

from ._common import AllowPickleOption, DeviceOption, JsonOption, StoreOption, handle_errors, print_json, stdout, store_path
from ._progress import RichReporter


def _read_queries(queries: list[str]) -> list[str]:
    out: list[str] = []
    for q in queries:
        if q == "-":
            out.extend(line.rstrip("\r\n") for line in sys.stdin if line.strip())
        else:
            out.append(q)
    return out


@handle_errors
def search_command(
    queries: List[str] = typer.Argument(..., help="Query images ('-' reads one path per line from stdin), or texts with --text."),
    store: Path = StoreOption,
    k: int = typer.Option(5, "--k", "-k", min=1, help="Results per query."),
    ef: int = typer.Option(None, "--ef", min=1, help="HNSW search breadth: higher is more exact and slower. (default: the index's, 64)", show_default=False),
    exact: bool = typer.Option(False, "--exact", help="Brute-force search instead of the index."),
    text: bool = typer.Option(False, "--text", help="Treat queries as text (open_clip stores only)."),
    model: str = typer.Option(None, "--model", "-m", help="Check that the store was made by this model spec. (default: the store's model)", show_default=False),
    device: str = DeviceOption,
    json_out: bool = JsonOption,
    allow_pickle_files: bool = AllowPickleOption,
) -> None:
    """Search the store. The index is built or updated first if it is missing or stale.

    Table output for people; --json prints one object per result
    (query, rank, path, distance, label, id). Paths are absolute. Distances are
    hnswlib's: 1 - cosine similarity (cosine), 1 - inner product (ip), squared L2 (l2).
    """
    from ..index import search_store

    items = _read_queries(queries)
    with RichReporter(unit="vectors", quiet=json_out) as reporter:
        results = search_store(
            store_path(store),
            items,
            k=k,
            ef=ef,
            exact=exact,
            text=text,
            model=model,
            device=device,
            reporter=reporter,
            allow_pickle_files=allow_pickle_files,
        )
    if json_out:
        for hits in results:
            for hit in hits:
                print_json({"query": hit.query, "rank": hit.rank, "path": hit.path, "distance": hit.distance, "label": hit.label, "id": hit.id})
        return
    from rich.table import Table

    for query, hits in zip(items, results):
        table = Table(title=f"{query}", title_justify="left", show_edge=False)
        table.add_column("rank", justify="right")
        table.add_column("distance", justify="right")
        table.add_column("label")
        table.add_column("path", overflow="fold")
        for hit in hits:
            table.add_row(str(hit.rank), f"{hit.distance:.4f}", hit.label, hit.path)
        stdout.print(table)


def register(app: typer.Typer) -> None:
    app.command("search")(search_command)
