"""The Parquet store of embeddings: schema, manifest, lock, labels, and incremental embedding.

``embed_directory`` runs the stages in order: ``scan_folder``, ``plan_embed``, an engine
(``vecmetric.engines``), then ``RowWriter``.
"""

from ._embed import EmbedResult, embed_directory
from ._labels import label_for, root_of
from ._lock import LOCK_NAME, StoreLock
from ._manifest import create_store, open_store, rebuild_manifest
from ._plan import EmbedPlan, plan_embed
from ._runtime import export_store_model
from ._scan import FileEntry, ScanResult, content_hash, scan_folder
from ._store import INDEX_DIR, MANIFEST_NAME, META_COLUMNS, Store, embeddings_to_numpy, numpy_to_embeddings, store_schema
from ._writer import RowWriter

__all__ = [
    "EmbedPlan",
    "EmbedResult",
    "FileEntry",
    "INDEX_DIR",
    "LOCK_NAME",
    "MANIFEST_NAME",
    "META_COLUMNS",
    "RowWriter",
    "ScanResult",
    "Store",
    "StoreLock",
    "content_hash",
    "create_store",
    "embed_directory",
    "embeddings_to_numpy",
    "export_store_model",
    "label_for",
    "numpy_to_embeddings",
    "open_store",
    "plan_embed",
    "rebuild_manifest",
    "root_of",
    "scan_folder",
    "store_schema",
]
