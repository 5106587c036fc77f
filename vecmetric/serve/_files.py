"""The stored images and their thumbnails, by row id only: never a path a client names.

A file is served only while it is what was embedded: the same size and mtime as its row, or, when
those changed, the same content hash. A file deleted since answers 410, one changed since 410 too
(its vector no longer describes it), each with the reason; an id the store does not hold, 404.
"""

from __future__ import annotations

import mimetypes
import os
from typing import Any, Iterator, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response, StreamingResponse

from ._errors import HttpProblem
from ._models import MAX_ID, ErrorOut
from ._routes import authorized
from ._state import ServerState

__all__ = ["router"]

router = APIRouter(tags=["images"])
ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": ErrorOut} for status in (401, 404, 410, 422)}
_COLUMNS = ("path", "size", "mtime_ns", "content_hash")
_CHUNK = 1 << 20
_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=300"}


def _row(state: ServerState, row_id: int) -> dict[str, Any]:
    row = state.session.rows_by_id([row_id], _COLUMNS).get(row_id)
    if row is None:
        raise HttpProblem(404, f"the store holds no image with id {row_id}")
    return row


def _open_current(state: ServerState, row_id: int) -> tuple[dict[str, Any], Any, int]:
    """``(row, open file, size)`` of a stored image that is still what was embedded.

    Raises:
        HttpProblem: 404 (no such id), 410 (deleted or changed since it was embedded).
    """
    from ..store import content_hash

    row = _row(state, row_id)
    try:
        fh = open(row["path"], "rb")
    except FileNotFoundError:
        raise HttpProblem(410, f"image {row_id} was deleted since it was embedded", hint="run 'vecmetric embed' to update the store") from None
    except OSError as exc:
        raise HttpProblem(410, f"image {row_id} cannot be read: {exc.strerror or exc}") from None
    st = os.fstat(fh.fileno())
    if (st.st_size, st.st_mtime_ns) == (row["size"], row["mtime_ns"]):
        return row, fh, st.st_size
    with fh:  # touched or replaced: only its content can tell
        data = fh.read(state.limits.stored_file_bytes + 1)
    if len(data) > state.limits.stored_file_bytes or content_hash(data) != row["content_hash"]:
        raise HttpProblem(410, f"image {row_id} changed since it was embedded", hint="run 'vecmetric embed' to update the store")
    import io

    return row, io.BytesIO(data), len(data)


def _chunks(fh) -> Iterator[bytes]:
    with fh:
        while chunk := fh.read(_CHUNK):
            yield chunk


@router.get(
    "/images/{id}",
    responses={**ERRORS, 200: {"content": {"image/*": {}}, "description": "The stored image file as it is on disk."}},
    response_class=Response,
)
def image(id: int = Path(ge=0, le=MAX_ID, description="A row id (the `id` of a result)."), state: ServerState = Depends(authorized)) -> Any:
    """The stored image with this id, as it is on disk."""
    row, fh, size = _open_current(state, id)
    media = mimetypes.guess_type(row["path"])[0] or "application/octet-stream"
    return StreamingResponse(_chunks(fh), media_type=media, headers={**_HEADERS, "Content-Length": str(size)})


@router.get(
    "/thumbs/{id}",
    responses={**ERRORS, 200: {"content": {"image/jpeg": {}, "image/png": {}}, "description": "The thumbnail."}},
    response_class=Response,
)
def thumbnail(
    id: int = Path(ge=0, le=MAX_ID, description="A row id (the `id` of a result)."),
    size: int = Query(256, ge=16, le=1024, description="The longer side, in pixels (never enlarged)."),
    format: Literal["jpeg", "png"] = Query("jpeg"),
    state: ServerState = Depends(authorized),
) -> Any:
    """A thumbnail of the stored image with this id, cached (in memory and the per-user cache, never in the store)."""
    from ..images import ImageDecodeError
    from ..present import DecodeBusyError

    row, fh, _ = _open_current(state, id)
    fmt = "PNG" if format == "png" else "JPEG"

    def make() -> bytes:
        with fh:
            data = fh.read(state.limits.stored_file_bytes + 1)
        return state.guard.thumbnail(data, size, fmt)

    try:
        data = state.thumbnails.get_or_make(row["content_hash"], size, fmt, make)
    except DecodeBusyError:
        raise  # 503: try again
    except ImageDecodeError as exc:
        raise HttpProblem(422, f"cannot draw image {id}: {exc}") from None
    finally:
        fh.close()
    return Response(data, media_type=f"image/{format}", headers=_HEADERS)
