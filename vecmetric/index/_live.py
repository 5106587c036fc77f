"""``LiveIndex``: a store's index as a reader sees it, while writers keep working.

The index answers for the rows it was built from; since then ``embed`` may have added Parquet parts
(new rows) and rewritten or removed parts (deleted rows). A ``LiveIndex`` never takes the store's
lock and never reads a half-written index (the sidecar is the commit point and only names complete
files): each ``refresh`` picks up the newest committed generation, the rows that landed since (read
from their Parquet parts, once per part) and the rows deleted since (hidden in its own in-memory copy
of the index). ``query`` merges the index's answer with an exact search over the new rows, so every
answer reflects the store as it is on disk at that moment.

It has the interface the query code uses on an ``HnswIndex`` (``ids``, ``count``, ``metric``,
``vectors``, ``has``, ``query`` with a ``filter``), new rows included, so a search takes either.
``refresh`` is cheap when nothing changed: two ``stat`` calls (``vecmetric._stamp.FolderStamp``). It is not
thread-safe: callers that query from many threads refresh under an exclusive lock
(``vecmetric.query.SearchSession`` does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .._stamp import FolderStamp
from ..errors import IndexStateError, StoreError
from ..store import embeddings_to_numpy, open_store
from ._exact import exact_search
from ._hnsw import HnswIndex
from ._shards import ShardedIndex, load_index
from ._status import SIDECAR_NAME, sidecar_generations

__all__ = ["LiveIndex"]

_RETRIES = 5  # a writer may replace a part or a generation between our listing and our read


@dataclass
class _Part:
    """One Parquet part as last read: its ids, and its vectors when its rows may be missing from the index."""

    key: tuple[str, int, int]
    ids: Any
    vectors: Any | None


class LiveIndex:
    """The index of the store at ``path`` merged with the rows added and deleted since it was built.

    Args:
        path: the store folder.
        open_index: ``open_index(store)`` opens the committed index (default: ``load_index`` of its
            folder, in this process; a server on Ray passes one that holds the shards in Ray actors).
            An index it opened before is closed (``close``, if it has one) when a new generation replaces it.
    """

    def __init__(self, path, open_index=None):
        self.path = path
        self.open_index = open_index or (lambda store: load_index(store.index_dir))
        self.store = open_store(path)
        self._stamp = FolderStamp(self.store.path, self.store.index_dir)
        self.index: HnswIndex | ShardedIndex | None = None
        self._generation: str | None = None
        self._parts: dict[str, _Part] = {}
        self.tail_ids = None
        self.tail_vectors = None
        self.deleted = 0
        self._all_ids = None

    @property
    def metric(self) -> str:
        return self.index.metric if self.index is not None else self.store.metric

    @property
    def count(self) -> int:
        """Rows a query can find: the index's live rows plus the new ones."""
        return (self.index.count if self.index is not None else 0) + (0 if self.tail_ids is None else len(self.tail_ids))

    def changed(self) -> bool:
        """Whether the files on disk may differ from this view (False only when two ``stat`` calls prove they do not)."""
        return not self._stamp.unchanged()

    def refresh(self) -> "LiveIndex":
        """Bring the view up to date with the files on disk (two ``stat`` calls when nothing changed)."""
        if not self.changed():
            return self
        for _ in range(_RETRIES):
            try:
                self._refresh_once()
                return self
            except (FileNotFoundError, StoreError, IndexStateError):
                continue  # a part or an index generation was replaced under us: look again
        raise IndexStateError(f"the store {self.path} kept changing while it was read", hint="try again")

    def _refresh_once(self) -> None:
        import numpy as np

        taken = self._stamp.take()
        self.store = open_store(self.path)
        self._load_generation()
        snapshot = {name: (size, mtime) for name, size, mtime in (self.index.sidecar.get("store_snapshot") or [])} if self.index else {}
        live = self.store.snapshot()
        for name, size, mtime in live:
            key = (name, size, mtime)
            cached = self._parts.get(name)
            if cached is None or cached.key != key:
                indexed = snapshot.get(name) is not None  # a part the index was built from (maybe rewritten since)
                self._parts[name] = self._read_part(key, vectors=not indexed)
        for name in set(self._parts) - {name for name, _, _ in live}:
            del self._parts[name]
        parts = list(self._parts.values())
        store_ids = np.concatenate([p.ids for p in parts]) if parts else np.zeros(0, dtype=np.int64)
        indexed_ids = self.index.ids if self.index is not None else np.zeros(0, dtype=np.int64)
        gone = np.setdiff1d(indexed_ids, store_ids, assume_unique=True)
        if len(gone):
            self.index.mark_deleted(gone)  # our in-memory copy only; the file is the writer's
        self.deleted += int(len(gone))
        tails = [(p.ids, p.vectors) for p in parts if p.vectors is not None]
        ids = np.concatenate([t[0] for t in tails]) if tails else np.zeros(0, dtype=np.int64)
        vectors = np.concatenate([t[1] for t in tails]) if tails else np.zeros((0, self.store.dim), dtype=np.float32)
        keep = ~np.isin(ids, indexed_ids)
        order = np.argsort(ids[keep], kind="stable")
        self.tail_ids, self.tail_vectors = ids[keep][order], vectors[keep][order]
        self._all_ids = np.union1d(self.index.ids, self.tail_ids) if self.index is not None else self.tail_ids
        self._stamp.settle(taken)

    def _load_generation(self) -> None:
        from .._fsutil import read_json

        sidecar_path = self.store.index_dir / SIDECAR_NAME
        if not sidecar_path.is_file():
            self._replace_index(None)
            self._generation = None
            return
        generation = sidecar_generations(read_json(sidecar_path))
        if generation != self._generation or self.index is None:
            self._replace_index(self.open_index(self.store))
            self._generation = sidecar_generations(self.index.sidecar)
            self.deleted = 0
            self._parts.clear()  # which parts count as indexed depends on the generation's snapshot

    def _replace_index(self, index) -> None:
        old, self.index = self.index, index
        if old is not None and old is not index and hasattr(old, "close"):
            old.close()

    def close(self) -> None:
        """Close the index this view opened (its Ray actors, say)."""
        self._replace_index(None)

    def _read_part(self, key: tuple[str, int, int], vectors: bool) -> _Part:
        import pyarrow.parquet as pq

        part = self.store.path / key[0]
        try:
            table = pq.read_table(part, columns=["id", "embedding"] if vectors else ["id"])
        except FileNotFoundError:
            raise
        except (OSError, ValueError) as exc:
            raise StoreError(f"cannot read {part}: {exc}") from None
        ids = table.column("id").to_numpy()
        return _Part(key, ids, embeddings_to_numpy(table.column("embedding")) if vectors else None)

    @property
    def ids(self):
        """The sorted int64 ids a query can find: the index's live rows and the new ones."""
        import numpy as np

        return self._all_ids if self._all_ids is not None else np.zeros(0, dtype=np.int64)

    def has(self, label: int) -> bool:
        """Whether ``label`` is a row a query can find."""
        return (self.index is not None and self.index.has(label)) or self._tail_position(int(label)) is not None

    def _tail_position(self, label: int) -> int | None:
        import numpy as np

        if self.tail_ids is None or not len(self.tail_ids):
            return None
        at = int(np.searchsorted(self.tail_ids, label))
        return at if at < len(self.tail_ids) and int(self.tail_ids[at]) == label else None

    def vectors(self, labels):
        """The vectors of ``labels`` (float32 (N, dim)), from the index or the new rows.

        Raises:
            KeyError: a label is neither in the index nor among the new rows.
        """
        import numpy as np

        labels = [int(x) for x in labels]
        out = np.zeros((len(labels), self.store.dim), dtype=np.float32)
        in_index = [i for i, x in enumerate(labels) if self.index is not None and self.index.has(x)]
        if in_index:
            out[in_index] = self.index.vectors([labels[i] for i in in_index])
        for i, x in enumerate(labels):
            if self.index is None or not self.index.has(x):
                at = self._tail_position(x)
                if at is None:
                    raise KeyError(x)
                out[i] = self.tail_vectors[at]
        return out

    def query(self, vectors, k: int, ef: int | None = None, threads: int = -1, filter: Callable[[int], bool] | None = None):
        """``(labels, distances)``, each (Q, k'), nearest first: the index's live rows and the new rows, merged exactly.

        Args:
            vectors: float32 (Q, dim) queries.
            k: neighbours per query (fewer when fewer rows qualify).
            ef: HNSW search breadth (default the index's).
            threads: hnswlib threads (-1: all cores).
            filter: ``label -> bool``: only labels it allows are returned (as ``HnswIndex.query``).
        """
        import numpy as np

        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        parts = []
        index_k = 0 if self.index is None else min(k, self.index.count)
        if filter is not None and index_k and self.tail_ids is not None and len(self.tail_ids):
            # HnswIndex.query needs k <= the rows the filter allows in it, which a caller that counted the new rows too may exceed.
            index_k = min(index_k, int(np.fromiter((filter(int(i)) for i in self.index.ids), dtype=bool, count=self.index.count).sum()))
        if index_k:
            parts.append(self.index.query(vectors, index_k, ef=ef, threads=threads, filter=filter))
        if self.tail_ids is not None and len(self.tail_ids):
            tail_ids, tail_vectors = self.tail_ids, self.tail_vectors
            if filter is not None:
                keep = np.fromiter((filter(int(i)) for i in tail_ids), dtype=bool, count=len(tail_ids))
                tail_ids, tail_vectors = tail_ids[keep], tail_vectors[keep]
            if len(tail_ids):
                parts.append(exact_search(tail_vectors, vectors, k, metric=self.metric, ids=tail_ids))
        if not parts:
            empty = np.zeros((len(vectors), 0))
            return empty.astype(np.int64), empty.astype(np.float32)
        labels = np.concatenate([np.asarray(p[0], dtype=np.int64) for p in parts], axis=1)
        distances = np.concatenate([np.asarray(p[1], dtype=np.float32) for p in parts], axis=1)
        order = np.argsort(distances, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(labels, order, axis=1), np.take_along_axis(distances, order, axis=1)
