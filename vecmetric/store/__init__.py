"""The Parquet store of embeddings: schema, reading, atomic writes, incremental embedding."""

from ._embed import EmbedResult, embed_directory
from ._lock import StoreLock
from ._scan import FileEntry, scan_folder
from ._store import Store, create_store, embeddings_to_numpy, open_store, store_schema

__all__ = [
    "EmbedResult",
    "FileEntry",
    "Store",
    "StoreLock",
    "create_store",
    "embed_directory",
    "embeddings_to_numpy",
    "open_store",
    "scan_folder",
    "store_schema",
]
