"""An hnswlib index kept in step with a store, saved atomically with a sidecar.

Files in ``STORE/_index/``:

    index.json          sidecar: space, dim, M, ef_construction, ef, counts, model, store snapshot,
                        and the generation of the two files below (written last: the commit point)
    hnsw-<gen>.bin      the hnswlib index (hnswlib.Index(space, dim).load_index(path) opens it)
    ids-<gen>.npy       the live labels in the index (int64, sorted)

hnswlib labels are the store's row ids.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._fsutil import atomic_write, atomic_write_json, read_json, remove_dead_temporaries
from ..distances import get_metric
from ..errors import IndexStateError, reason
from ._status import INDEX_FORMAT, SIDECAR_NAME


@dataclass
class IndexParams:
    """Construction parameters for HNSW."""

    metric: str = "cosine"
    m: int = 16
    ef_construction: int = 200
    ef: int = 64


class HnswIndex:
    """An open hnswlib index and its sidecar."""

    def __init__(self, folder: Path, index, ids, sidecar: dict[str, Any]):
        self.folder = Path(folder)
        self.index = index
        self.ids = ids  # numpy int64, sorted, live labels
        self.sidecar = sidecar

    @property
    def metric(self) -> str:
        return self.sidecar["metric"]

    @property
    def count(self) -> int:
        return int(len(self.ids))

    @classmethod
    def create(cls, folder: Path, dim: int, params: IndexParams, capacity: int) -> "HnswIndex":
        import hnswlib
        import numpy as np

        space = get_metric(params.metric).space
        index = hnswlib.Index(space=space, dim=dim)
        index.init_index(max_elements=max(capacity, 1), ef_construction=params.ef_construction, M=params.m, random_seed=100)
        sidecar = {
            "format": INDEX_FORMAT,
            "format_version": 1,
            "space": space,
            "metric": params.metric,
            "dim": dim,
            "M": params.m,
            "ef_construction": params.ef_construction,
            "ef": params.ef,
        }
        return cls(folder, index, np.zeros(0, dtype=np.int64), sidecar)

    @classmethod
    def load(cls, folder: Path) -> "HnswIndex":
        """Open the index in ``folder``.

        Raises:
            IndexStateError: missing, or the files do not agree with the sidecar.
        """
        import hnswlib
        import numpy as np

        sidecar_path = Path(folder) / SIDECAR_NAME
        if not sidecar_path.is_file():
            raise IndexStateError(f"no index in {folder}", hint="run 'vecmetric index'")
        try:
            sidecar = read_json(sidecar_path)
            gen = sidecar["generation"]
            ids = np.load(Path(folder) / f"ids-{gen}.npy", allow_pickle=False)
            index = hnswlib.Index(space=sidecar["space"], dim=int(sidecar["dim"]))
            index.load_index(str(Path(folder) / f"hnsw-{gen}.bin"), max_elements=int(sidecar["capacity"]))
        except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
            raise IndexStateError(
                f"the index in {folder} is damaged: {reason(exc)}",
                hint="run 'vecmetric index --rebuild'",
            ) from None
        if index.get_current_count() != int(sidecar.get("elements", -1)) or index.dim != int(sidecar["dim"]):
            raise IndexStateError(f"the index in {folder} does not match its sidecar", hint="run 'vecmetric index --rebuild'")
        return cls(folder, index, ids, sidecar)

    def add(self, vectors, labels, threads: int = -1) -> None:
        """Add vectors (float32 (N, dim)) under ``labels``, growing capacity as needed."""
        import numpy as np

        if len(labels) == 0:
            return
        needed = self.index.get_current_count() + len(labels)
        if needed > self.index.get_max_elements():
            self.index.resize_index(max(needed, int(self.index.get_max_elements() * 1.5)))
        self.index.add_items(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(labels, dtype=np.int64), num_threads=threads)
        self.ids = np.union1d(self.ids, np.asarray(labels, dtype=np.int64))

    def mark_deleted(self, labels) -> None:
        import numpy as np

        for label in labels:
            self.index.mark_deleted(int(label))
        self.ids = np.setdiff1d(self.ids, np.asarray(list(labels), dtype=np.int64))

    def query(self, vectors, k: int, ef: int | None = None, threads: int = -1, filter=None):
        """``(labels, distances)`` of the ``k`` nearest live vectors to each query.

        Args:
            vectors: float32 (Q, dim) queries.
            k: neighbours per query (clipped to the live count; with ``filter``, at most the number of
                labels it allows, or hnswlib cannot fill the rows).
            ef: search breadth (default the sidecar's); widened when too few neighbours come back.
            threads: hnswlib threads (-1: all cores); one with ``filter``, which calls back into Python.
            filter: ``label -> bool``: only labels it allows are returned (hnswlib searches on past the
                others, so the results are the nearest allowed ones, not the allowed among the nearest).
        """
        import numpy as np

        k = min(k, self.count)
        if k == 0:
            empty = np.zeros((len(vectors), 0))
            return empty.astype(np.int64), empty.astype(np.float32)
        ef = max(ef or int(self.sidecar.get("ef", 64)), k)
        if filter is not None:
            threads = 1  # each call of filter takes the GIL: more threads only wait for it
        while True:
            self.index.set_ef(ef)
            try:
                return self.index.knn_query(np.ascontiguousarray(vectors, dtype=np.float32), k=k, num_threads=threads, filter=filter)
            except RuntimeError:
                # Too few live neighbours reachable at this ef (many deletions): widen the search.
                if ef >= self.index.get_current_count():
                    raise IndexStateError("the index cannot return enough neighbours", hint="run 'vecmetric index --rebuild'") from None
                ef *= 2

    def vectors(self, labels):
        """The stored vectors of ``labels`` (float32 (N, dim); under cosine, hnswlib keeps them unit length).

        Raises:
            KeyError: a label is not in the index.
        """
        import numpy as np

        labels = [int(x) for x in labels]
        if not labels:
            return np.zeros((0, int(self.sidecar["dim"])), dtype=np.float32)
        try:
            return np.asarray(self.index.get_items(labels, return_type="numpy"), dtype=np.float32)
        except RuntimeError:
            missing = [x for x in labels if not self.has(x)]
            raise KeyError(missing[0] if missing else labels[0]) from None

    def has(self, label: int) -> bool:
        """Whether ``label`` is a live vector of the index."""
        import numpy as np

        at = int(np.searchsorted(self.ids, label))
        return at < len(self.ids) and int(self.ids[at]) == int(label)

    def save(self, **sidecar_updates: Any) -> None:
        """Write new files under a fresh generation, commit by replacing the sidecar, then tidy."""
        self.folder.mkdir(parents=True, exist_ok=True)
        gen = f"{time.time_ns():020d}-{uuid.uuid4().hex[:6]}"
        atomic_write(self.folder / f"hnsw-{gen}.bin", lambda tmp: self.index.save_index(str(tmp)))
        atomic_write(self.folder / f"ids-{gen}.npy", lambda tmp: _save_npy(tmp, self.ids))
        self.sidecar.update(sidecar_updates)
        self.sidecar.update(
            generation=gen,
            count=self.count,
            capacity=int(self.index.get_max_elements()),
            elements=int(self.index.get_current_count()),
            updated_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )
        atomic_write_json(self.folder / SIDECAR_NAME, self.sidecar)
        remove_dead_temporaries(self.folder)  # half-written files of a killed save (we hold the lock)
        for old in self.folder.iterdir():
            if old.name.startswith(("hnsw-", "ids-")) and gen not in old.name:
                try:
                    old.unlink()
                except OSError:
                    pass


def _save_npy(path: Path, array) -> None:
    import numpy as np

    with open(path, "wb") as fh:
        np.save(fh, array, allow_pickle=False)
