"""A store's index split over N hnswlib indexes (shards), queried as one.

Layout in ``STORE/_index/`` with N > 1 (one shard is exactly the unsharded layout of ``_hnsw``):

    index.json                  the one sidecar: the shared parameters (space, dim, M, ef, model,
                                store snapshot...) and ``shards``, each shard's generation and counts;
                                replaced atomically, it is the single commit point
    hnsw-s<i>-<gen>.bin         shard i: a plain hnswlib index (labels are row ids)
    ids-s<i>-<gen>.npy          the row ids shard i holds: a row's shard is fixed when it is first indexed

``ShardedIndex.query`` asks every shard for its k best and keeps the k best of all of them.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Sequence

from .._fsutil import read_json
from ..errors import IndexStateError, reason
from ._hnsw import HnswIndex, commit_sidecar, new_generation
from ._status import SIDECAR_NAME

__all__ = ["ShardedIndex", "assign_new_ids", "gather_vectors", "held_vectors", "commit_shards", "load_index", "merge_top_k", "shard_cap", "shard_count", "shard_generation"]

SHARD_SLACK = 0.05  # a shard may grow 5% past the balanced level before new rows go to the next one
SHARDED_FORMAT_VERSION = 2  # readers of version 1 (no "shards") find no generation and refuse the index
LOAD_ATTEMPTS = 3  # a writer may replace the sidecar (and remove old files) while a reader opens them


def shard_count(sidecar: dict[str, Any] | None) -> int:
    """How many shards a sidecar describes (1 for the unsharded layout, 0 for none)."""
    if not sidecar:
        return 0
    return len(sidecar["shards"]) if isinstance(sidecar.get("shards"), list) else 1


def shard_generation(shard: int, shards: int) -> str:
    """A fresh generation name for ``shard`` of ``shards`` (unprefixed when there is only one)."""
    return new_generation() if shards == 1 else new_generation(f"s{shard:03d}-")


def shard_cap(live_counts: Sequence[int], new: int) -> int:
    """The most rows a shard may reach by receiving new ones: the balanced level plus ``SHARD_SLACK``."""
    level = -(-(int(sum(live_counts)) + new) // max(1, len(live_counts)))  # ceiling
    return level + max(1, math.ceil(level * SHARD_SLACK))


def assign_new_ids(live_counts: Sequence[int], new_ids) -> list:
    """Split sorted ``new_ids`` over shards holding ``live_counts`` rows: new rows go to the smallest shard.

    The smallest shard takes new rows up to ``shard_cap`` (the balanced level plus a slack), then the
    next smallest, and so on: an update of a few rows touches one shard, and no shard grows beyond
    the cap. Each shard gets a contiguous run of the sorted ids (its rows then sit in few Parquet parts).

    Returns:
        One sorted int64 array per shard (empty for shards that get nothing).
    """
    import numpy as np

    counts = np.asarray(live_counts, dtype=np.int64)
    new_ids = np.sort(np.asarray(new_ids, dtype=np.int64))
    cap = shard_cap(counts, len(new_ids))
    take = np.zeros(len(counts), dtype=np.int64)
    left = len(new_ids)
    for i in np.argsort(counts, kind="stable"):  # smallest first, the lower shard number on ties
        take[i] = min(left, max(0, cap - counts[i]))
        left -= take[i]
    bounds = np.concatenate([[0], np.cumsum(take)])
    return [new_ids[bounds[i] : bounds[i + 1]] for i in range(len(counts))]


def merge_top_k(labels: Sequence, distances: Sequence, k: int):
    """The ``k`` best of several ``(labels, distances)`` answers (each (Q, k_i), nearest first).

    Exact: the k nearest of the union are among the shards' k nearest each. Ties keep the order of
    the shards, then of each shard's answer.
    """
    import numpy as np

    all_labels = np.concatenate([np.asarray(x, dtype=np.int64) for x in labels], axis=1)
    all_distances = np.concatenate([np.asarray(x, dtype=np.float32) for x in distances], axis=1)
    k = min(k, all_labels.shape[1])
    order = np.argsort(all_distances, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(all_labels, order, axis=1), np.take_along_axis(all_distances, order, axis=1)


def held_vectors(shard: HnswIndex, labels):
    """``(the labels of labels that shard holds, their vectors)``."""
    import numpy as np

    labels = np.unique(np.asarray(labels, dtype=np.int64))
    mine = labels[np.isin(labels, shard.ids)]
    return mine, shard.vectors(mine)


def gather_vectors(labels, answers, dim: int):
    """The vectors of ``labels`` (float32 (N, dim), in their order) from the shards' ``held_vectors`` answers.

    Raises:
        KeyError: a label no shard holds.
    """
    import numpy as np

    labels = np.asarray([int(x) for x in labels], dtype=np.int64)
    unique, inverse = np.unique(labels, return_inverse=True)
    out = np.zeros((len(unique), dim), dtype=np.float32)
    found = np.zeros(len(unique), dtype=bool)
    for mine, vectors in answers:
        at = np.searchsorted(unique, np.asarray(mine, dtype=np.int64))
        out[at], found[at] = vectors, True
    if not found.all():
        raise KeyError(int(unique[~found][0]))
    return out[inverse.reshape(-1)]


class ShardedIndex:
    """N hnswlib indexes answering as one: the same query interface as ``HnswIndex``."""

    def __init__(self, folder: Path, shards: list[HnswIndex], sidecar: dict[str, Any]):
        self.folder = Path(folder)
        self.shards = shards
        self.sidecar = sidecar
        self._ids = None

    @property
    def metric(self) -> str:
        return self.sidecar["metric"]

    @property
    def count(self) -> int:
        return sum(shard.count for shard in self.shards)

    @property
    def ids(self):
        """Every shard's live row ids, sorted (int64)."""
        import numpy as np

        if self._ids is None:
            self._ids = np.sort(np.concatenate([shard.ids for shard in self.shards])) if self.shards else np.zeros(0, dtype=np.int64)
        return self._ids

    def has(self, label: int) -> bool:
        """Whether ``label`` is a live vector of any shard."""
        return any(shard.has(label) for shard in self.shards)

    def mark_deleted(self, labels) -> None:
        """Hide ``labels`` in this in-memory copy (each from the shard that holds it)."""
        import numpy as np

        labels = np.asarray([int(x) for x in labels], dtype=np.int64)
        for shard in self.shards:
            mine = labels[np.isin(labels, shard.ids)]
            if len(mine):
                shard.mark_deleted(mine)
        self._ids = None

    def vectors(self, labels):
        """The stored vectors of ``labels``, from whichever shard holds each (see ``HnswIndex.vectors``).

        Raises:
            KeyError: a label is in no shard.
        """
        return gather_vectors(labels, [held_vectors(shard, labels) for shard in self.shards], int(self.sidecar["dim"]))

    def query(self, vectors, k: int, ef: int | None = None, filter=None, threads: int = -1):
        """``(labels, distances)`` of the ``k`` nearest live vectors over every shard (see ``HnswIndex.query``)."""
        answers = [shard.query(vectors, k, ef=ef, filter=filter, threads=threads) for shard in self.shards if shard.count]
        if not answers:
            return self.shards[0].query(vectors, k)  # every shard is empty: the empty answer
        return merge_top_k([a[0] for a in answers], [a[1] for a in answers], k)

    @classmethod
    def from_sidecar(cls, folder: Path, sidecar: dict[str, Any]) -> "ShardedIndex":
        """Open every shard a sharded sidecar lists.

        Raises:
            IndexStateError: a shard's files are missing, damaged or do not agree with the sidecar.
        """
        shards = [HnswIndex.load_generation(folder, sidecar, files) for files in sidecar["shards"]]
        return cls(folder, shards, sidecar)


def load_index(folder: Path) -> HnswIndex | ShardedIndex:
    """Open the index in ``folder``: an ``HnswIndex`` (unsharded) or a ``ShardedIndex``.

    The sidecar is read once and only the files it names are opened, so a reader gets the old index
    or the new one, never a mix. When a writer replaces the sidecar and removes the old files while
    they are being opened, the new sidecar is read and opened instead.

    Raises:
        IndexStateError: no index, or its files are damaged.
    """
    path = Path(folder) / SIDECAR_NAME
    for attempt in range(LOAD_ATTEMPTS):
        if not path.is_file():
            raise IndexStateError(f"no index in {folder}", hint="run 'vecmetric index'")
        try:
            sidecar = read_json(path)
        except (OSError, ValueError) as exc:
            raise IndexStateError(f"the index in {folder} is damaged: {reason(exc)}", hint="run 'vecmetric index --rebuild'") from None
        try:
            if shard_count(sidecar) > 1:
                return ShardedIndex.from_sidecar(folder, sidecar)
            return HnswIndex.load_generation(folder, sidecar, sidecar)
        except IndexStateError:
            if attempt + 1 == LOAD_ATTEMPTS or _read_or_none(path) == sidecar:
                raise  # not a concurrent replacement: the files are damaged
    raise AssertionError("unreachable")


def _read_or_none(path: Path):
    try:
        return read_json(path)
    except (OSError, ValueError):
        return None


def commit_shards(folder: Path, base: dict[str, Any], shards: list[dict[str, Any]], **updates: Any) -> dict[str, Any]:
    """Write the sidecar that makes ``shards`` (what ``HnswIndex.write_generation`` returned for each)
    the index, then remove every file it does not name. One shard is written in the unsharded layout.

    Returns:
        The sidecar written.
    """
    sidecar = {key: value for key, value in base.items() if key not in ("generation", "capacity", "elements", "shards")}
    sidecar.update(updates)
    sidecar["count"] = sum(int(s["count"]) for s in shards)
    sidecar["updated_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if len(shards) == 1:
        sidecar.update({key: shards[0][key] for key in ("generation", "capacity", "elements")})
        sidecar["format_version"] = 1
    else:
        sidecar["shards"] = [{key: s[key] for key in ("generation", "count", "capacity", "elements")} for s in shards]
        sidecar["format_version"] = SHARDED_FORMAT_VERSION
    commit_sidecar(Path(folder), sidecar)
    return sidecar
