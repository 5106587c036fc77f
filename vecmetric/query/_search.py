"""A search end to end: queries to vectors, nearest rows under the filters, the hits' paths and labels.

Nothing here imports torch: a model is opened through ``vecmetric.runtime.open_query_encoder`` (the
store's ONNX export when it has one) and only when a term must be embedded.
"""

from __future__ import annotations

import os
from typing import Sequence

from ..errors import InputError
from ..progress import Reporter
from ..store import open_store
from ._filters import SearchFilter
from ._parse import parse_term
from ._results import QueryResult, SearchHit
from ._session import SearchSession
from ._terms import Query

__all__ = ["SearchHit", "QueryResult", "search_store"]


def _names_store_model(model: str, store) -> bool:
    spec = store.model["spec"]
    return model == spec or os.path.abspath(os.path.expanduser(model)) == spec


def _check_model(store, model: str | None, device: str, allow_pickle_files: bool) -> None:
    """``--model`` must be the store's model: a different spec is loaded (with torch) and compared."""
    if model is None or _names_store_model(model, store):
        return
    from ..encoders import load_encoder

    store.check_model(load_encoder(model, device=device, allow_pickle_files=allow_pickle_files))


def _as_query(query: str | Query, text: bool) -> Query:
    if isinstance(query, Query):
        return query
    return Query.of([parse_term(str(query), text=text)], str(query))


def search_store(
    store: str | os.PathLike,
    queries: Sequence[str | Query],
    k: int = 5,
    ef: int | None = None,
    exact: bool = False,
    text: bool = False,
    model: str | None = None,
    device: str = "auto",
    reporter: Reporter | None = None,
    allow_pickle_files: bool = False,
    filters: SearchFilter | None = None,
    keep_query_images: bool = False,
) -> list[QueryResult]:
    """Find the ``k`` nearest stored images to each query.

    Args:
        store: the store folder.
        queries: ``Query`` objects (``parse_arguments``, ``query_from_dicts``), or strings, each one term
            (an image path, ``@ID``, or a text; every string but ``@...`` a text when ``text`` is set).
        k: results per query.
        ef: HNSW search breadth (higher: better recall, slower); default the index's.
        exact: brute-force search over the stored vectors instead of the index.
        text: strings in ``queries`` are texts.
        model: must name the store's own model when given (it is checked, not used instead).
        device: where a torch model runs, when the store has no usable export.
        reporter: receives the index update's progress, and the notice when queries need torch.
        allow_pickle_files: accept a checkpoint folder that also holds pickle files (never read).
        filters: labels, path glob and distance threshold (``SearchFilter``).
        keep_query_images: return the stored images that are the query's own terms too.

    Returns:
        One ``QueryResult`` per query (a sequence of ``SearchHit``, nearest first, with absolute paths).
        Fewer than ``k`` hits only when fewer rows qualify or ``filters.max_distance`` drops some.

    Raises:
        InputError: a bad term (missing image, unknown ``@ID``, terms that cancel out), k < 1, no queries.
        EncoderError: a text term on a store whose model has no text tower (exit 4).
        StoreMismatchError: ``model`` is not the store's model.
    """
    if k < 1:
        raise InputError("--k must be at least 1")
    parsed = [_as_query(q, text) for q in queries]
    if not parsed:
        raise InputError("no queries given")
    st = open_store(store)
    _check_model(st, model, device, allow_pickle_files)
    session = SearchSession(st, exact=exact, device=device, allow_pickle_files=allow_pickle_files, reporter=reporter)
    return session.search(parsed, k=k, ef=ef, filters=filters, keep_query_images=keep_query_images)
