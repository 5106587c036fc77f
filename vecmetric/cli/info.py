"""``vecmetric info``: what a store and its index hold."""

from __future__ import annotations

from pathlib import Path

import typer

from ._common import JsonOption, StoreOption, handle_errors, print_json, stdout, store_path


@handle_errors
def info_command(store: Path = StoreOption, json_out: bool = JsonOption) -> None:
    """Show what a store and its index hold."""
    from ..info import store_info

    info = store_info(store_path(store))
    if json_out:
        print_json(info)
        return
    from rich.table import Table

    table = Table(show_header=False, show_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key in ("store", "rows", "parts", "model", "fingerprint", "dim", "metric", "skipped_last_run", "created_at", "updated_at"):
        table.add_row(key, str(info[key]))
    table.add_row("roots", "\n".join(info["roots"]) or "not recorded (made before vecmetric recorded them)")
    runtime = info["runtime"]
    table.add_row("vectors by", f"{runtime['name']} {runtime['precision']}" if runtime else "not recorded (made before vecmetric recorded it)")
    export = info["export"]
    table.add_row("query model", "ONNX export (searches run without torch)" if export["state"] == "ok" else f"{export['state']}: {export['reason']}")
    idx = info["index"]
    if idx is None:
        table.add_row("index", "none (built on first search, or run 'vecmetric index')")
    else:
        state = {
            "current": "current",
            "stale": "stale (updated by the next search or 'vecmetric index')",
        }.get(idx["status"], f"{idx['status']} (rebuilt by the next search or 'vecmetric index')")
        shards = f" in {idx['shards']} shards" if idx.get("shards", 1) > 1 else ""
        table.add_row(
            "index", f"{idx['count']} vectors{shards}, {idx['metric']}, M={idx['M']}, ef_construction={idx['ef_construction']}, ef={idx['ef']}, {state}"
        )
    table.add_row("versions", ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    stdout.print(table)


def register(app: typer.Typer) -> None:
    app.command("info")(info_command)
