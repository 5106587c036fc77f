"""The one rule for whether a store's index can answer for it: ``index_status``.

``build_index``, ``search``, ``verify`` and ``info`` all ask this function, so they never
disagree about an index.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._fsutil import read_json

__all__ = ["IndexStatus", "IndexState", "SIDECAR_NAME", "index_status", "sidecar_generations"]

SIDECAR_NAME = "index.json"
INDEX_FORMAT = "vecmetric-hnsw"


class IndexStatus(str, enum.Enum):
    """What an index is to its store."""

    CURRENT = "current"  # reflects the store's rows as they are now
    STALE = "stale"  # the store's rows changed since: an update (add new, mark removed) brings it up to date
    MISSING = "missing"  # there is none
    FOREIGN = "foreign"  # built from another store's vectors (another model or store): only a rebuild helps
    DAMAGED = "damaged"  # its sidecar or files are unreadable or do not agree: only a rebuild helps


@dataclass(frozen=True)
class IndexState:
    """An index's status, why, and its sidecar (None when missing or unreadable)."""

    status: IndexStatus
    reason: str
    sidecar: dict[str, Any] | None = None

    @property
    def usable(self) -> bool:
        """Whether the index answers for the store as it is now."""
        return self.status is IndexStatus.CURRENT

    @property
    def updatable(self) -> bool:
        """Whether adding new rows and marking removed ones brings it up to date (no rebuild needed)."""
        return self.status in (IndexStatus.CURRENT, IndexStatus.STALE)


def sidecar_generations(sidecar: dict[str, Any]) -> list[str]:
    """The generations a sidecar refers to: its own (unsharded), or each of its ``shards``'."""
    if isinstance(sidecar.get("shards"), list):
        return [shard.get("generation") if isinstance(shard, dict) else None for shard in sidecar["shards"]]
    return [sidecar.get("generation")]


def _files_present(folder: Path, sidecar: dict[str, Any]) -> str | None:
    """Why the files of the sidecar's generations (every shard's) are not there, or None when they are."""
    generations = sidecar_generations(sidecar)
    if not generations:
        return "its sidecar lists no shards"
    for generation in generations:
        if not isinstance(generation, str):
            return "its sidecar names no generation"
        for name in (f"hnsw-{generation}.bin", f"ids-{generation}.npy"):
            if not (folder / name).is_file():
                return f"{name} is missing"
    return None


def index_status(store) -> IndexState:
    """How the index in ``store``'s ``_index/`` folder stands against the store.

    Cheap: it reads the sidecar and checks the files exist (every shard's, for a sharded index),
    without loading the index; ``load_index`` then finds damage inside the files (``IndexStateError``).
    """
    folder = store.index_dir
    path = folder / SIDECAR_NAME
    if not path.is_file():
        return IndexState(IndexStatus.MISSING, "the store has no index")
    try:
        sidecar = read_json(path)
    except (OSError, ValueError) as exc:
        return IndexState(IndexStatus.DAMAGED, f"its sidecar cannot be read: {exc}")
    if not isinstance(sidecar, dict) or sidecar.get("format") != INDEX_FORMAT:
        return IndexState(IndexStatus.DAMAGED, "its sidecar is not a vecmetric index sidecar")
    missing = _files_present(folder, sidecar)
    if missing:
        return IndexState(IndexStatus.DAMAGED, missing, sidecar)
    if sidecar.get("model_fingerprint") != store.model["fingerprint"] or sidecar.get("store_id") != store.manifest.get("store_id"):
        return IndexState(IndexStatus.FOREIGN, "the index was built from another store's vectors", sidecar)
    if sidecar.get("dim") != store.dim:  # this store's index, yet another dimension: the sidecar is wrong
        return IndexState(IndexStatus.DAMAGED, f"the index has dimension {sidecar.get('dim')}, the store {store.dim}", sidecar)
    if sidecar.get("store_snapshot") != store.snapshot():
        return IndexState(IndexStatus.STALE, "the store's rows changed since the index was built", sidecar)
    return IndexState(IndexStatus.CURRENT, "the index reflects the store's rows", sidecar)
