"""The bus contract: the in-memory and the Redis backend pass the same tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from runwire.bus.base import Bus
from runwire.bus.memory import InMemoryBus
from runwire.bus.redis import RedisBus, encode_message, origin_prefix
from runwire.protocol.envelope import Envelope

from .conftest import missing_service
from .redis_server import REDIS_URL, PrivateRedis, redis_available, unique_prefix

BusFactory = Callable[[str], Any]


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def make_bus(request: pytest.FixtureRequest) -> AsyncIterator[BusFactory]:
    """Builds buses that share one backend: "nodes" of one deployment."""
    made: list[Any] = []
    if request.param == "memory":
        shared = InMemoryBus()

        def memory(_node: str) -> InMemoryBus:
            return shared

        yield memory
        return
    if not redis_available():
        missing_service(f"Redis is not reachable at {REDIS_URL}")
    prefix = unique_prefix()

    def redis_node(node: str) -> RedisBus:
        bus = RedisBus(REDIS_URL, node_id=node, prefix=prefix)
        made.append(bus)
        return bus

    yield redis_node
    for bus in made:
        await bus.aclose()


async def started(bus: Any) -> Bus:
    if isinstance(bus, RedisBus):
        await bus.start()
        await until(lambda: bus.health() == "ok")
    return bus  # type: ignore[no-any-return]


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.005)  # ok-sleep: polling a condition with a deadline


def env(user: str, seq: int, thread: str = "t1") -> Envelope:
    return Envelope(user_id=user, type="agent_thinking", text=f'{{"seq":{seq}}}',
                    thread_id=thread, seq=seq, run_id="r")


async def subscribed_everywhere(bus: Bus, user: str, nodes: int) -> None:
    """Wait until `nodes` nodes' subscriptions to `user` are live in Redis."""
    if isinstance(bus, RedisBus):
        async def count() -> int:
            found = await bus.client.pubsub_numsub(bus.channel(user))
            return int(found[0][1])

        deadline = asyncio.get_running_loop().time() + 5.0
        while await count() < nodes:
            assert asyncio.get_running_loop().time() < deadline, "subscription never live"
            await asyncio.sleep(0.005)  # ok-sleep: polling a condition with a deadline


async def test_subscribers_get_their_users_envelopes_in_order_once(make_bus: BusFactory) -> None:
    a = await started(make_bus("node-a"))
    b = await started(make_bus("node-b"))
    got_a: list[Envelope] = []
    got_b: list[Envelope] = []
    other: list[Envelope] = []
    async with a.subscribe("alice", got_a.append), b.subscribe("alice", got_b.append), \
            b.subscribe("bob", other.append):
        await subscribed_everywhere(a, "alice", 2)
        await subscribed_everywhere(a, "bob", 1)
        for seq in range(1, 51):
            await a.publish(env("alice", seq))
        await until(lambda: len(got_a) == 50 and len(got_b) == 50)
    assert [e.seq for e in got_a] == list(range(1, 51))
    assert [e.seq for e in got_b] == list(range(1, 51))
    assert got_b[0].text == '{"seq":1}' and got_b[0].thread_id == "t1"
    assert other == []


async def test_a_batch_reaches_every_node_complete_and_in_order(make_bus: BusFactory) -> None:
    """What the node's writer publishes after a commit: many threads' envelopes at once,
    more than one Redis pipeline's worth."""
    a = await started(make_bus("node-a"))
    b = await started(make_bus("node-b"))
    got_a: list[Envelope] = []
    got_b: list[Envelope] = []
    bobs: list[Envelope] = []
    batch = [env("alice" if i % 3 else "bob", i, thread=f"t{i % 7}") for i in range(1, 1201)]
    async with a.subscribe("alice", got_a.append), b.subscribe("alice", got_b.append), \
            b.subscribe("bob", bobs.append):
        await subscribed_everywhere(a, "alice", 2)
        await subscribed_everywhere(a, "bob", 1)
        await a.publish_many(batch)
        alices = [e.seq for e in batch if e.user_id == "alice"]
        await until(lambda: len(got_b) == len(alices) and len(bobs) == len(batch) - len(alices))
    assert [e.seq for e in got_a] == alices  # locally at once
    assert [e.seq for e in got_b] == alices
    assert [e.seq for e in bobs] == [e.seq for e in batch if e.user_id == "bob"]
    assert [(e.thread_id, e.text) for e in got_b] == [
        (e.thread_id, e.text) for e in batch if e.user_id == "alice"]


def test_a_node_recognises_only_its_own_messages_by_their_prefix() -> None:
    """Worker ids extend one another (``…-w1``, ``…-w10``): another node's message must
    never be taken for an echo and dropped."""
    message = env("alice", 1)
    for own, other in [("n-w1", "n-w10"), ("n-w10", "n-w1"), ('odd"id', "odd")]:
        assert encode_message(own, message).startswith(origin_prefix(own))
        assert not encode_message(other, message).startswith(origin_prefix(own))


async def test_unsubscribed_callbacks_get_nothing_more(make_bus: BusFactory) -> None:
    bus = await started(make_bus("node-a"))
    got: list[Envelope] = []
    async with bus.subscribe("alice", got.append):
        await bus.publish(env("alice", 1))
        await until(lambda: len(got) == 1)
    await bus.publish(env("alice", 2))
    await bus.publish(env("carol", 1))
    assert [e.seq for e in got] == [1]
    assert bus.subscriber_count() == 0  # type: ignore[attr-defined]


@pytest.mark.redis
async def test_redis_outage_degrades_to_local_delivery_and_recovers() -> None:
    try:
        server = PrivateRedis().start()
    except FileNotFoundError:
        missing_service("redis-server is not installed")
        return
    reconnected = asyncio.Event()

    async def on_reconnect() -> None:
        reconnected.set()

    a = RedisBus(server.url, node_id="a", prefix="t:", timeout=0.5)
    b = RedisBus(server.url, node_id="b", prefix="t:", timeout=0.5, on_reconnect=on_reconnect)
    try:
        await started(a)
        await started(b)
        local: list[Envelope] = []
        remote: list[Envelope] = []
        async with a.subscribe("alice", local.append), b.subscribe("alice", remote.append):
            await asyncio.sleep(0.05)  # ok-sleep: SUBSCRIBE acknowledged by the server
            await a.publish(env("alice", 1))
            await until(lambda: len(remote) == 1)
            server.stop()
            await a.publish(env("alice", 2))  # Redis is down: local delivery still works
            assert [e.seq for e in local] == [1, 2]
            await until(lambda: a.health() == "degraded" and b.health() == "degraded")
            await asyncio.wait_for(reconnected.wait(), 15)  # repairs while it is down too
            server.start()
            await until(lambda: a.health() == "ok" and b.health() == "ok", timeout=15)
            await asyncio.sleep(0.05)  # ok-sleep: SUBSCRIBE acknowledged after the restart
            await a.publish(env("alice", 3))
            await until(lambda: [e.seq for e in remote] == [1, 3])
    finally:
        await a.aclose()
        await b.aclose()
        server.stop()
