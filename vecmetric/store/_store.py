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
import os
import time
import uuid
from pathlib import Path
from typing import Any, Iterable, Iterator

from .. import __version__
from .._fsutil import atomic_write, atomic_write_json, fsync_dir, read_json
from ..errors import ManifestError, StoreError, StoreMismatchError

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
                f"store {self.path} has a damaged Parquet file: {str(exc).splitlines()[0][:200]}",
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
                f"store {self.path} has a damaged Parquet file: {str(exc).splitlines()[0][:200]}",
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
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        doomed = pa.array(sorted(set(int(i) for i in ids)), pa.int64())
        if len(doomed) == 0:
            return 0
        removed = 0
        for part in self.parts():
            ids_in_part = pq.read_table(part, columns=["id"]).column("id")
            hit = pc.is_in(ids_in_part, value_set=doomed)
            n_hit = pc.sum(hit).as_py() or 0
            if not n_hit:
                continue
            removed += n_hit
            if n_hit == len(ids_in_part):
                with writing_to(self.path):
                    part.unlink()
                continue
            kept = pq.read_table(part).filter(pc.invert(hit))  # keeps the schema's metadata
            with writing_to(self.path):
                atomic_write(part, lambda tmp, kept=kept: pq.write_table(kept, tmp, compression="zstd"))
        fsync_dir(self.path)
        return removed

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


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"vecmetric": __version__}
    for pkg in ("torch", "timm", "open_clip_torch", "pyarrow", "hnswlib"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def open_store(path: str | os.PathLike) -> Store:
    """Open an existing store.

    Raises:
        StoreError: no store at ``path``, or its manifest is unreadable.
    """
    path = Path(path)
    manifest_path = path / MANIFEST_NAME
    if not manifest_path.is_file():
        if any(path.glob(f"{PART_PREFIX}*{PART_SUFFIX}")):
            raise ManifestError(f"the store {path} has lost its {MANIFEST_NAME}", hint="'vecmetric verify --repair' rebuilds it from the data")
        if path.is_dir() and any(path.iterdir()):
            raise StoreError(f"{path} is not a vecmetric store (no {MANIFEST_NAME})")
        raise StoreError(f"no store at {path}", hint="create one with 'vecmetric embed FOLDER --store " + str(path) + "'")
    try:
        manifest = read_json(manifest_path)
        if not isinstance(manifest, dict) or manifest.get("format") != STORE_FORMAT or "model" not in manifest:
            raise ValueError("not a vecmetric store manifest")
        int(manifest["model"]["dim"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ManifestError(f"the manifest {manifest_path} is damaged: {exc}", hint="'vecmetric verify --repair' rebuilds it from the data") from None
    return Store(path, manifest)


def rebuild_manifest(path: str | os.PathLike) -> Store:
    """Write a new manifest from the model description that every part file carries.

    Raises:
        StoreError: no readable part file to rebuild from.
    """
    import pyarrow.parquet as pq

    path = Path(path)
    for part in sorted(path.glob(f"{PART_PREFIX}*{PART_SUFFIX}")):
        try:
            meta = pq.read_schema(part).metadata or {}
            model = json.loads(meta[MODEL_METADATA_KEY])
            ids = pq.read_table(part, columns=["id"]).column("id").to_pylist()
        except (OSError, ValueError, KeyError):
            continue
        manifest = _new_manifest(model)
        store = Store(path, manifest)
        table = store.read_table(["id"], parts=[p for p in store.parts() if _readable(p)])
        next_id = (max(table.column("id").to_pylist()) + 1) if table.num_rows else (max(ids) + 1 if ids else 0)
        store.write_manifest(next_id=next_id, counts={"rows": table.num_rows}, rebuilt_from=part.name)
        return store
    raise StoreError(f"cannot rebuild the manifest of {path}: no readable part file", hint="embed again into a new store")


def _readable(part: Path) -> bool:
    import pyarrow.parquet as pq

    try:
        pq.read_metadata(part)
        return True
    except (OSError, ValueError):
        return False


def _new_manifest(model: dict[str, Any]) -> dict[str, Any]:
    return {
        "format": STORE_FORMAT,
        "format_version": 1,
        # Identifies this store (a copied folder keeps it), so an index copied from another store
        # with the same model and overlapping row ids is never taken for this store's own.
        "store_id": uuid.uuid4().hex,
        "model": model,
        "versions": _versions(),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "next_id": 0,
        "counts": {"rows": 0},
    }


def create_store(path: str | os.PathLike, encoder) -> Store:
    """Create an empty store for vectors of ``encoder`` (its manifest first, so it is valid at once)."""
    path = Path(path)
    if path.is_dir() and any(not p.name.startswith((".", "_")) for p in path.iterdir()):
        raise StoreError(f"{path} is a folder that is not a vecmetric store", hint="choose an empty or new --store folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create store folder {path}: {exc.strerror or exc}") from None
    store = Store(path, _new_manifest(encoder.describe()))
    store.write_manifest()
    return store
