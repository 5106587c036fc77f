"""The search API: ``/search``, ``/search/image``, ``/info``, ``/healthz`` and the page's ``/session``."""

from __future__ import annotations

import json
from typing import Any, Optional

from fastapi import APIRouter, Depends, File, Form, Request, Response, UploadFile
from fastapi.responses import JSONResponse

from ._errors import HttpProblem
from ._models import MAX_EF, MAX_GLOB, MAX_K, MAX_LABELS, ErrorOut, Health, SearchIn, SearchOut, SessionOut, TermIn, TokenIn
from ._state import ServerState

__all__ = ["authorized", "router", "server_state"]

ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": ErrorOut} for status in (400, 401, 403, 413, 422, 503)}


def server_state(request: Request) -> ServerState:
    """The ``ServerState`` of the app that received ``request`` (no token check: see ``authorized``)."""
    return request.app.state.vecmetric


async def authorized(request: Request) -> ServerState:
    """The dependency of every data route: the token rules (401/403), then the server's state.

    ``async`` although it never awaits: a plain function would cost every request a hop to the thread
    pool and back (a tenth of a stored-id query's time); the checks are a few string comparisons."""
    request.app.state.vecmetric_auth.check(request)
    return server_state(request)


router = APIRouter()


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}}, tags=["server"])
def healthz(request: Request) -> Any:
    """200 and `{"ok": true}` once the index is loaded; 503 and `{"ok": false}` before. No token needed; says nothing about the data."""
    request.app.state.vecmetric_auth.check_host(request)
    if server_state(request).ready:
        return {"ok": True}
    return JSONResponse({"ok": False}, status_code=503)


@router.get("/session", response_model=SessionOut, tags=["server"])
def session_state(request: Request) -> Any:
    """Whether the server needs a token, and whether this request carries it (or the session cookie)."""
    auth = request.app.state.vecmetric_auth
    auth.check_host(request)
    return {"token_required": auth.required, "authenticated": auth.authenticated(request)}


@router.post("/session", response_model=SessionOut, responses=ERRORS, tags=["server"])
def log_in(body: TokenIn, request: Request, response: Response) -> Any:
    """The page's log-in: with the right token, sets the session cookie (HttpOnly, SameSite=Strict)."""
    auth = request.app.state.vecmetric_auth
    auth.log_in(request, response, body.token)
    return {"token_required": auth.required, "authenticated": True}


@router.delete("/session", response_model=SessionOut, tags=["server"])
def log_out(request: Request, response: Response) -> Any:
    """Forget the session cookie."""
    auth = request.app.state.vecmetric_auth
    auth.check_host(request)
    auth.log_out(response)
    return {"token_required": auth.required, "authenticated": False}


@router.get("/info", responses=ERRORS, tags=["store"])
def info(state: ServerState = Depends(authorized)) -> dict[str, Any]:
    """What `vecmetric info --json` says about the store and its index."""
    from ..info import store_info

    return store_info(state.store.path)


def _terms(terms: list[TermIn]) -> list:
    """The API's terms as the query language's (``term_from_dict`` owns what a term may be, ``Query`` how they add up)."""
    from ..query import term_from_dict

    return [term_from_dict(t.model_dump(exclude_none=True)) for t in terms]


def _answer(state: ServerState, terms: list, k: int, ef: Optional[int], label, path, max_distance, uploads=None) -> JSONResponse:
    """The search's hits as ``SearchOut`` JSON. Built directly: the hits are plain numbers and strings
    already, and FastAPI's validation of a returned dict against the response model cost more than the
    search of a stored id (``response_model`` still documents the shape)."""
    from ..present import hit_record
    from ..query import Query, SearchFilter

    filters = SearchFilter(labels=tuple(label or ()), path=path, max_distance=max_distance)
    results = state.session.search([Query.of(terms)], k=k, ef=ef, filters=filters, uploads=uploads)
    return JSONResponse({"results": [hit_record(hit) for result in results for hit in result]})


@router.post("/search", response_model=SearchOut, responses=ERRORS, tags=["search"])
def search(body: SearchIn, state: ServerState = Depends(authorized)) -> Any:
    """The `k` nearest stored images to the weighted sum of the terms (stored ids and texts), under the filters."""
    return _answer(state, _terms(body.terms), body.k, body.ef, body.label, body.path, body.max_distance)


def _form_terms(raw: Optional[str]) -> list[TermIn]:
    """The ``terms`` form field: the same JSON list as ``POST /search`` takes."""
    from pydantic import TypeAdapter, ValidationError

    if raw is None or not raw.strip():
        return []
    try:
        return TypeAdapter(list[TermIn]).validate_python(json.loads(raw))
    except json.JSONDecodeError:
        raise HttpProblem(400, "terms must be a JSON list of terms", hint='e.g. [{"id": 12}, {"text": "at night", "weight": -0.5}]') from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise HttpProblem(422, f"terms.{where}: {str(first.get('msg')).removeprefix('Value error, ')}") from None


@router.post("/search/image", response_model=SearchOut, responses=ERRORS, tags=["search"])
def search_image(
    image: UploadFile = File(description="The query image (JPEG, PNG, WebP, GIF, BMP or TIFF; at most 20 MB by default)."),
    weight: float = Form(1.0, allow_inf_nan=False, description="The image's weight in the query."),
    terms: Optional[str] = Form(None, max_length=100_000, description="More terms, as the JSON list `POST /search` takes."),
    k: int = Form(10, ge=1, le=MAX_K),
    ef: Optional[int] = Form(None, ge=1, le=MAX_EF),
    label: Optional[list[str]] = Form(None, max_length=MAX_LABELS, description="Repeat the field for several labels."),
    path: Optional[str] = Form(None, min_length=1, max_length=MAX_GLOB),
    max_distance: Optional[float] = Form(None, allow_inf_nan=False),
    state: ServerState = Depends(authorized),
) -> Any:
    """The `k` nearest stored images to an uploaded image (plus any `terms`). The image is decoded in a worker
    process under a byte cap, a pixel cap and a time limit."""
    from ..images import decode_and_preprocess
    from ..query import Term, TermKind

    limit = state.limits.upload_bytes
    data = image.file.read(limit + 1)
    if len(data) > limit:
        raise HttpProblem(413, f"the image is over the {limit} byte limit")
    upload = Term(TermKind.UPLOAD, "upload", weight)  # the weight is checked before the image is decoded
    more = _terms(_form_terms(terms))
    pixels = state.guard.run(decode_and_preprocess, data, state.preprocess, None, state.limits.max_pixels)
    return _answer(state, [upload, *more], k, ef, label, path, max_distance, uploads={"upload": pixels})
