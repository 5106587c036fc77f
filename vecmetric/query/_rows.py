"""Reading the few stored rows a search needs, straight from the Parquet parts.

``pyarrow.parquet`` rather than ``Store.read_table``: ``pyarrow.dataset`` imports pandas when it is
installed, which cost every ``search`` 0.3-0.9 s (benchmarks/cli_latency.py). Lookups by id or
path read only the row groups whose statistics (min/max of the column) can hold a wanted value:
``embed`` writes parts in path order and ids in increasing order, so a lookup reads a row group or two.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

from ..errors import StoreError, reason

__all__ = ["read_columns", "rows_by_id", "rows_by_path"]


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
