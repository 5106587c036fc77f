"""Running the app: which addresses need a token, binding the socket, uvicorn until Ctrl-C."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any, Callable

from ..errors import UsageError

__all__ = ["TOKEN_ENV", "check_listen", "is_loopback", "listen", "run_server"]

TOKEN_ENV = "VECMETRIC_TOKEN"


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine's loopback interface only (``localhost``, ``127.x.y.z``, ``::1``)."""
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # another name: it may resolve to anything


def check_listen(host: str, token: str | None) -> None:
    """Refuse to listen beyond loopback without a token.

    Raises:
        UsageError: ``host`` is not loopback and there is no token.
    """
    if token is None and not is_loopback(host):
        raise UsageError(
            f"refusing to listen on {host} without a token: anyone who can reach it could search and download the images",
            hint=f"set one in the environment, {TOKEN_ENV}=$(python -c 'import secrets; print(secrets.token_urlsafe(24))'), or with --token",
        )


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (port 0: a free one), ready for uvicorn.

    Raises:
        UsageError: the address cannot be bound (in use, not this machine's, no permission).
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", hint="choose another --port or --host") from None
    return sock


def run_server(app: Any, sock: socket.socket, verbose: bool = False, on_started: Callable[[], None] | None = None) -> None:
    """Serve ``app`` on ``sock`` with uvicorn until Ctrl-C (or SIGTERM), then shut down gracefully.

    Args:
        app: the FastAPI app.
        sock: a bound socket (``listen``).
        verbose: uvicorn's log lines and one access line per request (through Python logging).
        on_started: called once uvicorn is about to accept connections.
    """
    import uvicorn

    config = uvicorn.Config(app, log_config=None, log_level="info" if verbose else "warning", access_log=verbose, timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    if on_started is not None:
        original = server.startup

        async def startup(sockets=None):
            await original(sockets=sockets)
            if server.started:
                on_started()

        server.startup = startup  # type: ignore[method-assign]
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass  # uvicorn has shut down; it raises Ctrl-C again once done, for the caller that wants it
    finally:
        sock.close()
