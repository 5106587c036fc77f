"""HNSW indexes (hnswlib) over a store, exact search for ground truth, and querying."""

from ._build import IndexResult, build_index, index_is_current, load_current_index
from ._exact import exact_search, pairwise_distances, recall_at_k
from ._hnsw import HnswIndex, IndexParams
from ._search import SearchHit, search_store

__all__ = [
    "HnswIndex",
    "IndexParams",
    "IndexResult",
    "SearchHit",
    "build_index",
    "exact_search",
    "index_is_current",
    "load_current_index",
    "pairwise_distances",
    "recall_at_k",
    "search_store",
]
