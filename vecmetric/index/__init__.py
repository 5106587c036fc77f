"""HNSW indexes (hnswlib) over a store: building and updating, status, exact search for ground truth, querying."""

from ._build import IndexResult, build_index, load_current_index
from ._exact import exact_search, pairwise_distances, recall_at_k
from ._hnsw import HnswIndex, IndexParams
from ._status import SIDECAR_NAME, IndexState, IndexStatus, index_status

__all__ = [
    "HnswIndex",
    "IndexParams",
    "IndexResult",
    "IndexState",
    "IndexStatus",
    "SIDECAR_NAME",
    "build_index",
    "exact_search",
    "index_status",
    "load_current_index",
    "pairwise_distances",
    "recall_at_k",
]


def __getattr__(name: str):
    # search_store and SearchHit moved to vecmetric.query, which imports this package: resolved lazily.
    if name in ("search_store", "SearchHit"):
        from .. import query

        return getattr(query, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
