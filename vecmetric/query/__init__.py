"""The query language shared by search, serve and dedup: terms and weights, their vectors, filters, the search.

    from vecmetric.query import parse_arguments, search_store, SearchFilter
    queries = parse_arguments(["2:red car", "+", "./car.jpg", "-", "at night"])
    results = search_store("my-store", queries, k=5, filters=SearchFilter(labels=("cars",)))

    session = SearchSession("my-store", live=True)   # a server's: keeps index and model, never takes the lock
    results = session.search(queries, k=5)

Nothing here imports torch, timm or open_clip: a model is opened only when a term must be embedded,
and then through the store's ONNX export when it has one (``vecmetric.runtime``).
"""

from ._filters import SearchFilter, allowed_ids
from ._parse import OPERATORS, STDIN, like_query, parse_arguments, parse_expression, parse_line, parse_term
from ._resolve import ResolvedQuery, ResolvedTerm, combine, resolve_queries
from ._results import QueryResult, SearchHit
from ._search import search_store
from ._session import SearchSession
from ._terms import Query, Term, TermKind, query_from_dicts, term_from_dict

__all__ = [
    "OPERATORS",
    "STDIN",
    "Query",
    "QueryResult",
    "ResolvedQuery",
    "ResolvedTerm",
    "SearchFilter",
    "SearchHit",
    "SearchSession",
    "Term",
    "TermKind",
    "allowed_ids",
    "combine",
    "like_query",
    "parse_arguments",
    "parse_expression",
    "parse_line",
    "parse_term",
    "query_from_dicts",
    "resolve_queries",
    "search_store",
    "term_from_dict",
]
