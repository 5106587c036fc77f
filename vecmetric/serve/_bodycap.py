"""``BodyCap``: request bodies over a size cap are answered 413 before they are read into memory or onto disk.

A declared ``Content-Length`` over the cap is refused before any byte is read; a body sent without
one (chunked) is counted as it arrives and refused once it passes the cap. Either way the answer is
the server's JSON error, whatever the route was doing with the body when it stopped.
"""

from __future__ import annotations

from typing import Callable

from ._errors import problem_response

__all__ = ["BodyCap"]


class _TooLarge(Exception):
    pass


class BodyCap:
    """Pure ASGI middleware.

    Args:
        app: the ASGI app.
        cap_for: ``path -> the largest body in bytes`` that path accepts.
    """

    def __init__(self, app, cap_for: Callable[[str], int]):
        self.app = app
        self.cap_for = cap_for

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        cap = self.cap_for(scope.get("path", ""))
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > cap):
            return await self._refuse(scope, receive, send, cap)
        seen = 0
        over = False
        started = False

        async def counting_receive():
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > cap:
                    over = True
                    raise _TooLarge
            return message

        async def guarded_send(message):
            nonlocal started
            if over and not started:
                return  # the route's own answer to the broken body is replaced by the 413 below
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _TooLarge:
            pass
        if over and not started:
            await self._refuse(scope, receive, send, cap)

    @staticmethod
    async def _refuse(scope, receive, send, cap: int):
        response = problem_response(413, f"the request body is over the {cap} byte limit", headers={"Connection": "close"})
        await response(scope, receive, send)
