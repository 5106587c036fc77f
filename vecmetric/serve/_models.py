"""The request and answer shapes of the API, as pydantic models, so that the OpenAPI schema documents them.

Shapes only: what a term means, and which combinations are allowed, is ``vecmetric.query``'s to
decide (``query_from_dicts``), so the server and ``vecmetric search`` cannot disagree.
"""

from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

__all__ = ["ErrorOut", "Health", "Hit", "MAX_EF", "MAX_K", "SearchIn", "SearchOut", "SessionOut", "TermIn", "TokenIn"]

MAX_K = 1000
MAX_EF = 4096
MAX_TERMS = 64
MAX_TEXT = 1000
MAX_LABELS = 256
MAX_GLOB = 1000
MAX_ID = 2**63 - 1


class TermIn(BaseModel):
    """One term of a query: a stored row by ``id``, or a ``text``, with an optional signed weight."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"id": 12, "weight": 1.0}, {"text": "a red car", "weight": -0.5}]})

    id: Optional[StrictInt] = Field(None, ge=0, le=MAX_ID, description="A stored image: the `id` of a search result.")
    text: Optional[str] = Field(None, min_length=1, max_length=MAX_TEXT, description="A text (stores made by an open_clip model).")
    weight: float = Field(1.0, allow_inf_nan=False, description="Non-zero; negative subtracts the term. Default 1.")

    @model_validator(mode="before")
    @classmethod
    def _no_paths(cls, data: Any) -> Any:
        if isinstance(data, dict) and "path" in data:
            raise ValueError("the server takes terms by id or text, never a file path; upload an image to POST /search/image")
        return data


class SearchIn(BaseModel):
    """``POST /search``: a query (the weighted sum of its terms) and what the results may be."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "terms": [{"id": 12, "weight": 1.0}, {"text": "a red car", "weight": -0.5}],
                    "k": 10,
                    "ef": None,
                    "label": ["cars"],
                    "path": "*/2024/*",
                    "max_distance": 0.4,
                }
            ]
        },
    )

    terms: list[TermIn] = Field(min_length=1, max_length=MAX_TERMS, description="At least one term with a positive weight.")
    k: int = Field(10, ge=1, le=MAX_K, description="Results wanted.")
    ef: Optional[int] = Field(None, ge=1, le=MAX_EF, description="HNSW search breadth (default: the index's).")
    label: Optional[list[str]] = Field(None, max_length=MAX_LABELS, description="Only images with one of these labels.")
    path: Optional[str] = Field(None, min_length=1, max_length=MAX_GLOB, description="Only images whose absolute path matches this glob (`*` crosses `/`).")
    max_distance: Optional[float] = Field(None, allow_inf_nan=False, description="Drop results farther than this.")


class Hit(BaseModel):
    """One result: the same fields as `vecmetric search --json`."""

    query: str = Field(description="`upload`, `@ID`, the text, or the expression of several terms.")
    rank: int
    path: str = Field(description="The image's absolute path on the server.")
    distance: float
    label: Optional[str]
    id: int = Field(description="The row id: GET /images/{id}, GET /thumbs/{id}, or a term of the next query.")


class SearchOut(BaseModel):
    """The results, nearest first."""

    results: list[Hit]


class ErrorOut(BaseModel):
    """Every error answer."""

    error: str = Field(description="What went wrong, in one line.")
    hint: Optional[str] = Field(None, description="What to do about it.")


class Health(BaseModel):
    """`ok` once the index is loaded and the server answers searches."""

    ok: bool


class TokenIn(BaseModel):
    """The token, typed once into the page: the answer sets the session cookie."""

    token: str = Field(min_length=1, max_length=1000)


class SessionOut(BaseModel):
    """Whether the server needs a token, and whether this request carried a valid one (or the cookie)."""

    token_required: bool
    authenticated: bool
