"""The Parquet store: live rows in ``part-*.parquet``, everything else under ``_`` names.

Layout of a store folder::

    part-<time>-<uid>.parquet   live rows (pandas, DuckDB and pyarrow read exactly these)
    _manifest.json              model, dimension, metric, versions, counts, next row id
    _errors.jsonl               files the last embed run skipped, and why
    _lock                       present while a process writes
    _index/                     the HNSW index and its sidecar

Every file is written under a temporary ``_`` name and renamed into place, so a
process killed at any moment leaves a readable store.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from pathlib import Path
from typing import Any, Iterable, Iterator

from .._fsutil import atomic_write, atomic_write_json, fsync_dir
from ..errors import StoreError, StoreMismatchError, reason

MANIFEST_NAME = "_manifest.json"
ERRORS_NAME = "_errors.jsonl"
INDEX_DIR = "_index"
PART_PREFIX = "part-"
PART_SUFFIX = ".parquet"
STORE_FORMAT = "vecmetric-store"
MODEL_METADATA_KEY = b"vecmetric.model"
META_COLUMNS = ["id", "path", "size", "mtime_ns", "content_hash", "label", "model"]


def store_schema(dim: int):
    """The Arrow schema of a store's rows."""
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("id", pa.int64(), nullable=False),
            pa.field("path", pa.string(), nullable=False),
            pa.field("size", pa.int64()),
            pa.field("mtime_ns", pa.int64()),
            pa.field("content_hash", pa.string()),
            pa.field("label", pa.string()),
            pa.field("model", pa.string()),
            pa.field("embedding", pa.list_(pa.float32(), dim)),
        ]
    )


def embeddings_to_numpy(column) -> "Any":
    """A ``fixed_size_list<float32>[dim]`` column (array or chunked) as a float32 (N, dim) array."""
    import numpy as np
    import pyarrow as pa

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    dim = column.type.list_size
    if len(column) == 0:
        return np.zeros((0, dim), dtype=np.float32)
    return column.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(-1, dim)


def numpy_to_embeddings(vectors) -> "Any":
    import numpy as np
    import pyarrow as pa

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])


@contextlib.contextmanager
def writing_to(path: Path) -> Iterator[None]:
    """Turn a failed write (disk full, file too large, read-only, permissions) into a StoreError.

    The write that failed leaves only a temporary ``_`` file behind, which atomic_write removes;
    rows written before it stay in the store.
    """
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise StoreError(
            f"cannot write to store {path}: {reason}",
            hint="free disk space or fix permissions, then run the command again; work written so far is kept",
        ) from None


class Store:
    """A vecmetric store folder. Use ``open_store`` or ``create_store`` to get one."""

    def __init__(self, path: Path, manifest: dict[str, Any]):
        self.path = Path(path)
        self.manifest = manifest

    # --- what the store is ---------------------------------------------------------------------
    @property
    def model(self) -> dict[str, Any]:
        return self.manifest["model"]

    @property
    def dim(self) -> int:
        return int(self.model["dim"])

    @property
    def metric(self) -> str:
        return self.model.get("metric", "cosine")

    @property
    def index_dir(self) -> Path:
        return self.path / INDEX_DIR

    def parts(self) -> list[Path]:
        """The live Parquet files, oldest first."""
        return sorted(p for p in self.path.iterdir() if p.name.startswith(PART_PREFIX) and p.name.endswith(PART_SUFFIX))

    def snapshot(self) -> list[list]:
        """Names, sizes and mtimes of the live files: changes whenever the rows change."""
        out = []
        for part in self.parts():
            st = part.stat()
            out.append([part.name, st.st_size, st.st_mtime_ns])
        return out

    def check_model(self, encoder) -> None:
        """Raise ``StoreMismatchError`` unless ``encoder`` is the model that made this store."""
        mine = self.model
        if encoder.fingerprint != mine["fingerprint"] or encoder.dim != self.dim:
            raise StoreMismatchError(
                f"store {self.path} holds vectors of model {mine['spec']} (dim {mine['dim']}, "
                f"fingerprint {mine['fingerprint']}), not of {encoder.spec} (dim {encoder.dim}, fingerprint {encoder.fingerprint})",
                hint="leave out --model to use the store's own model, or choose another --store",
            )

    # --- reading -------------------------------------------------------------------------------
    def dataset(self, parts: list[Path] | None = None):
        import pyarrow.dataset as ds

        files = self.parts() if parts is None else parts
        return ds.dataset([str(p) for p in files], schema=store_schema(self.dim), format="parquet")

    def read_table(self, columns: list[str] | None = None, filter=None, parts: list[Path] | None = None):
        """Read live rows as a pyarrow Table (all columns unless ``columns`` names some).

        Args:
            columns: the columns to read (default all).
            filter: a pyarrow.compute expression selecting rows.
            parts: read only these part files (default all).

        Raises:
            StoreError: a part file is damaged.
        """
        try:
            return self.dataset(parts).to_table(columns=columns, filter=filter)
        except (OSError, ValueError) as exc:  # ArrowInvalid is a ValueError
            raise StoreError(
                f"store {self.path} has a damaged Parquet file: {reason(exc)}",
                hint="'vecmetric verify --repair' sets damaged files aside; then embed again to restore their rows",
            ) from None

    def iter_batches(self, columns: list[str] | None = None, batch_size: int = 65536, filter=None, use_threads: bool = True) -> Iterator:
        """Stream live rows as pyarrow RecordBatches, so memory stays flat.

        ``use_threads=False`` decodes in the calling thread only: for readers that run beside
        a multi-threaded consumer (the index build) and should not compete with it for cores.
        """
        try:
            yield from self.dataset().to_batches(columns=columns, batch_size=batch_size, filter=filter, use_threads=use_threads)
        except (OSError, ValueError) as exc:
            raise StoreError(
                f"store {self.path} has a damaged Parquet file: {reason(exc)}",
                hint="'vecmetric verify --repair' sets damaged files aside; then embed again to restore their rows",
            ) from None

    def count(self) -> int:
        return sum(self._part_rows(p) for p in self.parts())

    def _part_rows(self, part: Path) -> int:
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(part).metadata.num_rows
        except (OSError, ValueError) as exc:
            raise StoreError(f"damaged Parquet file {part}: {exc}", hint="run 'vecmetric verify --repair'") from None

    def vectors_for_hashes(self, hashes: Iterable[str]) -> dict[str, Any]:
        """One stored vector per content hash asked for (to reuse for renamed or duplicate files)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        wanted = sorted(set(hashes))
        if not wanted:
            return {}
        table = self.read_table(["content_hash", "embedding"], filter=pc.field("content_hash").isin(pa.array(wanted)))
        vectors = embeddings_to_numpy(table.column("embedding"))
        return dict(zip(table.column("content_hash").to_pylist(), vectors))

    # --- writing -------------------------------------------------------------------------------
    def append(self, rows) -> Path:
        """Write a pyarrow Table of rows as a new part file, atomically."""
        import pyarrow.parquet as pq

        name = f"{PART_PREFIX}{time.time_ns():020d}-{uuid.uuid4().hex[:8]}{PART_SUFFIX}"
        target = self.path / name
        # Each file carries the model description, so a lost manifest can be rebuilt from the data.
        schema = store_schema(self.dim).with_metadata({MODEL_METADATA_KEY: json.dumps(self.model)})
        with writing_to(self.path):
            atomic_write(target, lambda tmp: pq.write_table(rows.cast(schema), tmp, compression="zstd"))
        return target

    def delete_ids(self, ids: Iterable[int]) -> int:
        """Remove rows by id, rewriting each affected part in place (atomic per file). Returns rows removed."""
        import pyarrow.compute as pc

        return self._rewrite_rows(ids, lambda table, hit: table.filter(pc.invert(hit)))

    def relabel(self, labels: dict[int, str | None]) -> int:
        """Give rows new labels by id, rewriting each affected part in place (atomic per file). Returns rows relabelled."""
        import pyarrow as pa

        def change(table, hit):
            old = table.column("label").to_pylist()
            ids = table.column("id").to_pylist()
            new = [labels.get(row_id, label) if flag else label for row_id, label, flag in zip(ids, old, hit.to_pylist())]
            return table.set_column(table.schema.get_field_index("label"), "label", pa.array(new, pa.string()))

        return self._rewrite_rows(labels, change)

    def _rewrite_rows(self, ids: Iterable[int], change) -> int:
        """Rewrite the parts holding any of ``ids``: ``change(table, hit_mask)`` gives each part's new rows.

        A part left with no rows is removed. Returns how many rows were hit.
        """
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        wanted = pa.array(sorted(set(int(i) for i in ids)), pa.int64())
        if len(wanted) == 0:
            return 0
        hits = 0
        for part in self.parts():
            hit = pc.is_in(pq.read_table(part, columns=["id"]).column("id"), value_set=wanted)
            n_hit = pc.sum(hit).as_py() or 0
            if not n_hit:
                continue
            hits += n_hit
            kept = change(pq.read_table(part), hit.combine_chunks())  # keeps the schema's metadata
            with writing_to(self.path):
                if kept.num_rows == 0:
                    part.unlink()
                else:
                    atomic_write(part, lambda tmp, kept=kept: pq.write_table(kept, tmp, compression="zstd"))
        fsync_dir(self.path)
        return hits

    # --- manifest ------------------------------------------------------------------------------
    @property
    def roots(self) -> list[str]:
        """The folders this store was embedded from (absolute), oldest first; stores made before they were recorded have none."""
        return list(self.manifest.get("roots", []))

    def add_root(self, root: str) -> None:
        """Record ``root`` (absolute) as an embed root, once."""
        if root not in self.roots:
            self.write_manifest(roots=[*self.roots, root])

    def write_manifest(self, **updates: Any) -> None:
        self.manifest.update(updates)
        self.manifest["updated_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with writing_to(self.path):
            atomic_write_json(self.path / MANIFEST_NAME, self.manifest)

    def write_errors(self, errors: list[dict[str, Any]]) -> None:
        """Replace the error log with the skips of the latest run (one JSON object per line)."""
        text = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in errors)
        with writing_to(self.path):
            atomic_write(self.path / ERRORS_NAME, lambda tmp: tmp.write_text(text, encoding="utf-8"))

    def read_errors(self) -> list[dict[str, Any]]:
        path = self.path / ERRORS_NAME
        if not path.exists():
            return []
        out = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out
