"""Redis faults with a private redis-server shared by two `runwire serve` nodes: stopped
and restarted, and frozen with SIGSTOP (a hung or black-holed Redis: connections are
accepted, nothing is answered). SPEC 5 "Degraded modes": each node keeps serving its own
connections, limits fall back to per-node counts, /readyz answers 200 `redis: degraded`;
after Redis is back, other nodes' connections catch up from the log."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from runwire.client import RunwireClient

from .conftest import missing_service
from .faults import (
    Outcome,
    Pinger,
    Watcher,
    ask_timed,
    eventually_redis,
    percentile,
    private_redis,
    readyz,
    thread_log,
)
from .nodes import Node
from .pg import fresh_database, pg_available
from .redis_server import PrivateRedis, unique_prefix

__all__ = ["private_redis"]  # a fixture, used by name

pytestmark = [pytest.mark.redis, pytest.mark.postgres]

PING_BOUND = 2.0  # seconds: a ping is answered within this, whatever Redis does
ANSWER_BOUND = 10.0  # seconds: a message is answered or clearly refused within this


@pytest.fixture
async def nodes(private_redis: PrivateRedis, tmp_path: Path) -> AsyncIterator[tuple[Node, Node]]:
    """Two nodes sharing a fresh PostgreSQL database and the private Redis."""
    if not await pg_available():
        missing_service("PostgreSQL is not reachable")
    async with fresh_database() as url:
        shared = {"database_url": url, "redis_url": private_redis.url,
                  "redis_prefix": unique_prefix(), "jwt_secret": uuid.uuid4().hex * 2,
                  "builtin_delta_delay": 0.02, "max_connections_per_user": 10,
                  "rate_limit_messages": "600/minute"}
        a = await Node(tmp_path / "a", node_id="a", **shared).start()
        b = await Node(tmp_path / "b", node_id="b", **shared).start()
        try:
            yield a, b
        finally:
            a.kill()
            b.kill()


async def outage(a: Node, b: Node, *, fail: Callable[[], None], repair: Callable[[], None],
                 seconds: float) -> dict[str, Any]:
    """Break Redis for `seconds` while pinging on both nodes and asking on node A, then
    repair it and check recovery. Returns the figures measured."""
    async with RunwireClient.connect(a.ws_url, a.token("pinger")) as ping_a, \
            RunwireClient.connect(b.ws_url, b.token("pinger")) as ping_b, \
            RunwireClient.connect(a.ws_url, a.token()) as alice, \
            RunwireClient.connect(b.ws_url, b.token()) as mirror:
        watcher = Watcher(mirror)
        pingers = [Pinger(ping_a), Pinger(ping_b)]
        tasks = [asyncio.create_task(watcher.run())]
        try:
            figures = await _outage(a, b, alice, watcher, pingers, tasks, fail=fail,
                                    repair=repair, seconds=seconds)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    print(f"\nfigures: {figures}")
    return figures


async def _outage(a: Node, b: Node, alice: RunwireClient, watcher: Watcher,
                  pingers: list[Pinger], tasks: list[asyncio.Task[None]], *,
                  fail: Callable[[], None], repair: Callable[[], None],
                  seconds: float) -> dict[str, Any]:
    warm = await ask_timed(alice)
    assert warm.result == "completed" and warm.thread_id is not None
    thread = warm.thread_id
    last = (await thread_log(a, thread))[-1]["seq"]
    # cross-node delivery works before the fault (this also proves B subscribed)
    await watcher.wait_for(lambda w: last in w.seqs(thread), timeout=10)

    stop = asyncio.Event()
    tasks.extend(asyncio.create_task(p.run(stop)) for p in pingers)
    outcomes: list[Outcome] = []
    readiness: list[tuple[float, int, str]] = []
    connects: list[float] = []
    fail()
    broken_at = time.monotonic()
    try:
        while time.monotonic() - broken_at < seconds:
            outcomes.append(await ask_timed(alice, f"{len(outcomes)}: 6*7?",
                                            timeout=ANSWER_BOUND, thread_id=thread))
            asked = time.monotonic()
            code, body = await readyz(a)
            readiness.append((time.monotonic() - asked, code, body["components"]["redis"]))
            opened = time.monotonic()
            async with RunwireClient.connect(a.ws_url, a.token("carol"), open_timeout=10):
                connects.append(time.monotonic() - opened)
    finally:
        repair()
    repaired_at = time.monotonic()
    stop.set()
    await asyncio.gather(*tasks[1:])

    body = await eventually_redis(a, "ok")
    assert body["status_code"] == 200
    await eventually_redis(b, "ok")
    redis_ok_after = time.monotonic() - repaired_at
    # B's connection catches up from the log on everything it missed
    stored = [e["seq"] for e in await thread_log(a, thread)]
    await watcher.wait_for(lambda w: w.seqs(thread) == stored, timeout=20)
    caught_up_after = time.monotonic() - repaired_at
    # and live cross-node delivery works again
    after = await ask_timed(alice, "after the outage: 2+2?", thread_id=thread)
    assert after.result == "completed"
    stored = [e["seq"] for e in await thread_log(a, thread)]
    await watcher.wait_for(lambda w: w.seqs(thread) == stored, timeout=10)

    latencies = pingers[0].latencies + pingers[1].latencies
    figures = {
        "pings": len(latencies),
        "ping_p50_ms": round(percentile(latencies, 0.5) * 1000, 1),
        "ping_p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
        "ping_max_ms": round(max(latencies) * 1000, 1),
        "slowest_pings": sorted(((round(lat * 1000), node, round(at - broken_at, 2))
                                 for node, p in zip("ab", pingers, strict=True)
                                 for lat, at in zip(p.latencies, p.sent_at, strict=True)),
                                reverse=True)[:5],
        "messages": [(o.result, round(o.seconds, 2)) for o in outcomes],
        "readyz": [(round(s, 3), code, state) for s, code, state in readiness],
        "connect_max_ms": round(max(connects) * 1000, 1),
        "redis_ok_after_s": round(redis_ok_after, 2),
        "caught_up_after_s": round(caught_up_after, 2),
    }
    assert max(latencies) < PING_BOUND, figures
    assert all(o.result == "completed" or o.result.startswith("error:") for o in outcomes), \
        figures
    assert sum(o.result == "completed" for o in outcomes) >= 1, figures  # the node serves
    assert all(code == 200 for _, code, _ in readiness), figures
    assert readiness[-1][2] == "degraded", figures
    assert all(s < PING_BOUND for s, _, _ in readiness), figures
    assert max(connects) < PING_BOUND, figures
    return figures


async def test_redis_frozen_for_20_seconds(private_redis: PrivateRedis,
                                           nodes: tuple[Node, Node]) -> None:
    await outage(*nodes, fail=private_redis.freeze, repair=private_redis.thaw, seconds=20)


async def test_redis_stopped_and_restarted(private_redis: PrivateRedis,
                                           nodes: tuple[Node, Node]) -> None:
    def restart() -> None:
        private_redis.start()

    await outage(*nodes, fail=private_redis.stop, repair=restart, seconds=8)
