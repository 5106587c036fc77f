"""``vecmetric verify``: check a store, its index and the files on disk; ``--repair`` fixes what it can."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import PROBLEMS_REMAIN_EXIT_CODE
from ._common import JsonOption, StoreOption, escape, handle_errors, print_json, stderr, stdout, store_path

LISTED_PATHS = 5


@handle_errors
def verify_command(
    store: Path = StoreOption,
    repair: bool = typer.Option(False, "--repair", help="Fix what can be fixed without re-embedding."),
    skip_files: bool = typer.Option(False, "--skip-files", help="Don't stat the image files (faster on huge or remote folders)."),
    json_out: bool = JsonOption,
) -> None:
    """Check the store, its index and the image files against each other.

    Finds damaged Parquet files, rows of files that are gone (orphaned vectors) or changed,
    duplicate rows, a manifest that disagrees with the data, leftover temporary files, stale
    locks, and an index out of step, damaged or from another store. With --repair, damaged
    Parquet files move to STORE/_quarantine/ (their images are embedded again by the next
    'embed'), orphaned and duplicate rows are dropped, and the index is updated or rebuilt
    from the stored vectors. Each finding names the files or rows it concerns (the first few;
    --json lists them all under "paths"). Exits 0 when all is well (or repaired), 9 when problems remain.
    """
    from ..verify import verify_store

    report = verify_store(store_path(store), repair=repair, check_files=not skip_files)
    if json_out:
        print_json({"store": report.store, "rows": report.rows, "ok": report.ok, "findings": [f.to_dict() for f in report.findings]})
    else:
        if not report.findings:
            stdout.print(f"ok: {report.rows} rows, {report.checked_files} files checked, no problems")
        for f in report.findings:
            state = "[green]repaired[/green]" if f.repaired else ("[yellow]repairable[/yellow]" if f.repairable else "[red]needs you[/red]")
            stdout.print(f"{state} {f.kind}: {escape(f.detail)}", highlight=False)
            for path in f.paths[:LISTED_PATHS]:
                stdout.print(f"    {escape(path)}", highlight=False)
            if len(f.paths) > LISTED_PATHS:
                stdout.print(f"    ... and {len(f.paths) - LISTED_PATHS} more (--json lists them all)", highlight=False)
    if not report.ok:
        if any(f.repairable and not f.repaired for f in report.findings):
            stderr.print("run 'vecmetric verify --repair' to fix what can be fixed without re-embedding")
        raise typer.Exit(PROBLEMS_REMAIN_EXIT_CODE)


def register(app: typer.Typer) -> None:
    app.command("verify")(verify_command)
