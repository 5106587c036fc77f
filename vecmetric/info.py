"""``store_info``: what a store and its index hold (the Python API behind ``vecmetric info``)."""

from __future__ import annotations

import os
from typing import Any

__all__ = ["store_info"]


def store_info(path: str | os.PathLike) -> dict[str, Any]:
    """A summary of a store and its index.

    Returns:
        The store's path, rows, parts, model, dimension, metric, embed roots, the runtime and precision
        that made its vectors, the state of its exported query model, dates and library versions; ``index`` is None without an index, else its parameters, counts and ``status``
        (``current``, ``stale``, ``foreign`` or ``damaged``, as ``index_status`` decides).

    Raises:
        StoreError: no store at ``path``, or an unreadable manifest.
    """
    from .index import IndexStatus, index_status, shard_count
    from .runtime import export_state, model_dir
    from .store import open_store

    store = open_store(path)
    info: dict[str, Any] = {
        "store": str(store.path.resolve()),
        "rows": store.count(),
        "parts": len(store.parts()),
        "model": store.model["spec"],
        "fingerprint": store.model["fingerprint"],
        "dim": store.dim,
        "metric": store.metric,
        "roots": store.roots,
        "runtime": store.manifest.get("runtime"),
        "export": dict(zip(("state", "reason"), export_state(model_dir(store.path), store.model["fingerprint"]))),
        "skipped_last_run": len(store.read_errors()),
        "created_at": store.manifest.get("created_at"),
        "updated_at": store.manifest.get("updated_at"),
        "versions": store.manifest.get("versions", {}),
        "index": None,
    }
    state = index_status(store)
    if state.status is not IndexStatus.MISSING:
        side = state.sidecar or {}
        info["index"] = {
            "metric": side.get("metric"),
            "count": side.get("count"),
            "deleted": side.get("deleted", 0),
            "M": side.get("M"),
            "ef_construction": side.get("ef_construction"),
            "ef": side.get("ef"),
            "shards": shard_count(side),
            "status": state.status.value,
            "current": state.usable,
            "updated_at": side.get("updated_at"),
        }
    return info
