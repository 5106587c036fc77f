"""``vecmetric serve``: a store over HTTP: a JSON API for programs and a page for people.

    from vecmetric.serve import create_app
    app = create_app("my-store", token="...")      # a FastAPI app; uvicorn runs it, TestClient tests it

The server searches through ``vecmetric.query.SearchSession`` in live mode (the index merged with the
rows written since, never the store's lock), embeds queries through the store's ONNX export (no torch
when it has one), decodes uploads under ``vecmetric.present.DecodeGuard`` and serves thumbnails
from ``vecmetric.present.ThumbnailCache``. The page is plain HTML, CSS and JavaScript in ``static/``.
"""

from ._app import create_app
from ._auth import COOKIE, LOOPBACK_HOSTS
from ._run import TOKEN_ENV, check_listen, is_loopback, listen, run_server
from ._state import ServeLimits

__all__ = ["COOKIE", "LOOPBACK_HOSTS", "ServeLimits", "TOKEN_ENV", "check_listen", "create_app", "is_loopback", "listen", "run_server"]
