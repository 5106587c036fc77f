"""``create_app(store)``: the FastAPI application that serves one store (no module-level state)."""

from __future__ import annotations

import contextlib
import os
import threading
from importlib import resources
from typing import Any, AsyncIterator, Iterable

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from ..errors import InputError
from ._auth import Auth
from ._bodycap import BodyCap
from ._errors import install_error_handler
from ._state import ServeLimits, ServerState

__all__ = ["create_app", "refuse_hyperbolic"]

DESCRIPTION = """Search a vecmetric store: by stored image (`id`), text (open_clip stores) or an uploaded image,
and sums of them. Results have the fields of `vecmetric search --json`. With a token, send
`Authorization: Bearer TOKEN`. The page for people is at `/`."""


def static_dir() -> str:
    """The folder of the page's files, inside the installed package."""
    return str(resources.files("vecmetric.serve") / "static")


def refuse_hyperbolic(store) -> None:
    """Raise ``StoreError`` for a store on the Poincare ball: the server's live merge and its algebra are
    Euclidean only for now (search re-ranks by Poincare distance; serve would answer in the wrong geometry)."""
    from ..distances import geometry_of
    from ..errors import StoreError

    if geometry_of(store.model).hyperbolic:
        raise StoreError("serve does not support hyperbolic stores yet", hint="use vecmetric search, which re-ranks by Poincare distance")


def create_app(
    store: str | os.PathLike,
    token: str | None = None,
    *,
    trusted_hosts: Iterable[str] | None = None,
    limits: ServeLimits | None = None,
    thumbnails_on_disk: bool = True,
    reporter: Any = None,
    index: Any = None,
    warm_up: bool = True,
    engine: str = "local",
    address: str | None = None,
) -> FastAPI:
    """A FastAPI app serving ``store``: the JSON API, the page at ``/``, the OpenAPI schema at ``/openapi.json``.

    Args:
        store: the store folder (opened now; nothing is ever written to it).
        token: every data request needs it (``Authorization: Bearer TOKEN`` or the page's session cookie);
            None: no token.
        trusted_hosts: answer only requests whose ``Host`` is one of these names (``vecmetric serve`` passes
            the loopback names when it listens on loopback without a token); None: any.
        limits: upload, decode and cache limits (``ServeLimits``).
        thumbnails_on_disk: also keep thumbnails in the per-user cache (else only in memory).
        reporter: receives warnings and the line saying the server is ready.
        index: an index object to search instead of the store's own (the seam for indexes held elsewhere,
            e.g. shards in Ray actors: anything ``SearchSession`` takes).
        warm_up: load the index and the model in the background when the app starts (``/healthz`` turns
            ok when done); otherwise on the first request.
        engine: ``local`` (the index in this process) or ``ray`` (each shard in a Ray actor placed where
            the cluster has memory for it, so an index larger than this machine's memory is served).
        address: the Ray cluster for ``engine="ray"`` (None: a loopback-only Ray instance on this machine).

    Returns:
        The app; run it with uvicorn (``vecmetric.serve.run_server``) or test it with FastAPI's ``TestClient``.

    Raises:
        StoreError: no store at ``store``, or a hyperbolic one (not served yet).
        InputError: an unknown ``engine``; EngineError: ``ray`` without Ray installed.
    """
    from .. import __version__
    from ..store import open_store
    from . import _files, _routes

    opened = open_store(store)
    refuse_hyperbolic(opened)
    if engine not in ("local", "ray"):
        raise InputError(f"--engine must be local or ray, not {engine!r}")
    if engine == "ray" and index is None:
        from ..index import live_ray_index

        index = live_ray_index(opened.path, address)
    state = ServerState(opened, limits or ServeLimits(), reporter=reporter, thumbnails_on_disk=thumbnails_on_disk, index=index)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if warm_up:
            threading.Thread(target=state.warm_up, name="vecmetric-warm-up", daemon=True).start()
        try:
            yield
        finally:
            state.close()

    # FastAPI's interactive docs load their scripts from a CDN, which fails offline: off. The schema is served.
    app = FastAPI(title="vecmetric", version=__version__, description=DESCRIPTION, docs_url=None, redoc_url=None, lifespan=lifespan)
    upload_cap = state.limits.upload_bytes + (1 << 20)  # the image, its form fields and the multipart framing
    app.add_middleware(BodyCap, cap_for=lambda path: upload_cap if path == "/search/image" else 1 << 20)
    app.state.vecmetric = state
    app.state.vecmetric_auth = Auth(token, frozenset(trusted_hosts) if trusted_hosts is not None else None)
    install_error_handler(app)
    app.include_router(_routes.router)
    app.include_router(_files.router)
    page = (resources.files("vecmetric.serve") / "static" / "index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index_page() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff"})

    app.mount("/static", StaticFiles(directory=static_dir()), name="static")
    return app


# The page loads nothing from elsewhere: its own script and style, and images from this server (blob: for a pasted one).
_CSP = "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
