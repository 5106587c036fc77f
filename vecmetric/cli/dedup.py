"""``vecmetric dedup``: groups of near-duplicate and byte-identical images in a store; set them aside and back."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from ..errors import InputError, UsageError
from ._common import JsonOption, StoreOption, escape, handle_errors, print_json, stderr, stdout, store_path, warn
from ._progress import RichReporter

CSV_FIELDS = ("group", "kind", "path", "id", "distance", "keep")
UNITS = {"cosine": "1 - cosine similarity", "ip": "1 - inner product", "l2": "squared L2"}


def describe_threshold(found) -> str:
    """How the threshold was chosen, in one line for people."""
    line = f"threshold {found.threshold:.4g} ({UNITS.get(found.metric, found.metric)})"
    if found.threshold_from == "default":
        return line + ", the default model's measured default"
    if found.threshold_from == "auto" and found.auto is not None:
        a = found.auto
        if a.method == "valley":
            how = "the valley between near copies and the rest"
        else:
            how = f"no clear valley, so {a.threshold / a.median_random:.2f} x the median distance of random pairs"
        return line + f", --auto: from the nearest-neighbour distances of {a.details.get('sampled', a.rows)} rows, {how}"
    return line


def _summary(found) -> str:
    exact = sum(g.kind == "exact" for g in found.groups)
    moving = len(found.to_move)
    what = "rows of this store duplicate rows of " + found.against if found.against else "files can be set aside"
    return (
        f"{len(found.groups)} groups ({exact} exact, {len(found.groups) - exact} near) among {found.rows} rows; "
        f"{moving} {what}; {describe_threshold(found)}"
    )


def _print_table(groups) -> None:
    from rich.table import Table

    table = Table(show_edge=False)
    for name, justify in (("group", "right"), ("kind", "left"), ("keep", "left"), ("distance", "right"), ("id", "right"), ("path", "left")):
        table.add_column(name, justify=justify, overflow="fold" if name == "path" else None)
    for g in groups:
        for i, m in enumerate(g.members):
            mark = "[green]keep[/green]" if m.keep else "move"
            last = i == len(g.members) - 1
            table.add_row(str(g.group) if i == 0 else "", g.kind if i == 0 else "", mark, f"{m.distance:.4f}", str(m.id), escape(m.path), end_section=last)
    stdout.print(table)


def _print_csv(groups) -> None:
    import csv

    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for g in groups:
        for row in g.to_rows():
            writer.writerow([str(row[f]).lower() if f == "keep" else row[f] for f in CSV_FIELDS])


def _check_combinations(undo, json_out, csv_out, move_to, **others) -> None:
    """Refuse options that cannot go together, in one line."""
    if json_out and csv_out:
        raise UsageError("--json and --csv cannot go together: each prints the groups its own way")
    if undo is not None:
        given = [f"--{name.replace('_', '-')}" for name, value in {"json": json_out, "csv": csv_out, "move_to": move_to, **others}.items() if value]
        if given:
            raise UsageError(f"--undo takes no {', '.join(given)}", hint="it puts back what the log records")
    elif move_to is not None and (json_out or csv_out):
        raise UsageError("--move-to prints the move log's path on stdout, so it takes no --json or --csv", hint="run without --move-to first to list the groups")


def _undo(log: Path, store: Path | None) -> None:
    from ..dedup import undo_store_moves

    result = undo_store_moves(log, store=store_path(store) if store is not None else None)
    stdout.print(f"put back {len(result.moves)} files and {result.rows} rows (log {escape(str(result.log))})", highlight=False, soft_wrap=True)


@handle_errors
def dedup_command(
    store: Path = StoreOption,
    threshold: str = typer.Option(
        None, "--threshold", "-t", show_default=False, metavar="T",
        help="Largest distance of a near pair, in the units 'search' prints. (default: 0.25 for the default model under cosine, "
        "measured on real photos; --auto for other models; an inner-product store needs one)",
    ),
    auto: bool = typer.Option(False, "--auto", help="Choose the threshold from the store's own distances: the valley between near copies and the rest (the default for models without a measured threshold)."),
    keep: str = typer.Option("oldest", "--keep", metavar="POLICY", help="The file each group keeps: oldest (file mtime), newest, largest (bytes) or shortest-path; ties go to the shorter path."),
    json_out: bool = JsonOption,
    csv_out: bool = typer.Option(False, "--csv", help="Print CSV rows (group,kind,path,id,distance,keep) with a header instead of a table."),
    html: Path = typer.Option(None, "--html", metavar="FILE", help="Also write a contact sheet to this HTML file: one row of thumbnails per group, the keeper outlined.", show_default=False),
    move_to: Path = typer.Option(
        None, "--move-to", show_default=False, metavar="DIR",
        help="Move every non-keeper into this folder (outside the embed roots), keeping its path below its embed root, and remove its row "
        "from the store; prints the path of the JSON log that --undo reads. Nothing is deleted.",
    ),
    undo: Path = typer.Option(None, "--undo", metavar="LOG", help="Put back every file a --move-to log records, and restore their rows (same ids and vectors).", show_default=False),
    against: Path = typer.Option(None, "--against", help="Find the rows of this store that duplicate rows of OTHER_STORE (train/test leakage); its rows are all kept.", show_default=False, metavar="OTHER_STORE"),
) -> None:
    """Find near-duplicate and byte-identical images in the store.

    Each row's neighbours within the threshold come from the index (a range search, every
    distance re-checked exactly) and are joined into groups; byte-identical files (same content
    hash) form 'exact' groups whatever the threshold. A file is in one group only. The index is
    built or updated first if it is missing or stale.

    Table output for people; --json prints one group per line:
    {"group", "kind": "near"|"exact", "files": [{"path", "id", "distance" (to the keeper), "keep"}]}.
    """
    from ..dedup import check_store_target, dedup_store, move_store_duplicates

    _check_combinations(undo, json_out, csv_out, move_to, threshold=threshold, auto=auto, against=against, html=html)
    if undo is not None:
        return _undo(undo, store)
    if move_to is not None:
        check_store_target(store_path(store), move_to)  # before the search: a bad target costs nothing
    with RichReporter(unit="vectors", quiet=json_out or csv_out) as reporter:
        found = dedup_store(store_path(store), threshold=threshold, auto=True if auto else None, keep=keep, against=against, reporter=reporter)
    if found.capped:
        warn(f"{found.capped} rows have more neighbours within the threshold than are looked at; they are grouped through their nearest ones")
    if html is not None:
        _write_sheet(found, html)
    if move_to is not None:
        moved = move_store_duplicates(found, move_to)
        stderr.print(escape(f"moved {len(moved.moves)} files to {move_to} and removed {moved.rows} rows; undo with: vecmetric dedup --undo {moved.log}"), highlight=False, soft_wrap=True)
        sys.stdout.write(f"{moved.log}\n")
        return
    if json_out:
        for g in found.groups:
            print_json(g.to_dict())
    elif csv_out:
        _print_csv(found.groups)
    elif found.groups:
        _print_table(found.groups)
    stderr.print(escape(_summary(found)), highlight=False, soft_wrap=True)


def _write_sheet(found, path: Path) -> None:
    from ..present import dedup_sheet, write_html_sheet

    title = f"vecmetric dedup: {len(found.groups)} groups, {describe_threshold(found)}"
    try:
        write_html_sheet(dedup_sheet(found.groups, title=title), path)
    except OSError as exc:
        raise InputError(f"cannot write --html {path}: {exc.strerror or exc}") from None


def register(app: typer.Typer) -> None:
    app.command("dedup")(dedup_command)
