"""Turning queries into vectors: stored rows are read, only what the store lacks is embedded.

A query's vector is the weighted sum of its terms' vectors divided by the sum of its positive
weights (``combine``). Under cosine every term is made unit length first and the result too, so a
weight means the same for every model and only the direction matters. Under ``ip`` and ``l2`` the
division keeps the result on the scale of the stored vectors: one term with any weight is that
term's vector, ``a + b`` is their midpoint, and distance thresholds mean what they mean for one image.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from ..errors import EncoderError, InputError
from ._rows import StoredRows
from ._terms import Query, Term, TermKind

__all__ = ["ResolvedTerm", "ResolvedQuery", "combine", "resolve_queries"]


@dataclass(frozen=True)
class ResolvedTerm:
    """A term and what it turned out to be.

    Attributes:
        term: the term as given.
        path: the image file, or the stored row's path; None for a text.
        row_id: the stored row the term is (ROW) or whose file it names (IMAGE); None otherwise.
        embedded: whether a model embedded it (False: its stored vector was read).
    """

    term: Term
    path: str | None
    row_id: int | None
    embedded: bool

    @property
    def kind(self) -> str:
        return self.term.kind.value

    @property
    def weight(self) -> float:
        return self.term.weight

    @property
    def text(self) -> str | None:
        return str(self.term.value) if self.term.kind is TermKind.TEXT else None

    @property
    def upload(self) -> str | None:
        """The name of the uploaded image this term is, or None."""
        return str(self.term.value) if self.term.kind is TermKind.UPLOAD else None


@dataclass(frozen=True)
class ResolvedQuery:
    """A query, its vector (float32 (dim,)), its resolved terms, and the stored rows that are its own images."""

    query: Query
    vector: Any
    terms: tuple[ResolvedTerm, ...]

    @property
    def own_rows(self) -> frozenset[int]:
        return frozenset(t.row_id for t in self.terms if t.row_id is not None)


def combine(vectors, weights: Sequence[float], metric: str) -> Any:
    """The query vector of terms with these vectors (float (T, dim)) and signed weights.

    ``sum(w_i * v_i) / sum(w_i for w_i > 0)``; under cosine each ``v_i`` is made unit length first
    and the result too. On a hyperbolic (``poincare``) store only positive weights are allowed: their
    average lies in the ball, a difference may not.

    Raises:
        InputError: no positive weight, or the terms cancel out (a zero vector has no direction).
    """
    import numpy as np

    from ..distances import get_metric

    vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
    weights = np.asarray(weights, dtype=np.float64)
    positive = float(weights[weights > 0].sum())
    if positive <= 0:
        raise InputError("a query needs at least one term to add")
    if metric == "poincare" and (weights < 0).any():
        # A weighted average of points of the Poincare ball stays in the ball; a difference need not.
        raise InputError("a hyperbolic store's queries cannot subtract terms", hint="use only '+' terms (weighted averages)")
    normalized = get_metric(metric).normalized
    if normalized:
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-30)
    out = (weights[:, None] * vectors).sum(axis=0) / positive
    if normalized:
        norm = float(np.linalg.norm(out))
        if norm < 1e-6:
            raise InputError("the query's terms cancel out: their weighted sum has no direction", hint="change a weight")
        out = out / norm
    return out.astype(np.float32)


def _stored_path_rows(rows: StoredRows, paths: set[str]) -> dict[str, dict[str, Any]]:
    """Rows of the store for these paths (absolute), tried as given and with symbolic links resolved."""
    candidates = {p: {p, os.path.realpath(p)} for p in paths}
    found = rows.by_path({c for cs in candidates.values() for c in cs})
    return {p: found[c] for p, cs in candidates.items() for c in sorted(cs) if c in found}


def _unchanged(path: str, row: dict[str, Any]) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return st.st_size == row.get("size") and st.st_mtime_ns == row.get("mtime_ns")


def _resolve_term(term: Term, by_id: dict[int, dict], by_path: dict[str, dict]) -> ResolvedTerm:
    if term.kind in (TermKind.TEXT, TermKind.UPLOAD):
        return ResolvedTerm(term, None, None, True)
    if term.kind is TermKind.ROW and isinstance(term.value, int):
        if term.value not in by_id:
            raise InputError(
                f"no stored image has id {term.value}",
                hint="ids are the 'id' field of search --json; a changed or renamed file gets a new id when it is embedded again",
            )
        return ResolvedTerm(term, by_id[term.value]["path"], term.value, False)
    if term.kind is TermKind.ROW:
        row = by_path.get(str(term.value))
        if row is None:
            raise InputError(f"{term.value} is not in the store", hint="give the path without @ to embed the file itself")
        return ResolvedTerm(term, str(term.value), int(row["id"]), False)
    path = os.path.abspath(str(term.value))
    row = by_path.get(path)
    # A stored file that changed since it was embedded is embedded afresh; its row is still its own image.
    stored = row is not None and _unchanged(path, row)
    return ResolvedTerm(term, path, None if row is None else int(row["id"]), not stored)


def _plan(rows: StoredRows, queries: Sequence[Query]) -> list[tuple[ResolvedTerm, ...]]:
    """Each term's path and stored row, and whether it must be embedded.

    Raises:
        InputError: an ``@ID`` or ``@PATH`` the store does not hold.
    """
    terms = [t for q in queries for t in q.terms]
    ids = {t.value for t in terms if t.kind is TermKind.ROW and isinstance(t.value, int)}
    paths = {os.path.abspath(str(t.value)) for t in terms if t.kind is TermKind.IMAGE}
    paths |= {str(t.value) for t in terms if t.kind is TermKind.ROW and isinstance(t.value, str)}
    by_id = rows.by_id(ids, columns=("path",)) if ids else {}
    by_path = _stored_path_rows(rows, paths) if paths else {}
    return [tuple(_resolve_term(t, by_id, by_path) for t in q.terms) for q in queries]


EMBED_BATCH = 64  # query images decoded and embedded at once (memory stays bounded for long stdin lists)


def _embed(store, plans, open_encoder: Callable[[str], Any], uploads: Mapping[str, Any]) -> dict[tuple[str, str], Any]:
    """Vectors of the terms that need a model, keyed ``("image", path)`` / ``("upload", name)`` / ``("text", text)``; one encoder for all.

    The first images are decoded before the model is opened, so an unreadable query fails at once.
    """
    import numpy as np

    from ..encoders._config import PreprocessConfig
    from ..images import load_image_array

    images = sorted({t.path for p in plans for t in p if t.embedded and t.path is not None})
    named = sorted({t.upload for p in plans for t in p if t.upload is not None})
    texts = sorted({t.text for p in plans for t in p if t.text is not None})
    if not images and not named and not texts:
        return {}
    missing = [name for name in named if name not in uploads]
    if missing:
        raise InputError(f"no image was given for the uploaded term {missing[0]!r}")
    preprocess = PreprocessConfig.from_dict(store.model["preprocess"])  # the geometry the store was embedded with
    keys = [("upload", name) for name in named] + [("image", p) for p in images]
    batches = [keys[i : i + EMBED_BATCH] for i in range(0, len(keys), EMBED_BATCH)]

    def pixels(key: tuple[str, str]):
        return np.asarray(uploads[key[1]], dtype=np.uint8) if key[0] == "upload" else load_image_array(key[1], preprocess)

    first = [pixels(key) for key in batches[0]] if batches else []
    try:
        encoder = open_encoder("text" if texts else "image")
    except EncoderError as exc:
        if not texts:
            raise
        raise type(exc)(f"text term {texts[0]!r}: {exc.message}", hint=exc.hint) from None
    out: dict[tuple[str, str], Any] = {}
    for n, batch in enumerate(batches):
        arrays = first if n == 0 else [pixels(key) for key in batch]
        out.update(zip(batch, encoder.embed_tensors(np.stack(arrays))))
    if texts:
        out.update(zip((("text", t) for t in texts), encoder.embed_texts(texts)))
    return out


def _vector(term: ResolvedTerm, embedded: dict, stored: dict):
    if term.text is not None:
        return embedded[("text", term.text)]
    if term.upload is not None:
        return embedded[("upload", term.upload)]
    return embedded[("image", term.path)] if term.embedded else stored[term.row_id]


def resolve_queries(
    store,
    queries: Sequence[Query],
    *,
    metric: str,
    stored_vectors: Callable[[list[int]], Any],
    open_encoder: Callable[[str], Any],
    uploads: Mapping[str, Any] | None = None,
    rows: StoredRows | None = None,
) -> list[ResolvedQuery]:
    """One vector per query: stored rows' vectors are read, image files, uploads and texts embedded, then ``combine``d.

    Args:
        store: the open store.
        queries: the queries.
        metric: the index's metric (decides how terms combine).
        stored_vectors: ``ids -> float32 (N, dim)``: the stored vectors of rows (called once, only if a term is stored).
        open_encoder: ``tower -> encoder`` (``"image"`` or ``"text"``, the latter able to do both): called
            once, and only when a term needs a model.
        uploads: ``name -> uint8 (3, S, S)`` pixels of the UPLOAD terms, already decoded and cropped with the
            store's geometry (a server decodes untrusted bytes under ``vecmetric.present.DecodeGuard``).
        rows: where stored rows are looked up (default: the Parquet parts, read on each call).

    Returns:
        The ``ResolvedQuery`` of each query, in order.

    Raises:
        InputError: an unknown ``@ID`` / ``@PATH``, an unreadable image, an UPLOAD term without pixels,
            terms that cancel out.
        EncoderError: a text term on a store whose model has no text tower.
    """
    plans = _plan(rows or StoredRows(store), queries)
    embedded = _embed(store, plans, open_encoder, uploads or {})
    stored_ids = sorted({t.row_id for p in plans for t in p if not t.embedded and t.row_id is not None})
    stored = dict(zip(stored_ids, stored_vectors(stored_ids))) if stored_ids else {}
    out = []
    for query, plan in zip(queries, plans):
        vectors = [_vector(t, embedded, stored) for t in plan]
        out.append(ResolvedQuery(query, combine(vectors, [t.weight for t in plan], metric), plan))
    return out
