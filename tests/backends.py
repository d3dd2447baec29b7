"""A server on the embedded default or on PostgreSQL + Redis, for tests of the HTTP doors
(HTTP runs, SSE, AG-UI, search, webhooks) that must hold on both backends."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from .conftest import ServerHandle, missing_service
from .pg import PG_HOST, fresh_database, pg_available
from .redis_server import REDIS_URL, redis_available, unique_prefix

BACKENDS = ["sqlite", "postgres"]


@contextlib.asynccontextmanager
async def backend_server(backend: str, server_factory: Callable[..., ServerHandle],
                         **settings: Any) -> AsyncIterator[ServerHandle]:
    """A started server on `backend` ("sqlite": embedded; "postgres": a fresh PostgreSQL
    database and Redis with a unique prefix)."""
    if backend == "sqlite":
        yield server_factory(**settings)
        return
    if not await pg_available():
        missing_service(f"PostgreSQL is not reachable at {PG_HOST}")
    if not redis_available():
        missing_service(f"Redis is not reachable at {REDIS_URL}")
    async with fresh_database() as url:
        server = server_factory(database_url=url, redis_url=REDIS_URL,
                                redis_prefix=unique_prefix(), jwt_secret=uuid.uuid4().hex * 2,
                                **settings)
        try:
            yield server
        finally:
            server.stop()  # before the database is dropped
