"""The two questions dedup answers, each one call over a store's arrays: duplicates within, leaks into another."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._groups import Group, Member, Rows, build_groups
from ._pairs import NearPairs, near_pairs
from ._threshold import check_threshold


@dataclass
class DedupResult:
    """Groups (keeper first in each), the near pairs they came from, and the threshold used.

    ``dedup_store`` fills the rest: the index's ``metric``, how the threshold was chosen
    (``threshold_from``: ``given``, ``default`` or ``auto``, with ``auto`` the ``AutoThreshold``),
    the store's path, the other store's with ``--against``, and the store's ``snapshot`` when its
    rows were read (a move refuses a store that changed since).
    """

    groups: list[Group]
    pairs: NearPairs
    threshold: float
    capped: int = 0  # rows whose neighbours within the threshold exceeded MAX_K (see near_pairs)
    metric: str = ""
    threshold_from: str = "given"
    auto: Any = None
    store: str | None = None
    against: str | None = None
    snapshot: list | None = None
    rows: int = 0

    @property
    def to_move(self) -> list[Member]:
        """The files to set aside: every member not kept (only this store's, with ``--against``)."""
        return [m for g in self.groups for m in g.members if not m.keep]


def find_duplicates(index, rows: Rows, vectors, threshold: float, keep: str = "oldest") -> DedupResult:
    """Groups of byte-identical and near-duplicate rows of one store.

    Args:
        index: the store's current ``HnswIndex`` (labels are row ids; its metric is used).
        rows: the store's rows; vectors: theirs, (N, D), in the same order.
        threshold: the largest distance of a near pair, in the units ``search`` prints.
        keep: the keeper policy (``oldest``, ``newest``, ``largest``, ``shortest-path``).

    Raises:
        InputError: a bad threshold for the index's metric, or an unknown keep policy.
    """
    threshold = check_threshold(threshold, index.metric)
    pairs = near_pairs(index, vectors, rows.ids, threshold, index.metric)
    groups = build_groups(rows, vectors, index.metric, pairs, keep=keep)
    return DedupResult(groups, pairs, threshold, pairs.capped, metric=index.metric, rows=len(rows))


def find_leaks(other_index, rows: Rows, vectors, other_rows: Rows, other_vectors, threshold: float, keep: str = "oldest") -> DedupResult:
    """Rows of this store that duplicate rows of another (train/test leakage).

    Each group joins rows of both stores; its keeper is the other store's row that ``keep``
    picks, every row of the other store is kept, and only this store's rows are marked to go.

    Args:
        other_index: the other store's current ``HnswIndex``.
        rows, vectors: this store's rows and vectors.
        other_rows, other_vectors: the other store's.
        threshold, keep: as for ``find_duplicates``.

    Raises:
        InputError: a bad threshold, or an unknown keep policy.
    """
    import numpy as np

    threshold = check_threshold(threshold, other_index.metric)
    pairs = near_pairs(other_index, vectors, rows.ids, threshold, other_index.metric, data_vectors=other_vectors, data_ids=other_rows.ids)
    mine = Rows(rows.ids, rows.paths, rows.sizes, rows.mtime_ns, rows.content_hashes, side=np.zeros(len(rows)))
    theirs = Rows(other_rows.ids, other_rows.paths, other_rows.sizes, other_rows.mtime_ns, other_rows.content_hashes, side=np.ones(len(other_rows)))
    both = np.concatenate([np.asarray(vectors, dtype=np.float32), np.asarray(other_vectors, dtype=np.float32)])
    groups = build_groups(Rows.concat(mine, theirs), both, other_index.metric, pairs, keep=keep, against=True)
    return DedupResult(groups, pairs, threshold, pairs.capped, metric=other_index.metric, rows=len(rows))
