"""What the HTTP edge needs, handed in by the application's lifespan.

The lifespan yields ``{"api": ApiContext(...)}`` as Starlette lifespan state; each request
gets it as ``request.state.api``. Routes reach services only through the :func:`context`
dependency, so nothing under ``api/`` imports the application module (no import cycle) and
tests can see exactly what a route may touch.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from runwire.api.guard import bearer_token, principal_of
from runwire.auth import Principal, TokenService
from runwire.bus.base import Bus
from runwire.errors import RateLimited
from runwire.metrics import Metrics
from runwire.ratelimit import RateLimiter
from runwire.runs.service import RunService
from runwire.settings import Settings
from runwire.store.cache import HistoryCache
from runwire.store.reader import ThreadReader
from runwire.store.search import MessageSearcher
from runwire.threads import ThreadService


@dataclass(frozen=True, slots=True)
class ApiContext:
    """The services behind ``/api``, ``/ag-ui`` (built once per application)."""

    settings: Settings
    tokens: TokenService
    limiter: RateLimiter
    threads: ThreadService
    runs: RunService
    reader: ThreadReader
    search: MessageSearcher
    history_cache: HistoryCache
    bus: Bus
    metrics: Metrics
    closing: asyncio.Event  # set when the node drains: SSE streams end


def context(request: Request) -> ApiContext:
    """The lifespan's :class:`ApiContext` (a server that is not started answers 503)."""
    api = getattr(request.state, "api", None)
    if not isinstance(api, ApiContext):
        raise RuntimeError("runwire services are not running")
    return api


Api = Annotated[ApiContext, Depends(context)]


async def principal(request: Request, api: Api) -> Principal:
    """The caller, from ``Authorization: Bearer <jwt>``; 401 problem otherwise. The edge
    guard verified it before the body was read (api/guard.py); verified here when not."""
    found = principal_of(request.scope)
    if found is not None:
        return found
    return api.tokens.verify(bearer_token(request.headers.get("authorization")))


async def writer(api: Api, user: Annotated[Principal, Depends(principal)]) -> Principal:
    """The caller of a write endpoint, counted against the `rest_write` rate limit."""
    decision = await api.limiter.hit(user.user_id, "rest_write")
    if not decision.allowed:
        raise RateLimited(decision.retry_after_ms)
    return user


async def count_message(api: ApiContext, user: Principal) -> None:
    """Count a valid message against `user_message`, exactly like a ``user_message``
    frame on the WebSocket (one limit, whichever door). Called once the body validated:
    a refused body costs only `rest_write`, as a bad frame costs only `frame`."""
    decision = await api.limiter.hit(user.user_id, "user_message")
    if not decision.allowed:
        api.metrics.rate_limited.labels(api.settings.node_id, "user_message").inc()
        raise RateLimited(decision.retry_after_ms)


User = Annotated[Principal, Depends(principal)]
Writer = Annotated[Principal, Depends(writer)]
