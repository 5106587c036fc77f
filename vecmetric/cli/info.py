"""``vecmetric info``: what a store and its index hold."""

from __future__ import annotations

from pathlib import Path

import typer

from ._common import JsonOption, StoreOption, handle_errors, print_json, stdout, store_path


def store_info(path: Path) -> dict:
    """A summary of a store and its index (the Python API behind ``vecmetric info``)."""
    from .._fsutil import read_json
    from ..index import index_is_current
    from ..index._hnsw import SIDECAR_NAME
    from ..store import open_store

    st = open_store(path)
    info = {
        "store": str(st.path.resolve()),
        "rows": st.count(),
        "parts": len(st.parts()),
        "model": st.model["spec"],
        "fingerprint": st.model["fingerprint"],
        "dim": st.dim,
        "metric": st.metric,
        "skipped_last_run": len(st.read_errors()),
        "created_at": st.manifest.get("created_at"),
        "updated_at": st.manifest.get("updated_at"),
        "versions": st.manifest.get("versions", {}),
        "index": None,
    }
    sidecar = st.index_dir / SIDECAR_NAME
    if sidecar.is_file():
        side = read_json(sidecar)
        info["index"] = {
            "metric": side.get("metric"),
            "count": side.get("count"),
            "deleted": side.get("deleted", 0),
            "M": side.get("M"),
            "ef_construction": side.get("ef_construction"),
            "ef": side.get("ef"),
            "current": index_is_current(st),
            "updated_at": side.get("updated_at"),
        }
    return info


@handle_errors
def info_command(store: Path = StoreOption, json_out: bool = JsonOption) -> None:
    """Show what a store and its index hold."""
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
    idx = info["index"]
    if idx is None:
        table.add_row("index", "none (built on first search, or run 'vecmetric index')")
    else:
        state = "current" if idx["current"] else "stale (updated on next search or 'vecmetric index')"
        table.add_row(
            "index", f"{idx['count']} vectors, {idx['metric']}, M={idx['M']}, ef_construction={idx['ef_construction']}, ef={idx['ef']}, {state}"
        )
    table.add_row("versions", ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    stdout.print(table)


def register(app: typer.Typer) -> None:
    app.command("info")(info_command)
