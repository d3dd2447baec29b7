"""The Redis guard (timeout + breaker + probe) and the rate limiter's per-node fallback,
against a private redis-server that the tests freeze with SIGSTOP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from limits.aio.storage import RedisStorage

from runwire.bus.redis import RedisBus
from runwire.errors import ConfigError
from runwire.protocol.envelope import Envelope
from runwire.ratelimit import RateLimiter
from runwire.redisguard import RedisGuard, RedisUnavailable, client_options, redis_client
from runwire.settings import load_settings

from .faults import private_redis
from .redis_server import PrivateRedis, unique_prefix

__all__ = ["private_redis"]  # a fixture, used by name

TIMEOUT = 0.3


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.01)  # ok-sleep: polling a condition with a deadline


async def timed(call: Callable[[], object]) -> tuple[float, object]:
    started = time.monotonic()
    try:
        result = await call()  # type: ignore[misc]
    except RedisUnavailable as exc:
        result = exc
    return time.monotonic() - started, result


@pytest.mark.redis
async def test_a_hung_redis_costs_two_timeouts_then_nothing_until_it_answers_again(
        private_redis: PrivateRedis) -> None:
    states: list[str] = []
    guard = RedisGuard(private_redis.url, timeout=TIMEOUT, cooldown=0.2,
                       on_change=lambda _name, state: states.append(state))
    client = redis_client(private_redis.url, TIMEOUT)
    try:
        assert await guard.call(client.ping) is True
        private_redis.freeze()
        slow = [await timed(lambda: guard.call(client.ping)) for _ in range(2)]
        assert all(isinstance(r, RedisUnavailable) for _, r in slow)
        assert all(TIMEOUT * 0.9 < s < TIMEOUT + 0.5 for s, _ in slow), slow
        assert states == ["open"] and not guard.available
        fast = [await timed(lambda: guard.call(client.ping)) for _ in range(100)]
        assert max(s for s, _ in fast) < 0.01  # open: nothing is sent, nothing waits
        await until(lambda: states.count("open") >= 2)  # the probe tried, and failed
        assert not guard.available and "half_open" in states
        private_redis.thaw()
        thawed = time.monotonic()
        await until(lambda: guard.available)
        assert time.monotonic() - thawed < 0.2 + TIMEOUT + 0.5
        assert states[-1] == "closed"
        assert await guard.call(client.ping) is True
    finally:
        private_redis.thaw()
        await client.aclose()
        await guard.aclose()


@pytest.mark.redis
async def test_rate_limits_fall_back_to_per_node_counts_when_redis_hangs(
        private_redis: PrivateRedis) -> None:
    guard = RedisGuard(private_redis.url, timeout=TIMEOUT)
    storage = RedisStorage(f"async+{private_redis.url}", implementation="redispy",
                           key_prefix=f"{unique_prefix()}limits", **client_options(TIMEOUT))
    node_a = RateLimiter({"frame": "3/minute"}, storage, guard)
    try:
        assert [(await node_a.hit("alice", "frame")).allowed for _ in range(4)] == \
            [True, True, True, False]  # shared counts
        private_redis.freeze()
        took = []
        decisions = []
        for _ in range(5):
            seconds, decision = await timed(lambda: node_a.hit("bob", "frame"))
            took.append(seconds)
            decisions.append(getattr(decision, "allowed", None))
        assert decisions == [True, True, True, False, False]  # still limited, per node
        assert max(took) < TIMEOUT + 0.5 and sorted(took)[2] < 0.05, took
    finally:
        private_redis.thaw()
        await node_a.aclose()
        await guard.aclose()


@pytest.mark.redis
async def test_publish_to_a_hung_redis_delivers_locally_and_stops_waiting(
        private_redis: PrivateRedis) -> None:
    """publish runs under a run's emit lock: it may wait at most the timeout, twice, and
    then not at all; local subscribers get every envelope either way."""
    guard = RedisGuard(private_redis.url, timeout=TIMEOUT)
    bus = RedisBus(private_redis.url, node_id="a", prefix=unique_prefix(), guard=guard)
    await bus.start()
    got: list[Envelope] = []
    try:
        await until(lambda: bus.health() == "ok")
        async with bus.subscribe("alice", got.append):
            private_redis.freeze()
            took = []
            for seq in range(1, 51):
                started = time.monotonic()
                await bus.publish(Envelope(user_id="alice", type="agent_thinking",
                                           text="{}", thread_id="t", seq=seq, run_id="r"))
                took.append(time.monotonic() - started)
            assert [e.seq for e in got] == list(range(1, 51))
            assert sum(t > TIMEOUT * 0.9 for t in took) <= 2, took
            assert max(took) < TIMEOUT + 0.5 and sorted(took)[-3] < 0.01, took
            assert bus.health() == "degraded"
    finally:
        private_redis.thaw()
        await bus.aclose()
        await guard.aclose()


def test_redis_timeout_is_validated() -> None:
    assert load_settings(redis_timeout=0.25).redis_timeout == 0.25
    for bad in (0, 5, "soon"):
        with pytest.raises(ConfigError, match="RUNWIRE_REDIS_TIMEOUT"):
            load_settings(redis_timeout=bad)
