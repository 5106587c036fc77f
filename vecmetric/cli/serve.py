"""``vecmetric serve``: serve a store over HTTP, a JSON API and a page, until Ctrl-C."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import typer

from ._common import StoreOption, handle_errors, stderr, store_path
from ._logging import quiet_native_logs
from ._progress import RichReporter


def _verbose() -> bool:
    """Whether the root ``--verbose`` was given (``configure_logging`` lets library logs through then)."""
    import logging

    return logging.getLogger().level <= logging.INFO


@handle_errors
def serve_command(
    store: Path = StoreOption,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on. Anything but loopback (127.0.0.1, ::1, localhost) needs a token."),
    port: int = typer.Option(8000, "--port", "-p", min=0, max=65535, help="Port to listen on (0: any free port, printed at start)."),
    token: str = typer.Option(
        None,
        "--token",
        help="Require this token: 'Authorization: Bearer TOKEN' for programs, typed once into the page for people. "
        "Prefer $VECMETRIC_TOKEN, which keeps it out of ps. (default: $VECMETRIC_TOKEN, else none)",
        show_default=False,
    ),
    engine: str = typer.Option(
        "local", "--engine", help="local (the index in this process) or ray (each index shard in a Ray actor, for an index larger than this machine's memory; needs pip install 'vecmetric[ray]')."
    ),
    address: str = typer.Option(None, "--address", help="Ray cluster for --engine ray, e.g. auto or HEAD:6379. (default: a Ray instance on this machine, loopback only)", show_default=False),
) -> None:
    """Serve the store: the page at http://HOST:PORT/, the JSON API (POST /search, POST /search/image, GET /images/ID,
    GET /thumbs/ID, GET /info, GET /healthz) and its schema at /openapi.json.

    The server never writes to the store and never takes its lock: while 'embed' adds files, answers include them;
    when 'index' writes a new index, the next request uses it. Ctrl-C stops it.

    With --engine ray the shards of the index ('vecmetric index --shards N') are held by Ray actors spread over
    the cluster's memory; queries are embedded here and every shard's answers merged exactly.
    """
    from ..serve import LOOPBACK_HOSTS, TOKEN_ENV, check_listen, create_app, is_loopback

    token = token or os.environ.get(TOKEN_ENV) or None
    check_listen(host, token)
    reporter = RichReporter()
    trusted = LOOPBACK_HOSTS | {host.strip("[]").lower()} if is_loopback(host) and token is None else None
    native_logs = quiet_native_logs() if engine == "ray" else contextlib.nullcontext()
    with native_logs:
        app = create_app(store_path(store), token=token, trusted_hosts=trusted, reporter=reporter, engine=engine, address=address)
        _serve(app, host, port, token, store)


def _serve(app, host: str, port: int, token: str | None, store: Path) -> None:
    """Listen, print the address once uvicorn accepts connections, serve until Ctrl-C."""
    from ..serve import listen, run_server

    sock = listen(host, port)
    bound = sock.getsockname()[1]
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    url = f"http://{shown}:{bound}/"

    def started() -> None:
        lock = "; requests need the token" if token else ""
        stderr.print(f"serving {store_path(store)} at {url} (API schema: {url}openapi.json{lock}); Ctrl-C stops", highlight=False, soft_wrap=True)

    run_server(app, sock, verbose=_verbose(), on_started=started)
    stderr.print("stopped", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)
