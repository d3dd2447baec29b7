"""Helpers for the fault tests: private PostgreSQL/Redis fixtures, readiness polling and
latency probes (a pinger, a message sender) that run while a dependency is broken."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from runwire.client import Frame, RunwireClient
from runwire.protocol.codes import TERMINAL_EVENTS

from .conftest import missing_service
from .nodes import Node
from .pg import PrivatePostgres
from .redis_server import PrivateRedis

QUESTION = "what is 12*(3+4)?"


@pytest.fixture
async def private_pg() -> AsyncIterator[PrivatePostgres]:
    try:
        pg = PrivatePostgres().start()
    except (FileNotFoundError, OSError) as exc:
        missing_service(f"cannot start a private PostgreSQL: {exc}")
        raise
    yield pg
    pg.destroy()


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    try:
        server = PrivateRedis().start()
    except FileNotFoundError:
        missing_service("redis-server is not installed")
        raise
    yield server
    server.stop()


async def readyz(node: Node) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.get(node.base_url + "/readyz")
        return r.status_code, r.json()


async def eventually_ready(node: Node, status: int, timeout: float = 20) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        code, body = await readyz(node)
        if code == status:
            return body
        assert asyncio.get_running_loop().time() < deadline, (code, body)
        await asyncio.sleep(0.1)  # ok-sleep: polling another process's health


async def eventually_redis(node: Node, state: str, timeout: float = 20) -> dict[str, Any]:
    """Poll /readyz until ``components.redis`` is `state`; returns that body (any status)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        code, body = await readyz(node)
        if body["components"]["redis"] == state:
            return {"status_code": code, **body}
        assert asyncio.get_running_loop().time() < deadline, f"redis never {state}: {body}"
        await asyncio.sleep(0.1)  # ok-sleep: polling another process's health


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Pinger:
    """Pings over its own connection, one at a time, recording each round trip."""

    client: RunwireClient
    latencies: list[float] = field(default_factory=list)
    sent_at: list[float] = field(default_factory=list)  # time.monotonic() of each ping

    async def run(self, stop: asyncio.Event, interval: float = 0.1,
                  timeout: float = 10.0) -> None:
        while not stop.is_set():
            rid = uuid.uuid4().hex
            sent = time.monotonic()
            await self.client.send("ping", request_id=rid)
            await self.client.until(lambda f, rid=rid: f["type"] == "pong"  # type: ignore[misc]
                                    and f["payload"].get("request_id") == rid, timeout=timeout)
            self.latencies.append(time.monotonic() - sent)
            self.sent_at.append(sent)
            await asyncio.sleep(interval)  # ok-sleep: pacing the probe, not synchronisation


@dataclass
class Outcome:
    """What one user_message got: its ack and terminal event, or an error frame."""

    seconds: float
    result: str  # "completed", "agent_error:<code>", "error:<code>"
    thread_id: str | None


async def ask_timed(client: RunwireClient, content: str = QUESTION,
                    timeout: float = 30.0, **extra: Any) -> Outcome:
    """Send a message; wait for its terminal event or an `error` frame (a clear refusal)."""
    sent = time.monotonic()
    ack, frames = await client.ask(content, timeout=timeout, **extra)
    seconds = time.monotonic() - sent
    if ack["type"] == "error":
        return Outcome(seconds, f"error:{ack['payload']['code']}", None)
    thread_id = ack["payload"]["thread_id"]
    end = next(f for f in reversed(frames) if f["type"] in TERMINAL_EVENTS)
    if end["type"] == "agent_completed":
        return Outcome(seconds, "completed", thread_id)
    return Outcome(seconds, f"{end['type']}:{end['payload'].get('code')}", thread_id)


@dataclass
class Watcher:
    """Records every frame one connection receives, in the background."""

    client: RunwireClient
    frames: list[Frame] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        while True:
            self.frames.append(await self.client.recv())
            self.changed.set()

    def seqs(self, thread_id: str) -> list[int]:
        return [f["seq"] for f in self.frames
                if f.get("thread_id") == thread_id and isinstance(f.get("seq"), int)]

    async def wait_for(self, predicate: Any, timeout: float) -> None:
        """Until `predicate(self)` holds, re-checked whenever a frame arrives."""
        async with asyncio.timeout(timeout):
            while not predicate(self):
                self.changed.clear()
                await self.changed.wait()


async def thread_log(node: Node, thread_id: str, user: str = "alice") -> list[dict[str, Any]]:
    """Every stored event of the thread (page by page: a page holds at most 500)."""
    items: list[dict[str, Any]] = []
    async with node.api(user) as http:
        while True:
            after = items[-1]["seq"] if items else 0
            r = await http.get(f"/api/threads/{thread_id}/events",
                               params={"after_seq": after, "limit": 500})
            assert r.status_code == 200, r.text
            page: list[dict[str, Any]] = r.json()["items"]
            items += page
            if len(page) < 500:
                return items
