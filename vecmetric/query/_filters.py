"""Which stored rows a search may return (labels, a path glob) and how far they may be (a threshold)."""

from __future__ import annotations

import fnmatch
import math
import os
import re
from dataclasses import dataclass
from typing import Any, Sequence

from ..errors import InputError

__all__ = ["SearchFilter", "allowed_ids"]


@dataclass(frozen=True)
class SearchFilter:
    """What a search may return.

    Attributes:
        labels: return only rows with one of these labels (empty: any label).
        path: return only rows whose absolute path matches this glob (``fnmatch``: ``*`` also crosses
            ``/``). A pattern that starts with neither ``/`` nor ``*`` is taken relative to the
            current folder, as query paths are: ``photos/2024/*`` is ``$PWD/photos/2024/*``.
        max_distance: drop results farther than this, in the index's units (1 - cosine, squared L2,
            1 - inner product), so fewer than ``k`` may come back.
    """

    labels: tuple[str, ...] = ()
    path: str | None = None
    max_distance: float | None = None

    def __post_init__(self):
        if isinstance(self.labels, str):
            object.__setattr__(self, "labels", (self.labels,))
        object.__setattr__(self, "labels", tuple(self.labels))
        if self.path is not None and not str(self.path).strip():
            raise InputError("--path needs a glob pattern, e.g. '*/cats/*'")
        if self.max_distance is not None:
            if isinstance(self.max_distance, bool) or not isinstance(self.max_distance, (int, float)) or not math.isfinite(self.max_distance):
                raise InputError(f"--max-distance must be a finite number, not {self.max_distance!r}")

    @property
    def selects_rows(self) -> bool:
        """Whether it restricts which rows qualify (labels or a path), not only how far they may be."""
        return bool(self.labels) or self.path is not None

    def path_pattern(self) -> str | None:
        """The path glob made absolute (see ``path``)."""
        if self.path is None:
            return None
        pattern = os.path.expanduser(str(self.path))
        if not pattern.startswith(("/", "*")) and not os.path.isabs(pattern):
            pattern = os.path.join(os.getcwd(), pattern)
        return pattern

    def row_mask(self, labels: Sequence[str | None], paths: Sequence[str]) -> Any:
        """A bool numpy array: which of these rows (their labels and paths, in order) qualify."""
        import numpy as np

        keep = np.ones(len(paths), dtype=bool)
        if self.labels:
            wanted = set(self.labels)
            keep &= np.fromiter((label in wanted for label in labels), dtype=bool, count=len(labels))
        pattern = self.path_pattern()
        if pattern is not None:
            match = re.compile(fnmatch.translate(pattern)).match
            keep &= np.fromiter((match(p) is not None for p in paths), dtype=bool, count=len(paths))
        return keep

    def within(self, distance: float) -> bool:
        """Whether a result at ``distance`` passes the threshold."""
        return self.max_distance is None or distance <= self.max_distance


def allowed_ids(store, flt: SearchFilter | None, rows=None) -> Any:
    """The sorted row ids (int64 numpy) that ``flt``'s labels and path allow; None when it allows every row.

    Args:
        store: the open store.
        flt: the filter.
        rows: where the rows are read (a ``StoredRows``; default the Parquet parts).

    Raises:
        StoreError: a part file is damaged.
    """
    import numpy as np

    from ._rows import StoredRows

    if flt is None or not flt.selects_rows:
        return None
    table = (rows or StoredRows(store)).columns(["id", "label", "path"])
    mask = flt.row_mask(table.column("label").to_pylist(), table.column("path").to_pylist())
    ids = np.asarray(table.column("id").to_pylist(), dtype=np.int64)
    return np.sort(ids[mask])
