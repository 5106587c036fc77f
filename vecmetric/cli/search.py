"""``vecmetric search QUERY...``: nearest stored images to images, stored images, texts, or sums of them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List

import typer

from ._common import AllowPickleOption, DeviceOption, StoreOption, handle_errors, stdout, store_path, warn
from ._progress import RichReporter

QUERY_HELP = (
    "Queries: image paths, @ID or @PATH (stored images: nothing is embedded), or texts (open_clip stores), "
    "each optionally weighted as N:term. Several arguments are several queries; with + or - standing between "
    "terms they form one query, the weighted sum of the + terms minus the - terms. '-' alone reads one query "
    "(or expression) per line from stdin."
)


def _check_outputs(json_out: bool, paths_out: bool, preview: bool) -> None:
    from ..errors import UsageError

    chosen = [name for name, on in (("--json", json_out), ("--paths", paths_out), ("--preview", preview)) if on]
    if len(chosen) > 1:
        raise UsageError(f"{' and '.join(chosen)} cannot go together: each prints the results its own way")


def _print_results(results, json_out: bool, paths_out: bool, preview: bool) -> None:
    from ..present import hits_table, json_lines, path_lines

    if json_out or paths_out:
        for line in (json_lines if json_out else path_lines)(results):
            sys.stdout.write(line + "\n")
        sys.stdout.flush()
        return
    if preview:
        from ..present import detect_protocol, preview_lines, preview_unavailable

        protocol = detect_protocol()
        if protocol is not None:
            for result in results:
                for line in preview_lines(result.source, result, protocol):
                    sys.stdout.write(line + "\n")
            sys.stdout.flush()
            return
        warn(f"cannot show previews: {preview_unavailable()}; printing the table instead")
    for result in results:
        stdout.print(hits_table(result.source, result))


def _write_sheets(results, html: Path | None, sheet: Path | None) -> None:
    from ._common import stderr

    if html is None and sheet is None:
        return
    from ..present import results_sheet, write_html_sheet, write_png_sheet

    contact = results_sheet(results)
    for target, write in ((html, write_html_sheet), (sheet, write_png_sheet)):
        if target is not None:
            try:
                write(contact, target)
            except OSError as exc:
                from ..errors import InputError

                raise InputError(f"cannot write {target}: {exc.strerror or exc}") from None
            stderr.print(f"contact sheet written to {target}", highlight=False, soft_wrap=True)


@handle_errors
def search_command(
    queries: List[str] = typer.Argument(None, help=QUERY_HELP, show_default=False),
    like: str = typer.Option(None, "--like", help="Find the neighbours of a stored image (a row id or a path the store holds), without any model: the query @ID. (default: none)", show_default=False),
    label: List[str] = typer.Option(None, "--label", "-l", help="Return only images with this label; repeat for several. (default: any label)", show_default=False),
    path: str = typer.Option(None, "--path", help="Return only images whose absolute path matches this glob (* also crosses /); relative to the current folder unless it starts with / or *. (default: any path)", show_default=False),
    max_distance: float = typer.Option(None, "--max-distance", help="Drop results farther than this, in the distances search prints. (default: no limit)", show_default=False),
    keep_query_images: bool = typer.Option(False, "--keep-query-images", help="Keep stored images that are query terms in their own results."),
    store: Path = StoreOption,
    k: int = typer.Option(5, "--k", "-k", min=1, help="Results per query."),
    ef: int = typer.Option(None, "--ef", min=1, help="HNSW search breadth: higher is more exact and slower. (default: the index's, 64)", show_default=False),
    exact: bool = typer.Option(False, "--exact", help="Brute-force search instead of the index."),
    text: bool = typer.Option(False, "--text", help="Every plain term is a text, even one that looks like a file name (open_clip stores only)."),
    model: str = typer.Option(None, "--model", "-m", help="Check that the store was made by this model spec. (default: the store's model)", show_default=False),
    device: str = DeviceOption,
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object per result: query, rank, path, distance, label, id."),
    paths_out: bool = typer.Option(False, "--paths", help="Print only the results' paths, one a line (for xargs)."),
    html: Path = typer.Option(None, "--html", help="Also write a self-contained HTML contact sheet (thumbnails, rank, distance, label, links) to this file. (default: none)", show_default=False),
    sheet: Path = typer.Option(None, "--sheet", help="Also write the contact sheet as one PNG image to this file. (default: none)", show_default=False),
    preview: bool = typer.Option(False, "--preview", help="Show thumbnails inline in terminals that speak the kitty or iTerm2 image protocol; elsewhere say so and print the table."),
    allow_pickle_files: bool = AllowPickleOption,
) -> None:
    """Search the store. The index is built or updated first if it is missing or stale.

    Examples: search a.jpg --k 10; search "2:red car" + ./car.jpg - "at night"; search --like 42 --label cats;
    find new/ -name '*.jpg' | search - --paths. A table for people by default; --json, --paths for pipelines.
    Paths are absolute. Distances are hnswlib's: 1 - cosine similarity (cosine), 1 - inner product (ip),
    squared L2 (l2). Stored images that are query terms are left out of their own results.
    """
    from ..query import SearchFilter, parse_arguments, search_store

    _check_outputs(json_out, paths_out, preview)
    if not queries and like is None:
        from ..errors import UsageError

        raise UsageError("no queries given", hint="give image paths, @ID, texts, '-' to read them from stdin, or --like ID")
    parsed = parse_arguments(queries or [], text=text, stdin=sys.stdin, like=like)
    filters = SearchFilter(labels=tuple(label or ()), path=path, max_distance=max_distance)
    with RichReporter(unit="vectors", quiet=json_out or paths_out) as reporter:
        results = search_store(
            store_path(store),
            parsed,
            k=k,
            ef=ef,
            exact=exact,
            model=model,
            device=device,
            reporter=reporter,
            allow_pickle_files=allow_pickle_files,
            filters=filters,
            keep_query_images=keep_query_images,
        )
    _write_sheets(results, html, sheet)  # first: a reader that stops early (| head) must not cost the files
    _print_results(results, json_out, paths_out, preview)


def register(app: typer.Typer) -> None:
    app.command("search")(search_command)
