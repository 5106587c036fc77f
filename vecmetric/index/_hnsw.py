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

from .._fsutil import atomic_write, atomic_write_bytes, atomic_write_json, read_json, remove_dead_temporaries
from ..distances import get_metric
from ..errors import IndexStateError, reason
from ._status import INDEX_FORMAT, SIDECAR_NAME, sidecar_generations


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

    @staticmethod
    def new_sidecar(dim: int, params: IndexParams) -> dict[str, Any]:
        """The parameters a new index records (the rest is added when it is saved)."""
        return {
            "format": INDEX_FORMAT,
            "format_version": 1,
            "space": get_metric(params.metric).space,
            "metric": params.metric,
            "dim": dim,
            "M": params.m,
            "ef_construction": params.ef_construction,
            "ef": params.ef,
        }

    @classmethod
    def create(cls, folder: Path, dim: int, params: IndexParams, capacity: int) -> "HnswIndex":
        import hnswlib
        import numpy as np

        sidecar = cls.new_sidecar(dim, params)
        index = hnswlib.Index(space=sidecar["space"], dim=dim)
        index.init_index(max_elements=max(capacity, 1), ef_construction=params.ef_construction, M=params.m, random_seed=100)
        return cls(folder, index, np.zeros(0, dtype=np.int64), sidecar)

    @classmethod
    def load(cls, folder: Path) -> "HnswIndex":
        """Open the (unsharded) index in ``folder``.

        Raises:
            IndexStateError: missing, or the files do not agree with the sidecar.
        """
        sidecar_path = Path(folder) / SIDECAR_NAME
        if not sidecar_path.is_file():
            raise IndexStateError(f"no index in {folder}", hint="run 'vecmetric index'")
        try:
            sidecar = read_json(sidecar_path)
        except (OSError, ValueError) as exc:
            raise IndexStateError(f"the index in {folder} is damaged: {reason(exc)}", hint="run 'vecmetric index --rebuild'") from None
        return cls.load_generation(folder, sidecar, sidecar)

    @classmethod
    def load_generation(cls, folder: Path, sidecar: dict[str, Any], files: dict[str, Any]) -> "HnswIndex":
        """Open the files of one generation: ``files`` holds its ``generation``, ``capacity`` and ``elements``
        (the sidecar itself for an unsharded index, one entry of its ``shards`` for a shard).

        Raises:
            IndexStateError: the files are missing, unreadable or do not agree with ``files``.
        """
        import hnswlib
        import numpy as np

        try:
            gen = files["generation"]
            ids = np.load(Path(folder) / f"ids-{gen}.npy", allow_pickle=False)
            index = hnswlib.Index(space=sidecar["space"], dim=int(sidecar["dim"]))
            index.load_index(str(Path(folder) / f"hnsw-{gen}.bin"), max_elements=int(files["capacity"]))
        except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
            raise IndexStateError(
                f"the index in {folder} is damaged: {reason(exc)}",
                hint="run 'vecmetric index --rebuild'",
            ) from None
        if index.get_current_count() != int(files.get("elements", -1)) or index.dim != int(sidecar["dim"]):
            raise IndexStateError(f"the index in {folder} does not match its sidecar", hint="run 'vecmetric index --rebuild'")
        return cls(folder, index, ids, sidecar)

    @staticmethod
    def header_disagrees(folder: Path, files: dict[str, Any]) -> str | None:
        """Why a generation's hnswlib file disagrees with ``files`` (its ``capacity`` and ``elements``),
        or None: a check of the file's header that does not load the graph (an update leaves most
        shards unloaded). hnswlib's file starts with three size_t: level-0 offset, max elements,
        element count."""
        import struct

        try:
            with open(Path(folder) / f"hnsw-{files['generation']}.bin", "rb") as fh:
                _, capacity, elements = struct.unpack("<QQQ", fh.read(24))
        except (OSError, KeyError, struct.error) as exc:
            return f"its file cannot be read ({reason(exc)})"
        if (capacity, elements) != (int(files.get("capacity", -1)), int(files.get("elements", -1))):
            return "its file does not match the sidecar"
        return None

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
            k: neighbours per query (clipped to the live count; with ``filter``, to the number of
                live labels it allows).
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
                # Too few live neighbours reachable at this ef (many deletions, or a narrow filter): widen the search.
                if ef >= self.index.get_current_count():
                    if filter is not None:
                        allowed = sum(1 for label in self.ids.tolist() if filter(label))
                        if allowed < k:  # fewer rows of this index pass (one shard of several, say): all of them
                            return self.query(vectors, allowed, ef=ef, threads=threads, filter=filter)
                        raise IndexStateError(f"fewer than {k} indexed rows pass the filter") from None
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

    def write_generation(self, generation: str | None = None) -> dict[str, Any]:
        """Write the index and its ids under a fresh generation (nothing refers to them yet).

        Returns:
            What a sidecar records of them: ``generation``, ``count``, ``capacity``, ``elements``.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        gen = generation or new_generation()
        atomic_write(self.folder / f"hnsw-{gen}.bin", lambda tmp: self.index.save_index(str(tmp)))
        atomic_write(self.folder / f"ids-{gen}.npy", lambda tmp: _save_npy(tmp, self.ids))
        return {"generation": gen, "count": self.count, "capacity": int(self.index.get_max_elements()), "elements": int(self.index.get_current_count())}

    def save(self, **sidecar_updates: Any) -> None:
        """Write new files under a fresh generation, commit by replacing the sidecar, then tidy."""
        files = self.write_generation()
        self.sidecar.update(sidecar_updates)
        self.sidecar.update(files, updated_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        commit_sidecar(self.folder, self.sidecar)


def write_generation_bytes(folder: Path, generation: str, index_bytes: bytes, ids) -> None:
    """Write an index saved elsewhere (``hnswlib``'s file, as bytes) and its ids under ``generation``."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(Path(folder) / f"hnsw-{generation}.bin", index_bytes)
    atomic_write(Path(folder) / f"ids-{generation}.npy", lambda tmp: _save_npy(tmp, ids))


def new_generation(prefix: str = "") -> str:
    """A generation name no earlier write used: time, then random (``prefix`` names a shard)."""
    return f"{prefix}{time.time_ns():020d}-{uuid.uuid4().hex[:6]}"


def commit_sidecar(folder: Path, sidecar: dict[str, Any]) -> None:
    """Replace the sidecar (the one commit point: readers see all old files or all new ones), then
    remove the files of other generations and what a killed save left (the caller holds the lock)."""
    atomic_write_json(folder / SIDECAR_NAME, sidecar)
    remove_dead_temporaries(folder)
    keep = set(sidecar_generations(sidecar))
    for old in folder.iterdir():
        if old.name.startswith(("hnsw-", "ids-")) and old.name.split("-", 1)[1].rsplit(".", 1)[0] not in keep:
            try:
                old.unlink()
            except OSError:
                pass


def _save_npy(path: Path, array) -> None:
    import numpy as np

    with open(path, "wb") as fh:
        np.save(fh, array, allow_pickle=False)
