"""Helpers for tests that talk to a real server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from runwire.client import Frame, RunwireClient, RunwireClosed

from .conftest import ServerHandle

__all__ = ["Frame", "RunwireClosed", "api", "client", "count_rows", "eventually", "refused",
           "thread_events"]


@contextlib.asynccontextmanager
async def client(server: ServerHandle, user: str = "alice", **kwargs: Any
                 ) -> AsyncIterator[RunwireClient]:
    async with RunwireClient.connect(server.ws_url, server.token(user), **kwargs) as c:
        yield c


async def refused(server: ServerHandle, token: str, **kwargs: Any) -> tuple[int | None, str]:
    """Connect with `token` and return the close (code, reason) the server answers."""
    try:
        async with RunwireClient.connect(server.ws_url, token, **kwargs) as c:
            return await c.wait_closed()
    except RunwireClosed as exc:
        return exc.code, exc.reason


def api(server: ServerHandle, user: str = "alice") -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.base_url,
                             headers={"Authorization": f"Bearer {server.token(user)}"})


def thread_events(frames: list[Frame], thread_id: str) -> list[Frame]:
    return [f for f in frames if f.get("thread_id") == thread_id and "seq" in f]


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until `condition()` holds (state owned by the server thread, no event to await)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition never became true"
        await asyncio.sleep(0.005)  # ok-sleep: polling a condition with a deadline


async def count_rows(server: ServerHandle, *tables: str) -> list[int]:
    """Row counts of `tables` (run on the server's loop with server.call)."""
    from sqlalchemy import text

    async with server.services.db.read() as session:
        return [int((await session.execute(text(f"SELECT count(*) FROM {t}"))).scalar_one())
                for t in tables]
