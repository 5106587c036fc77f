"""The query model, independent of any syntax: a query is a list of signed, weighted terms.

The command line writes terms as ``2:red car``, ``@12`` or ``./car.jpg`` joined by ``+`` and
``-`` (``vecmetric.query.parse_arguments``); a server writes them as JSON objects
(``term_from_dict``). Both end up here.
"""

from __future__ import annotations

import enum
import math
import os
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ..errors import InputError

__all__ = ["TermKind", "Term", "Query", "term_from_dict", "query_from_dicts"]


class TermKind(str, enum.Enum):
    """What a term names."""

    IMAGE = "image"  # an image file; its stored vector is used when the store holds it unchanged, else it is embedded
    ROW = "row"  # a stored row, by id (int) or by the path the store holds (str): its vector is read, never embedded
    TEXT = "text"  # a text, embedded by the text tower of an open_clip store's model
    UPLOAD = "upload"  # an image given as bytes (a server's upload), named by the term's value; its pixels come with the search


@dataclass(frozen=True)
class Term:
    """One term of a query.

    Attributes:
        kind: a ``TermKind``.
        value: the image path (IMAGE), the row id or stored path (ROW), the text (TEXT), or the name of
            an uploaded image (UPLOAD; ``SearchSession.search`` gets its pixels under that name).
        weight: a non-zero finite number; negative subtracts the term.
    """

    kind: TermKind
    value: str | int
    weight: float = 1.0

    def __post_init__(self):
        check_weight(self.weight)

    def describe(self) -> str:
        """The term as the command line writes it, without its sign: ``2:red car``, ``@12``, ``car.jpg``."""
        body = f"@{self.value}" if self.kind is TermKind.ROW else str(self.value)
        size = abs(self.weight)
        return body if size == 1 else f"{size:g}:{body}"


@dataclass(frozen=True)
class Query:
    """One query: the weighted sum of its terms' vectors, searched for together.

    Attributes:
        terms: the terms, in the order given (at least one with a positive weight).
        source: the query as the user gave it (search results carry it as their ``query``).
    """

    terms: tuple[Term, ...]
    source: str

    def __post_init__(self):
        if not self.terms:
            raise InputError("empty query", hint="give an image path, @ID, or a text")
        if not any(t.weight > 0 for t in self.terms):
            raise InputError(f"query {self.source!r} has no term to add, only terms to subtract", hint="start it with a + term")

    @classmethod
    def of(cls, terms: Sequence[Term], source: str | None = None) -> "Query":
        """A query of ``terms``; ``source`` defaults to the terms written as on the command line."""
        terms = tuple(terms)
        if source is None:
            source = " ".join(f"{'-' if t.weight < 0 else '+'} {t.describe()}" for t in terms).removeprefix("+ ")
        return cls(terms, source)


def check_weight(weight: Any) -> float:
    """``weight`` as a float when it is a non-zero finite number.

    Raises:
        InputError: it is not a number, zero, infinite or NaN.
    """
    if isinstance(weight, bool) or not isinstance(weight, (int, float)):
        raise InputError(f"weight {weight!r} is not a number")
    if not math.isfinite(weight) or weight == 0:
        raise InputError(f"weight {weight!r} must be a non-zero finite number")
    return float(weight)


def term_from_dict(data: Mapping[str, Any]) -> Term:
    """A term from its JSON form, as a server receives it.

    ``{"id": 12}`` (a stored row), ``{"path": "/photos/a.jpg"}`` (an image file), ``{"text": "a red car"}``,
    each with an optional signed ``"weight"`` (default 1; negative subtracts).

    Raises:
        InputError: not exactly one of ``id``, ``path``, ``text``; a value of the wrong type; a bad weight.
    """
    if not isinstance(data, Mapping):
        raise InputError(f"a term must be an object, not {type(data).__name__}")
    keys = [k for k in ("id", "path", "text") if k in data]
    unknown = sorted(set(data) - {"id", "path", "text", "weight"})
    if len(keys) != 1 or unknown:
        raise InputError(f"a term needs exactly one of id, path, text (and optionally weight), not {sorted(data)}")
    key, value = keys[0], data[keys[0]]
    weight = check_weight(data.get("weight", 1.0))
    if key == "id":
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"a row id must be an integer, not {value!r}")
        return Term(TermKind.ROW, int(value), weight)
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"a term's {key} must be a non-empty string")
    return Term(TermKind.IMAGE if key == "path" else TermKind.TEXT, os.fspath(value), weight)


def query_from_dicts(terms: Sequence[Mapping[str, Any]], source: str | None = None) -> Query:
    """A query from a list of JSON terms (see ``term_from_dict``).

    Raises:
        InputError: no terms, a bad term, or no term with a positive weight.
    """
    if isinstance(terms, (str, bytes)) or not isinstance(terms, Sequence):
        raise InputError("a query must be a list of terms")
    return Query.of([term_from_dict(t) for t in terms], source)
