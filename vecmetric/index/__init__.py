"""HNSW indexes (hnswlib) over a store, whole or in shards: building and updating, status, exact search
for ground truth, querying; ``RayShardedIndex`` holds the shards in Ray actors (the ``ray`` extra)."""

from ._build import INDEX_ENGINES, IndexResult, build_index, load_current_index
from ._exact import exact_search, pairwise_distances, recall_at_k
from ._hnsw import HnswIndex, IndexParams
from ._shards import ShardedIndex, load_index, merge_top_k, shard_count
from ._status import SIDECAR_NAME, IndexState, IndexStatus, index_status

__all__ = [
    "INDEX_ENGINES",
    "HnswIndex",
    "IndexParams",
    "IndexResult",
    "IndexState",
    "IndexStatus",
    "RayShardedIndex",
    "live_ray_index",
    "SIDECAR_NAME",
    "ShardedIndex",
    "build_index",
    "exact_search",
    "index_status",
    "load_current_index",
    "load_index",
    "merge_top_k",
    "pairwise_distances",
    "recall_at_k",
    "shard_count",
]


def __getattr__(name: str):
    # search_store and SearchHit moved to vecmetric.query, which imports this package: resolved lazily.
    if name in ("search_store", "SearchHit"):
        from .. import query

        return getattr(query, name)
    if name in ("RayShardedIndex", "live_ray_index"):  # imported on use: the only index code that needs Ray
        from . import _ray_shards

        return getattr(_ray_shards, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
