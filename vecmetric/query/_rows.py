"""Reading the few stored rows a search needs, straight from the Parquet parts.

``pyarrow.parquet`` rather than ``Store.read_table``: ``pyarrow.dataset`` imports pandas when it is
installed, which cost every ``search`` 0.3-0.9 s (benchmarks/cli_latency.py). Lookups by id or
path read only the row groups whose statistics (min/max of the column) can hold a wanted value:
``embed`` writes parts in path order and ids in increasing order, so a lookup reads a row group or two.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

from ..errors import StoreError, reason

__all__ = ["RowCatalog", "StoredRows", "read_columns", "rows_by_id", "rows_by_path"]


def _damaged(store, part, exc: BaseException) -> StoreError:
    return StoreError(
        f"store {store.path} has a damaged Parquet file ({part.name}): {reason(exc)}",
        hint="run 'vecmetric verify --repair' to drop damaged files, then embed again",
    )


def _text(value: Any) -> Any:
    """String statistics as str (some writers leave them as UTF-8 bytes)."""
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def _tables(store, columns: list[str], key: str | None = None, may_hold: Callable[[Any, Any], bool] | None = None) -> Iterator[Any]:
    """Each part's ``columns`` as a pyarrow Table, only the row groups whose ``key`` statistics ``may_hold`` a wanted value."""
    import pyarrow.parquet as pq

    for part in store.parts():
        try:
            parquet = pq.ParquetFile(part)
            meta = parquet.metadata
            if key is None:
                yield parquet.read(columns=columns)
                continue
            column = next(i for i in range(meta.num_columns) if meta.schema.column(i).path == key)
            groups = []
            for g in range(meta.num_row_groups):
                stats = meta.row_group(g).column(column).statistics
                if stats is None or not stats.has_min_max or may_hold(_text(stats.min), _text(stats.max)):
                    groups.append(g)
            if groups:
                yield parquet.read_row_groups(groups, columns=columns)
        except (OSError, ValueError, StopIteration) as exc:
            raise _damaged(store, part, exc) from None


def read_columns(store, columns: list[str]) -> Any:
    """All live rows' ``columns`` as one pyarrow Table (empty when the store has no rows).

    Raises:
        StoreError: a part file is damaged.
    """
    import pyarrow as pa

    from ..store import store_schema

    tables = list(_tables(store, columns))
    if not tables:
        return store_schema(store.dim).empty_table().select(columns)
    return pa.concat_tables(tables)


def _pylist(column) -> list:
    return column.to_pylist()  # ChunkedArray.to_numpy imports pandas


def rows_by_id(store, ids: Iterable[int], columns: Iterable[str] = ("path", "label")) -> dict[int, dict[str, Any]]:
    """``id -> {column: value}`` for the wanted ids that the store holds (missing ids are left out).

    Raises:
        StoreError: a part file is damaged.
    """
    import numpy as np

    wanted = np.unique(np.asarray(list(ids), dtype=np.int64))
    found: dict[int, dict[str, Any]] = {}
    if not len(wanted):
        return found
    names = ["id", *[c for c in columns if c != "id"]]
    for table in _tables(store, names, "id", lambda lo, hi: bool(((wanted >= lo) & (wanted <= hi)).any())):
        table_ids = np.asarray(_pylist(table.column("id")), dtype=np.int64)
        hits = np.flatnonzero(np.isin(table_ids, wanted))
        if len(hits):
            values = {c: table.column(c) for c in names}
            for row in hits.tolist():
                found[int(table_ids[row])] = {c: values[c][row].as_py() for c in names}
    return found


def rows_by_path(store, paths: Iterable[str], columns: Iterable[str] = ("id", "size", "mtime_ns")) -> dict[str, dict[str, Any]]:
    """``path -> {column: value}`` for the wanted paths (absolute, as the store writes them) that the store holds.

    Raises:
        StoreError: a part file is damaged.
    """
    wanted = sorted(set(paths))
    found: dict[str, dict[str, Any]] = {}
    if not wanted:
        return found
    names = ["path", *[c for c in columns if c != "path"]]
    wanted_set = set(wanted)
    for table in _tables(store, names, "path", lambda lo, hi: any(lo <= p <= hi for p in wanted)):
        # Plain Python, not pyarrow.compute.is_in: building its value set with pa.array imports pandas (0.3-0.5 s).
        hits = [row for row, path in enumerate(_pylist(table.column("path"))) if path in wanted_set]
        for row in hits:
            record = {c: table.column(c)[row].as_py() for c in names}
            found[record["path"]] = record
    return found


class StoredRows:
    """The stored rows as the query code reads them: straight from the Parquet parts, on every call.

    Args:
        store: the open store.
    """

    def __init__(self, store):
        self.store = store

    def by_id(self, ids: Iterable[int], columns: Iterable[str] = ("path", "label")) -> dict[int, dict[str, Any]]:
        """As ``rows_by_id``."""
        return rows_by_id(self.store, ids, columns)

    def by_path(self, paths: Iterable[str], columns: Iterable[str] = ("id", "size", "mtime_ns")) -> dict[str, dict[str, Any]]:
        """As ``rows_by_path``."""
        return rows_by_path(self.store, paths, columns)

    def columns(self, names: list[str]) -> Any:
        """As ``read_columns``."""
        return read_columns(self.store, names)

    def refresh(self) -> "StoredRows":
        """Nothing to do: every call reads the parts as they are."""
        return self


class RowCatalog(StoredRows):
    """Every stored row's metadata (all columns but the embedding) held in memory, for a long-lived reader.

    A server looks rows up on every request; reading them from the Parquet parts costs ~10 ms a
    lookup on 100,000 rows (each part's footer is parsed), the catalog ~0.1 ms. ``refresh`` reads
    again only the parts that changed (by name, size and mtime), and nothing at all while a
    ``FolderStamp`` proves the store's folder unchanged. It is not thread-safe: refresh it where no
    lookup runs (``SearchSession`` does, under its lock).
    """

    COLUMNS = ("id", "path", "size", "mtime_ns", "content_hash", "label")

    def __init__(self, store):
        from .._stamp import FolderStamp

        super().__init__(store)
        self._stamp = FolderStamp(store.path)
        self._parts: dict[str, tuple[tuple, Any]] = {}
        self._table = None
        self._sorted_ids = self._order = None
        self._by_path: dict[str, int] | None = None
        self._lists: dict[str, list] = {}

    def refresh(self) -> "RowCatalog":
        """Bring the catalog up to date with the parts on disk.

        Raises:
            StoreError: a part file is damaged (or went away while it was read: call again).
        """
        import numpy as np
        import pyarrow as pa
        import pyarrow.parquet as pq

        from ..store import store_schema

        if self._table is not None and self._stamp.unchanged():
            return self
        taken = self._stamp.take()
        try:
            live = self.store.snapshot()
        except FileNotFoundError as exc:  # a part went away between the listing and its stat
            raise _damaged(self.store, self.store.path / str(exc.filename or "?"), exc) from None
        for name, size, mtime in live:
            cached = self._parts.get(name)
            if cached is None or cached[0] != (name, size, mtime):
                part = self.store.path / name
                try:
                    self._parts[name] = ((name, size, mtime), pq.read_table(part, columns=list(self.COLUMNS)))
                except (OSError, ValueError) as exc:
                    raise _damaged(self.store, part, exc) from None
        names = {name for name, _, _ in live}
        for name in [n for n in self._parts if n not in names]:
            del self._parts[name]
        tables = [self._parts[name][1] for name, _, _ in live]
        # One chunk per column: take() on a table of many chunks costs ~1 ms, on one ~20 µs.
        self._table = (pa.concat_tables(tables) if tables else store_schema(self.store.dim).empty_table().select(list(self.COLUMNS))).combine_chunks()
        ids = np.asarray(_pylist(self._table.column("id")), dtype=np.int64)
        self._order = np.argsort(ids, kind="stable")
        self._sorted_ids = ids[self._order]
        self._by_path = None
        self._lists = {}
        self._stamp.settle(taken)
        return self

    def _rows(self, positions, names: list[str]) -> list[dict[str, Any]]:
        # Python lists of the columns asked for, made once per refresh: a server looks rows up on every
        # request, and pyarrow's take() + to_pylist() cost ~0.4 ms a call where indexing lists costs µs.
        for name in names:
            if name not in self._lists:
                self._lists[name] = _pylist(self._table.column(name))
        columns = [self._lists[name] for name in names]
        return [dict(zip(names, (column[p] for column in columns))) for p in (int(x) for x in positions)]

    def by_id(self, ids: Iterable[int], columns: Iterable[str] = ("path", "label")) -> dict[int, dict[str, Any]]:
        """``id -> {column: value}`` for the wanted ids the catalog holds, as ``rows_by_id``."""
        import numpy as np

        if self._table is None:
            self.refresh()
        wanted = np.unique(np.asarray(list(ids), dtype=np.int64))
        if not len(wanted) or not len(self._sorted_ids):
            return {}
        at = np.minimum(np.searchsorted(self._sorted_ids, wanted), len(self._sorted_ids) - 1)
        hit = self._sorted_ids[at] == wanted
        names = ["id", *[c for c in columns if c != "id"]]
        return {int(row["id"]): row for row in self._rows(self._order[at[hit]], names)}

    def by_path(self, paths: Iterable[str], columns: Iterable[str] = ("id", "size", "mtime_ns")) -> dict[str, dict[str, Any]]:
        """``path -> {column: value}`` for the wanted paths the catalog holds, as ``rows_by_path``."""
        if self._table is None:
            self.refresh()
        if self._by_path is None:
            self._by_path = {path: row for row, path in enumerate(_pylist(self._table.column("path")))}
        positions = [self._by_path[p] for p in sorted(set(paths)) if p in self._by_path]
        names = ["path", *[c for c in columns if c != "path"]]
        return {row["path"]: row for row in self._rows(positions, names)}

    def columns(self, names: list[str]) -> Any:
        """Every row's ``names`` columns as one pyarrow Table."""
        if self._table is None:
            self.refresh()
        return self._table.select(names)
