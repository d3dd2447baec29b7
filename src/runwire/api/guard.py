"""The HTTP edge in front of the routes: what is checked before a route runs.

Order, for every HTTP request (ASGI middleware, :class:`EdgeGuard`):

1. ``/api/…`` and ``/ag-ui``: the bearer token is verified *before anything of the body
   is read* (FastAPI reads and parses a route's body before its dependencies run, so a
   route dependency alone would buffer 50 MB from anyone). Refused → 401 problem. The
   verified caller is left in the scope for :func:`runwire.api.deps.principal`.
2. The body is bounded by ``max_request_body``: a larger ``Content-Length`` → 413 at once;
   a body without one (chunked) is counted as the route reads it → 413 past the limit.
   A refusal made before a body that could pass the limit is read says
   ``Connection: close``, so that body is never read at all.
3. An exception nothing mapped to a response is a bug: one ERROR with its traceback and a
   500 problem body (``code: internal``), never the exception's text.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, MutableMapping
from typing import Any

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runwire.api.errors import BodyTooLarge, problem, too_large
from runwire.auth import Principal
from runwire.errors import AuthError

log = logging.getLogger(__name__)

PRINCIPAL_KEY = "runwire.principal"  # scope key: the caller verified by the guard


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header.

    Raises:
        AuthError: no header, another scheme, or an empty token.
    """
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("missing bearer token")
    return token.strip()


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")  # how Starlette reads headers
    return None


class EdgeGuard:
    """ASGI middleware: token before body, bounded bodies, a problem body for bugs.

    Args:
        verify: token → caller (raises AuthError); called for the `protected` paths.
        max_body: the largest request body accepted, in bytes.
        protected: path prefixes that need a bearer token (every one of their routes does).
    """

    def __init__(self, app: ASGIApp, *, verify: Callable[[str], Principal], max_body: int,
                 protected: tuple[str, ...] = ("/api", "/ag-ui")) -> None:
        self.app = app
        self._verify = verify
        self._max_body = max_body
        self._protected = protected

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if any(path == p or path.startswith(p + "/") for p in self._protected):
            try:
                token = bearer_token(_header(scope, b"authorization"))
                scope[PRINCIPAL_KEY] = self._verify(token)
            except AuthError as exc:
                response = problem(401, "Unauthorized", str(exc), code="unauthorized")
                await _early(response, scope, receive, send, close=self._unbounded(scope))
                return
        if self._declared(scope) > self._max_body:
            await _early(too_large(self._max_body), scope, receive, send, close=True)
            return
        await self._guarded(scope, receive, send)

    @staticmethod
    def _declared(scope: Scope) -> int:
        """The body's Content-Length (0 without one; h11 has checked it is digits)."""
        declared = _header(scope, b"content-length") or "0"
        return int(declared) if declared.isascii() and declared.isdigit() else 0

    def _unbounded(self, scope: Scope) -> bool:
        """Whether a body left unread could be longer than `max_body` (then the connection
        is closed after an early answer rather than drained)."""
        return (self._declared(scope) > self._max_body
                or _header(scope, b"transfer-encoding") is not None)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self._max_body
        received = 0
        started = overflow = False

        async def counting_receive() -> Message:
            nonlocal received, overflow
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    overflow = True
                    raise BodyTooLarge(limit)  # the app's 413 handler answers
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if overflow:  # never read the rest of a body that has no end in sight
                    message["headers"] = [*message.get("headers", []), (b"connection", b"close")]
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await _early(too_large(limit), scope, receive, send, close=True)
        except Exception:
            if started:  # too late for a response: let the server log and drop it
                raise
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            await problem(500, "Internal Server Error", "an internal error occurred",
                          code="internal")(scope, receive, send)


async def _early(response: JSONResponse, scope: Scope, receive: Receive, send: Send, *,
                 close: bool) -> None:
    """Answer without reading the body. With `close`, the connection closes after the
    answer, so a body of any size is never read; without, the server reads and drops the
    (bounded) rest, and the client surely sees the answer (a close with unread data
    resets the connection, which can destroy an answer not yet delivered)."""
    if close:
        response.headers["Connection"] = "close"
    await response(scope, receive, send)


def principal_of(scope: MutableMapping[str, Any]) -> Principal | None:
    """The caller the guard verified for this request, if it ran."""
    found = scope.get(PRINCIPAL_KEY)
    return found if isinstance(found, Principal) else None
