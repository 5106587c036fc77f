"""Who may use the API: the token (a bearer header, or the session cookie the page sets) and the Host header.

With a token, every data request needs ``Authorization: Bearer TOKEN`` or the session cookie, which
``POST /session`` sets after the user types the token into the page once. The cookie holds an HMAC
of the token, not the token (HttpOnly: the page's scripts never see it; SameSite=Strict: other
sites' pages never send it), and a state-changing request that carries it must come from this
server's own page (its ``Origin``, else its ``Referer``, names this host): two servers on one
machine are the same *site* to a browser, and SameSite alone would let one's page post to the other.
Comparisons are constant-time.

A server bound to loopback without a token answers only requests whose ``Host`` is a loopback name,
so that a web page whose domain was rebound to 127.0.0.1 (DNS rebinding) cannot read it.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

from fastapi import Request, Response

from ._errors import HttpProblem

__all__ = ["COOKIE", "LOOPBACK_HOSTS", "Auth"]

COOKIE = "vecmetric_session"
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _host_name(host_header: str) -> str:
    """``example.org:8000`` -> ``example.org``; ``[::1]:8000`` -> ``::1``."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Auth:
    """The server's access rules.

    Args:
        token: the token every data request needs (None: no token, the server is open to whoever reaches it).
        trusted_hosts: the only ``Host`` names answered (None: any).
    """

    def __init__(self, token: str | None, trusted_hosts: frozenset[str] | None = None):
        if token is not None and not token.strip():
            raise ValueError("the token must not be empty")
        self.token = token.encode("utf-8") if token is not None else None
        self.trusted_hosts = frozenset(h.lower() for h in trusted_hosts) if trusted_hosts is not None else None
        self._cookie = hmac.new(self.token, b"vecmetric session v1", hashlib.sha256).hexdigest().encode() if self.token else None

    @property
    def required(self) -> bool:
        """Whether requests need the token."""
        return self.token is not None

    def check_host(self, request: Request) -> None:
        """Raises HttpProblem(400) for a ``Host`` outside ``trusted_hosts``."""
        if self.trusted_hosts is None:
            return
        if _host_name(request.headers.get("host", "")) not in self.trusted_hosts:
            raise HttpProblem(400, "this server answers only requests addressed to it by a loopback name", hint="open it as http://127.0.0.1:PORT/")

    def _bearer_ok(self, request: Request) -> bool:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode("utf-8"), self.token)

    def _cookie_ok(self, request: Request) -> bool:
        cookie = request.cookies.get(COOKIE)
        return cookie is not None and hmac.compare_digest(cookie.encode("utf-8", "replace"), self._cookie)

    def authenticated(self, request: Request) -> bool:
        """Whether the request carries the token or the session cookie (always True without a token)."""
        return not self.required or self._bearer_ok(request) or self._cookie_ok(request)

    def check(self, request: Request) -> None:
        """Let the request through, or raise HttpProblem 401 (no valid token or cookie) or 403 (the cookie, from another origin)."""
        self.check_host(request)
        if not self.required or self._bearer_ok(request):
            return
        if not self._cookie_ok(request):
            raise HttpProblem(401, "this server needs a token", headers={"WWW-Authenticate": "Bearer"})
        if request.method not in _SAFE_METHODS:
            check_same_origin(request)

    def log_in(self, request: Request, response: Response, token: str) -> None:
        """Set the session cookie on ``response`` when ``token`` is the token; raise HttpProblem 401 otherwise."""
        self.check_host(request)
        if not self.required:
            return
        check_same_origin(request)
        if not hmac.compare_digest(token.encode("utf-8"), self.token):
            raise HttpProblem(401, "that is not this server's token", hint="the token is what --token or VECMETRIC_TOKEN was set to")
        response.set_cookie(COOKIE, self._cookie.decode(), httponly=True, samesite="strict", path="/")

    @staticmethod
    def log_out(response: Response) -> None:
        """Make the browser drop the session cookie."""
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")


def check_same_origin(request: Request) -> None:
    """Raise HttpProblem(403) unless the request's ``Origin`` (else ``Referer``) names the host it was sent to."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if source is None or source == "null" or urlsplit(source).netloc.lower() != request.headers.get("host", "").lower():
        raise HttpProblem(
            403,
            "a request that carries the session cookie must come from this server's own page",
            hint="programs send 'Authorization: Bearer TOKEN' instead of the cookie",
        )
