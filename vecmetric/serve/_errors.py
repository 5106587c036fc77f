"""Every error the server answers, as ``{"error": "one line", "hint": "..."}``, through one exception handler.

The client's mistakes get a 4xx status: a bad term or image 400, a missing token 401, a cookie from
another origin 403, an unknown id 404, a file gone or changed since it was embedded 410, a body over
the cap 413, a stored image that cannot be drawn 422 (and FastAPI's own validation errors 422). A
store or index the server cannot read right now answers 503, anything else 500 without details
(they go to the server's log).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import EncoderError, IndexStateError, InputError, StoreError, UsageError, VecmetricError
from ..images import ImageDecodeError

__all__ = ["HttpProblem", "install_error_handler", "problem_response"]

log = logging.getLogger("vecmetric.serve")

_DEFAULT_HINTS = {
    400: "see /openapi.json for what each endpoint takes",
    401: "send 'Authorization: Bearer TOKEN', or open the page and enter the token",
    404: "see /openapi.json for the endpoints; ids are the 'id' field of search results",
    405: "see /openapi.json for the methods each endpoint takes",
    413: "send a smaller image",
    422: "see /openapi.json for what each endpoint takes",
    500: "the server's log says more",
    503: "try again in a moment",
}


class HttpProblem(Exception):
    """An answer other than 2xx, raised by a route: its status, one line, a hint and extra headers."""

    def __init__(self, status: int, message: str, hint: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.hint, self.headers = status, message, hint, headers


def problem_response(status: int, message: str, hint: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON error answer: ``{"error": message, "hint": hint}``; the message is made one line."""
    one_line = " ".join(str(message).split()) or "error"
    return JSONResponse({"error": one_line, "hint": hint or _DEFAULT_HINTS.get(status)}, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "the request is not valid"
    first: dict[str, Any] = errors[0]
    if first.get("type") == "json_invalid":
        return "the body is not valid JSON"
    where = ".".join(str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path", "form", "header"))
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {message}{more}" if where else f"{message}{more}"


def describe(exc: Exception) -> tuple[int, str, str | None, dict[str, str] | None]:
    """``(status, message, hint, headers)`` for an exception a route raised."""
    from ..present import DecodeBusyError

    if isinstance(exc, HttpProblem):
        return exc.status, exc.message, exc.hint, exc.headers
    if isinstance(exc, RequestValidationError):
        return 422, _validation_message(exc), None, None
    if isinstance(exc, StarletteHTTPException):
        return exc.status_code, str(exc.detail), None, getattr(exc, "headers", None)
    if isinstance(exc, DecodeBusyError):
        return 503, f"the server is busy decoding other images: {exc}", "try again in a moment", {"Retry-After": "1"}
    if isinstance(exc, ImageDecodeError):
        return 400, f"cannot use the uploaded image: {exc}", "send a JPEG, PNG, WebP, GIF, BMP or TIFF image", None
    if isinstance(exc, (InputError, UsageError, EncoderError)):
        return 400, exc.message, exc.hint, None
    if isinstance(exc, (StoreError, IndexStateError)):
        return 503, exc.message, exc.hint, None
    if isinstance(exc, VecmetricError):
        return 500, exc.message, exc.hint, None
    return 500, "internal error", None, None


async def handle_error(request: Request, exc: Exception) -> JSONResponse:
    """The one exception handler: every error answer is made here."""
    status, message, hint, headers = describe(exc)
    if status >= 500:
        log.error("%s %s answered %d: %s", request.method, request.url.path, status, message, exc_info=not isinstance(exc, VecmetricError))
    return problem_response(status, message, hint, headers)


def install_error_handler(app: FastAPI) -> None:
    """Route every error (ours, FastAPI's validation, Starlette's HTTP errors, the unexpected) through ``handle_error``."""
    for kind in (HttpProblem, VecmetricError, ImageDecodeError, RequestValidationError, StarletteHTTPException, Exception):
        app.add_exception_handler(kind, handle_error)
