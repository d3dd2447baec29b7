"""Failure modes with private PostgreSQL and Redis servers that the tests stop and start
(never the machine's shared services)."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

from runwire.client import RunwireClient

from .conftest import missing_service
from .faults import (
    QUESTION,
    Outcome,
    Pinger,
    ask_timed,
    eventually_ready,
    percentile,
    private_pg,
    private_redis,
    readyz,
)
from .nodes import Node
from .pg import PrivatePostgres
from .redis_server import PrivateRedis, unique_prefix

__all__ = ["private_pg", "private_redis"]  # fixtures, used by name


@pytest.mark.postgres
async def test_postgres_stopped_mid_run(private_pg: PrivatePostgres, tmp_path: Path) -> None:
    node = Node(tmp_path / "n", database_url=private_pg.url, jwt_secret=uuid.uuid4().hex * 2,
                builtin_delta_delay=0.3, db_timeout=1.0)
    await node.start()
    try:
        async with RunwireClient.connect(node.ws_url, node.token()) as c:
            await c.send_message(QUESTION)
            started = (await c.until(lambda f: f["type"] == "agent_started", timeout=20))[-1]
            private_pg.stop()
            body = await eventually_ready(node, 503)
            assert body["components"]["database"] == "down"
            # a new message is refused cleanly and the connection stays up
            sent = time.monotonic()
            await c.send("user_message", {"content": "hello?"}, request_id="during")
            err = (await c.until(lambda f: f["type"] == "error", timeout=20))[-1]
            refused_in = time.monotonic() - sent
            assert err["payload"]["code"] == "storage_unavailable"
            sent = time.monotonic()
            await c.send("ping")
            assert (await c.until(lambda f: f["type"] == "pong"))[-1]["type"] == "pong"
            pong_in = time.monotonic() - sent
            private_pg.start()
            restarted = time.monotonic()
            await eventually_ready(node, 200)
            ready_in = time.monotonic() - restarted
            terminal = (await c.until(lambda f: f["type"] in ("agent_completed", "agent_error")
                                      and f.get("run_id") == started["run_id"], timeout=60))[-1]
            ended_in = time.monotonic() - restarted
            # full recovery on the same connection: a new message is answered
            ack, frames = await c.ask("and now? 2+2", thread_id=started["thread_id"])
            assert ack["type"] == "message_ack", ack
            assert frames[-1]["type"] == "agent_completed", frames[-1]
            print(f"\nfigures: refused_in={refused_in:.2f}s pong_in={pong_in * 1000:.0f}ms "
                  f"ready_after_restart={ready_in:.2f}s run_ended_after_restart={ended_in:.2f}s "
                  f"({terminal['type']} {terminal['payload'].get('code')})")
        async with node.api() as http:
            log = (await http.get(f"/api/threads/{started['thread_id']}/events")).json()["items"]
            run = (await http.get(f"/api/runs/{started['run_id']}")).json()
            threads = (await http.get("/api/threads")).json()["items"]
        ends = [e for e in log if e["type"] in ("agent_completed", "agent_error")
                and e["run_id"] == started["run_id"]]
        assert [e["seq"] for e in ends] == [terminal["seq"]]  # exactly one, stored
        assert [e["seq"] for e in log] == list(range(1, len(log) + 1))
        assert run["status"] in ("completed", "failed")
        assert len(threads) == 1  # the refused message left nothing behind
    finally:
        node.kill()


@pytest.mark.postgres
async def test_postgres_frozen_pings_answered_messages_refused_then_recovery(
    private_pg: PrivatePostgres, tmp_path: Path,
) -> None:
    """A hung database (SIGSTOP: connections accepted, nothing answered) for 10 s."""
    node = Node(tmp_path / "n", database_url=private_pg.url, jwt_secret=uuid.uuid4().hex * 2,
                db_timeout=1.0, rate_limit_messages="600/minute")
    await node.start()
    try:
        async with RunwireClient.connect(node.ws_url, node.token()) as c, \
                RunwireClient.connect(node.ws_url, node.token("pinger")) as p:
            warm = await ask_timed(c)
            assert warm.result == "completed", warm
            stop = asyncio.Event()
            pinger = Pinger(p)
            pinging = asyncio.create_task(pinger.run(stop))
            outcomes: list[Outcome] = []
            private_pg.freeze()
            frozen_at = time.monotonic()
            try:
                while time.monotonic() - frozen_at < 10:
                    outcomes.append(await ask_timed(c, "6*7?", timeout=10,
                                                    thread_id=warm.thread_id))
                    await asyncio.sleep(0.25)  # ok-sleep: pacing, as a user would
                code, body = await readyz(node)
            finally:
                private_pg.thaw()
            thawed_at = time.monotonic()
            stop.set()
            await pinging
            assert code == 503 and body["components"]["database"] == "down", body
            # recovery: the same connection's next message is answered
            while True:
                after = await ask_timed(c, "2+2?", timeout=10, thread_id=warm.thread_id)
                if after.result == "completed":
                    break
                assert after.result == "error:storage_unavailable", after
                assert time.monotonic() - thawed_at < 20, "no recovery"
                await asyncio.sleep(0.2)  # ok-sleep: pacing retries, as a client would
            recovered_in = time.monotonic() - thawed_at
        lat = pinger.latencies
        figures = {"ping_p50_ms": round(percentile(lat, 0.5) * 1000, 1),
                   "ping_p99_ms": round(percentile(lat, 0.99) * 1000, 1),
                   "ping_max_ms": round(max(lat) * 1000, 1),
                   "messages": [(o.result, round(o.seconds, 2)) for o in outcomes],
                   "recovered_in_s": round(recovered_in, 2)}
        print(f"\nfigures: {figures}")
        assert max(lat) < 2.0, figures
        assert all(o.seconds < 10 for o in outcomes), figures
        assert {o.result for o in outcomes} <= {"completed", "error:storage_unavailable"}
        assert any(o.result == "error:storage_unavailable" for o in outcomes), figures
    finally:
        node.kill()


@pytest.mark.redis
@pytest.mark.postgres
async def test_redis_restarted_mid_stream(private_redis: PrivateRedis, tmp_path: Path) -> None:
    from .pg import fresh_database, pg_available

    if not await pg_available():
        missing_service("PostgreSQL is not reachable")
    async with fresh_database() as url:
        shared = {"database_url": url, "redis_url": private_redis.url,
                  "redis_prefix": unique_prefix(), "jwt_secret": uuid.uuid4().hex * 2,
                  "builtin_delta_delay": 0.2}
        one = await Node(tmp_path / "a", node_id="a", **shared).start()
        two = await Node(tmp_path / "b", node_id="b", **shared).start()
        try:
            async with RunwireClient.connect(one.ws_url, one.token()) as runner, \
                    RunwireClient.connect(two.ws_url, two.token()) as watcher:
                await asyncio.sleep(0.1)  # ok-sleep: Redis SUBSCRIBE acknowledged
                await runner.send_message(QUESTION)
                seen = await watcher.until(lambda f: f["type"] == "agent_started", timeout=20)
                thread_id = seen[-1]["thread_id"]
                private_redis.stop()
                body = await eventually_ready(two, 200)
                await eventually_ready_bus(two, "degraded")
                assert body["components"]["database"] == "ok"
                private_redis.start()
                rest = await watcher.until(lambda f: f["type"] == "agent_completed", timeout=60)
                await eventually_ready_bus(two, "ok")
            got = [f["seq"] for f in seen + rest if f.get("thread_id") == thread_id and "seq" in f]
            async with two.api() as http:
                log = (await http.get(f"/api/threads/{thread_id}/events")).json()["items"]
            assert got == [e["seq"] for e in log]  # in order, no gap, no duplicate
        finally:
            one.kill()
            two.kill()


async def eventually_ready_bus(node: Node, state: str, timeout: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while (await readyz(node))[1]["components"]["bus"] != state:
        assert asyncio.get_running_loop().time() < deadline, f"bus never {state}"
        await asyncio.sleep(0.1)  # ok-sleep: polling another process's health



@pytest.mark.postgres
@pytest.mark.redis
async def test_recent_history_is_served_from_the_redis_cache_while_postgres_is_down(
    private_pg: PrivatePostgres, tmp_path: Path,
) -> None:
    from .redis_server import REDIS_URL, redis_available

    if not redis_available():
        missing_service(f"Redis is not reachable at {REDIS_URL}")
    node = Node(tmp_path / "n", database_url=private_pg.url, redis_url=REDIS_URL,
                redis_prefix=unique_prefix(), jwt_secret=uuid.uuid4().hex * 2,
                builtin_delta_delay=0.0, db_timeout=1.0)
    await node.start()
    try:
        async with RunwireClient.connect(node.ws_url, node.token()) as c:
            ack, _ = await c.ask(QUESTION)
        thread_id = ack["payload"]["thread_id"]
        path = f"/api/threads/{thread_id}/messages"
        async with node.api() as http:
            fresh = await http.get(path)
            assert fresh.status_code == 200 and "x-runwire-source" not in fresh.headers
            private_pg.stop()
            await eventually_ready(node, 503)
            cached = await http.get(path)
            assert cached.status_code == 200, cached.text
            assert cached.headers["x-runwire-source"] == "cache"
            assert cached.json()["items"] == fresh.json()["items"]
            assert (await http.get("/api/threads")).status_code == 503  # not cached: honest
        async with node.api("mallory") as other:
            assert (await other.get(path)).status_code == 503  # the cache checks the owner
    finally:
        node.kill()
