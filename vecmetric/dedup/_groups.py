"""Groups of duplicates: byte-identical files and near pairs joined into connected components, keepers chosen.

How exact and near relate (a file is in one group only):

1. Rows with the same content hash are joined first (byte-identical files).
2. Near pairs then join rows, and with them whole exact sets, into connected components
   (union-find over both kinds of link).
3. A component whose rows all share one content hash is a group of kind ``exact``; any other
   component of two or more rows is ``near``, and lists its byte-identical files too, so a file
   that is both identical to one file and near another appears once, in the near group.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from ..errors import InputError
from ..index import pairwise_distances

KEEP_POLICIES = ("oldest", "newest", "largest", "shortest-path")


@dataclass
class Rows:
    """The store rows dedup looks at, as parallel sequences (position i describes one row).

    ``side`` is 0 for the store being cleaned and 1 for the reference store of ``--against``.
    """

    ids: Any
    paths: Sequence[str]
    sizes: Any
    mtime_ns: Any
    content_hashes: Sequence[str]
    side: Any = None

    def __post_init__(self) -> None:
        import numpy as np

        self.ids = np.asarray(self.ids, dtype=np.int64)
        self.sizes = np.asarray(self.sizes, dtype=np.int64)
        self.mtime_ns = np.asarray(self.mtime_ns, dtype=np.int64)
        self.side = np.zeros(len(self.ids), dtype=np.int8) if self.side is None else np.asarray(self.side, dtype=np.int8)
        if not (len(self.ids) == len(self.paths) == len(self.sizes) == len(self.mtime_ns) == len(self.content_hashes) == len(self.side)):
            raise ValueError("Rows: every column needs one entry per row")

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_table(cls, table, side: int = 0) -> "Rows":
        """From a pyarrow Table with the store's ``id``, ``path``, ``size``, ``mtime_ns`` and ``content_hash`` columns."""
        import numpy as np

        n = table.num_rows
        return cls(
            ids=np.asarray(table.column("id").to_pylist(), dtype=np.int64),
            paths=table.column("path").to_pylist(),
            sizes=np.asarray([v or 0 for v in table.column("size").to_pylist()], dtype=np.int64),
            mtime_ns=np.asarray([v or 0 for v in table.column("mtime_ns").to_pylist()], dtype=np.int64),
            content_hashes=table.column("content_hash").to_pylist(),
            side=np.full(n, side, dtype=np.int8),
        )

    @classmethod
    def concat(cls, first: "Rows", second: "Rows") -> "Rows":
        import numpy as np

        return cls(
            np.concatenate([first.ids, second.ids]),
            list(first.paths) + list(second.paths),
            np.concatenate([first.sizes, second.sizes]),
            np.concatenate([first.mtime_ns, second.mtime_ns]),
            list(first.content_hashes) + list(second.content_hashes),
            np.concatenate([first.side, second.side]),
        )


@dataclass
class Member:
    """One file of a group: ``distance`` to the group's keeper; ``keep`` False for the files to set aside."""

    path: str
    id: int
    distance: float
    keep: bool
    side: int = 0
    content_hash: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "id": self.id, "distance": self.distance, "keep": self.keep}


@dataclass
class Group:
    """A group of duplicates; ``members[0]`` is the keeper."""

    group: int
    kind: str  # "exact" or "near"
    members: list[Member] = field(default_factory=list)

    @property
    def keeper(self) -> Member:
        return self.members[0]

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` line: ``{"group", "kind", "files": [{"path", "id", "distance", "keep"}]}``."""
        return {"group": self.group, "kind": self.kind, "files": [m.to_dict() for m in self.members]}

    def to_rows(self) -> list[dict[str, Any]]:
        """The ``--csv`` rows: ``group, kind, path, id, distance, keep``."""
        return [{"group": self.group, "kind": self.kind, **m.to_dict()} for m in self.members]


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, a: int) -> int:
        parent = self.parent
        root = a
        while parent[root] != root:
            root = parent[root]
        while parent[a] != root:  # path compression
            parent[a], a = root, parent[a]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def keeper_key(policy: str):
    """The sort key that puts a policy's keeper first: ``key(path, size, mtime_ns)``.

    ``oldest``/``newest``: file modification time; ``largest``: size in bytes; ``shortest-path``:
    fewest characters. Ties go to the shorter path, then to the path that sorts first.

    Raises:
        InputError: an unknown policy.
    """
    keys = {
        "oldest": lambda path, size, mtime: (mtime, len(path), path),
        "newest": lambda path, size, mtime: (-mtime, len(path), path),
        "largest": lambda path, size, mtime: (-size, len(path), path),
        "shortest-path": lambda path, size, mtime: (len(path), path),
    }
    if policy not in keys:
        raise InputError(f"unknown keep policy {policy!r}", hint=f"choose one of {', '.join(KEEP_POLICIES)}")
    return keys[policy]


def _finder(rows: Rows, side: int):
    """A function from row ids of one side to their positions in ``rows``."""
    import numpy as np

    where = np.flatnonzero(rows.side == side)
    order = np.argsort(rows.ids[where], kind="stable")
    sorted_ids = rows.ids[where][order]
    return lambda wanted: where[order[np.searchsorted(sorted_ids, wanted)]]


def components(rows: Rows, pairs=None, against: bool = False) -> list[list[int]]:
    """Connected components (row positions, two or more rows each) over same-hash links and ``pairs``.

    Args:
        rows: the rows.
        pairs: ``NearPairs`` (``left`` ids of side 0; ``right`` ids of side 1 when ``against``,
            else of side 0), or None for byte-identical files only.
        against: keep only components with rows of both sides.
    """
    n = len(rows)
    uf = _UnionFind(n)
    first_with_hash: dict[str, int] = {}
    for i, digest in enumerate(rows.content_hashes):
        if digest:
            uf.union(first_with_hash.setdefault(digest, i), i)
    if pairs is not None and len(pairs):
        a = _finder(rows, 0)(pairs.left)
        b = _finder(rows, 1 if against else 0)(pairs.right)
        for i, j in zip(a.tolist(), b.tolist()):
            uf.union(i, j)
    members: dict[int, list[int]] = {}
    for i in range(n):
        members.setdefault(uf.find(i), []).append(i)
    out = [m for m in members.values() if len(m) > 1]
    if against:
        out = [m for m in out if len(set(rows.side[m].tolist())) > 1]
    return out


def build_groups(rows: Rows, vectors, metric: str, pairs=None, keep: str = "oldest", against: bool = False) -> list[Group]:
    """Groups of duplicates with their keepers and each member's distance to its keeper.

    Args:
        rows: the rows (with ``side`` 1 for the reference store when ``against``).
        vectors: their vectors, (N, D), in the same order.
        metric: the distance of the store's index (``cosine``, ``ip``, ``l2``).
        pairs: ``NearPairs`` from ``near_pairs`` (row ids of ``rows``); None: byte-identical files only.
        keep: the keeper policy, one of ``KEEP_POLICIES``.
        against: groups must join the two sides; the keeper is chosen among the reference
            store's rows, all of which are kept (only this store's files are set aside).

    Returns:
        Groups numbered from 0 in the order of their keepers' paths; in each, the keeper first,
        then the others by distance and path. Distances are exact (``pairwise_distances``),
        0.0 for a file with the keeper's content hash.

    Raises:
        InputError: an unknown keep policy.
    """
    import numpy as np

    key = keeper_key(keep)
    vectors = np.asarray(vectors, dtype=np.float32)
    found = []
    for comp in components(rows, pairs, against):
        candidates = [i for i in comp if rows.side[i] == 1] if against else comp
        keeper = min(candidates, key=lambda i: key(rows.paths[i], int(rows.sizes[i]), int(rows.mtime_ns[i])))
        dist = pairwise_distances(vectors[keeper : keeper + 1], vectors[comp], metric)[0]
        if metric != "ip":
            dist = np.maximum(dist, 0.0)
        same_hash = len({rows.content_hashes[i] for i in comp}) == 1 and bool(rows.content_hashes[keeper])
        ranked = []
        for i, d in zip(comp, dist.tolist()):
            identical = bool(rows.content_hashes[keeper]) and rows.content_hashes[i] == rows.content_hashes[keeper]
            kept = bool(i == keeper or (against and rows.side[i] == 1))  # a plain bool: --json prints it
            member = Member(rows.paths[i], int(rows.ids[i]), 0.0 if identical else float(d), kept, int(rows.side[i]), rows.content_hashes[i])
            ranked.append(((i != keeper, member.distance, member.path), member))
        members = [m for _, m in sorted(ranked, key=lambda t: t[0])]
        found.append(Group(-1, "exact" if same_hash else "near", members))
    found.sort(key=lambda g: g.keeper.path)
    for number, group in enumerate(found):
        group.group = number
    return found
