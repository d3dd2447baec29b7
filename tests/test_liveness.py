"""Heartbeat, idle timeout, rate limits and abuse closing over real sockets."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from runwire.client import RunwireClient, RunwireClosed

from .conftest import ServerHandle
from .helpers import client

QUESTION = "what is 12*(3+4)?"


async def test_run_longer_than_five_heartbeats_completes_without_disconnect(
    server_factory: Any,
) -> None:
    server = server_factory(heartbeat_interval=0.05, builtin_delta_delay=0.3)
    async with client(server) as c:
        started = time.monotonic()
        _, frames = await c.ask(QUESTION, timeout=30)
        elapsed = time.monotonic() - started
        assert frames[-1]["type"] == "agent_completed"
        assert elapsed > 5 * 0.05, f"run too short to prove anything ({elapsed:.2f}s)"
        assert c.close_code is None
        assert c.established["payload"]["heartbeat_interval"] == 0.05


async def test_client_that_stops_answering_pings_is_closed_with_4000(server_factory: Any) -> None:
    server = server_factory(heartbeat_interval=0.1)
    async with client(server) as c:
        transport = c._ws.transport
        transport.pause_reading()  # no more pongs: the server's pings go unanswered
        await asyncio.sleep(0.5)  # ok-sleep: silence the test must create (5 intervals)
        transport.resume_reading()
        code, reason = await c.wait_closed(timeout=5)
        assert code == 4000, (code, reason)


async def test_idle_connection_is_closed_with_1000(server_factory: Any) -> None:
    server = server_factory(connection_timeout=0.3)
    async with client(server) as c:
        code, reason = await c.wait_closed(timeout=10)
        assert (code, reason) == (1000, "idle timeout")


async def test_over_the_message_limit_gets_rate_limited_with_retry_after(
    server_factory: Any,
) -> None:
    server = server_factory(rate_limit_messages="2/minute")
    async with client(server) as c:
        for _ in range(2):
            ack, _ = await c.ask(QUESTION)
            assert ack["type"] == "message_ack"
        await c.send("user_message", {"content": QUESTION}, request_id="third")
        err = (await c.until(lambda f: f["type"] == "error"))[-1]
        assert err["payload"]["code"] == "rate_limited"
        assert err["payload"]["request_id"] == "third"
        assert 0 < err["payload"]["retry_after_ms"] <= 60_000
        await c.send("ping")  # other frames still flow
        assert (await c.until(lambda f: f["type"] == "pong"))[-1]["type"] == "pong"


async def test_sustained_abuse_closes_with_1008(server_factory: Any) -> None:
    server = server_factory(rate_limit_frames="5/minute", rate_limit_abuse_close=3)
    async with client(server) as c:
        for _ in range(5):
            await c.send("ping")
        for _ in range(3):
            await c.send("ping")
        code, _ = await c.wait_closed(timeout=5)
        assert code == 1008


async def test_connection_count_is_exact_under_concurrent_connects(server_factory: Any) -> None:
    server: ServerHandle = server_factory(max_connections_per_user=5)
    token = server.token("alice")
    accepted = 0
    refused = 0

    codes: list[int | None] = []

    async def attempt() -> None:
        nonlocal accepted, refused
        try:
            async with RunwireClient.connect(server.ws_url, token) as c:
                accepted += 1
                await c.send("ping")
                await c.until(lambda f: f["type"] == "pong")
                await barrier.wait()
        except RunwireClosed as exc:
            codes.append(exc.code)
            refused += 1
            await barrier.wait()

    barrier = asyncio.Barrier(20)
    await asyncio.wait_for(asyncio.gather(*(attempt() for _ in range(20))), 30)
    assert (accepted, refused) == (5, 15)
    assert set(codes) == {4008}
