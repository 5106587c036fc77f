"""A store's manifest: opening and creating stores, and rebuilding a lost manifest from the data.

``_manifest.json`` records the model that made the vectors (spec, fingerprint, dim, metric,
preprocessing), the folders the store was embedded from (``roots``), the next row id and the
counts, and the versions of the libraries that wrote it. It is written atomically; every part
file also carries the model description, so a lost manifest can be rebuilt.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from .. import __version__
from .._fsutil import read_json
from ..errors import ManifestError, StoreError
from ._lock import StoreLock
from ._store import MANIFEST_NAME, MODEL_METADATA_KEY, PART_PREFIX, PART_SUFFIX, STORE_FORMAT, Store

__all__ = ["open_store", "create_store", "prepare_store_folder", "rebuild_manifest"]


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
        StoreLock(path, "open").raise_if_held()  # being created by a live process right now
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


def prepare_store_folder(path: str | os.PathLike) -> Path:
    """Make the folder a new store will live in (so its lock can be taken before the store is created).

    Raises:
        StoreError: the folder holds files that are not a store's, or it cannot be created.
    """
    path = Path(path)
    if path.is_dir() and not (path / MANIFEST_NAME).exists() and any(not p.name.startswith((".", "_")) for p in path.iterdir()):
        raise StoreError(f"{path} is a folder that is not a vecmetric store", hint="choose an empty or new --store folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create store folder {path}: {exc.strerror or exc}") from None
    return path


def create_store(path: str | os.PathLike, encoder) -> Store:
    """Create an empty store for vectors of ``encoder`` (its manifest first, so it is valid at once)."""
    path = prepare_store_folder(path)
    if (path / MANIFEST_NAME).exists():
        raise StoreError(f"{path} is already a vecmetric store", hint="open it with open_store, or choose a new folder")
    store = Store(path, _new_manifest(encoder.describe()))
    store.write_manifest()
    return store
