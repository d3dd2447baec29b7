"""Redis bus: cross-node fan-out over Redis pub/sub (one channel per user).

Each node delivers to its own subscribers at once (so a node keeps serving its own
connections when Redis is down) and publishes to ``<prefix>u:<user_id>`` for the others;
a node subscribes to a user's channel while it holds a connection of that user and
ignores messages it published itself. An envelope is published once per node-set, never
once per connection. Pub/sub is not durable: after Redis comes back the node calls
``on_reconnect`` so connections catch up from the event log (the database stays the only
history).

Publishing runs under a run's emit lock, so it goes through the node's
:class:`~runwire.redisguard.RedisGuard`: at most one short timeout per call, never a
retry, and no wait at all while the Redis breaker is open (the publish is skipped: local
subscribers already have the envelope, other nodes repair from the log). The listener
pings Redis whenever its subscription is idle, so a hung Redis (which keeps the pub/sub
socket open and silent) is noticed like a dropped one. While Redis is away the listener
retries about once a second and, each time, has connections catch up from the log, so
events of runs executing on other nodes still arrive (late, but in order); once it is
back it resubscribes and catches up one last time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import redis.asyncio as aioredis

from runwire.bus.base import BusHealth, Subscriber
from runwire.bus.memory import InMemoryBus
from runwire.protocol.envelope import Envelope
from runwire.redisguard import RedisGuard, RedisUnavailable, cancel_and_wait, redis_client

log = logging.getLogger(__name__)

RECONNECT_MAX = 1.0  # seconds between reconnect (and log repair) attempts, at most
IDLE_PING = 1.0  # seconds without a message before the listener checks Redis answers
PIPELINE = 500  # envelopes published in one round trip, at most


def encode_message(origin: str, env: Envelope) -> str:
    header = json.dumps([origin, env.user_id, env.type, env.thread_id, env.seq, env.run_id,
                         time.time()])
    return header + "\n" + env.text


def origin_prefix(origin: str) -> str:
    """How every message `origin` encodes begins (a node drops its own echoes by it,
    without decoding them)."""
    return json.dumps([origin, ""])[:-3]


def decode_message(data: str) -> tuple[str, Envelope, float]:
    """(origin node, envelope, wall time it was published)."""
    header, _, text = data.partition("\n")
    origin, user_id, type_, thread_id, seq, run_id, sent = json.loads(header)
    return origin, Envelope(user_id=user_id, type=type_, text=text, thread_id=thread_id,
                            seq=seq, run_id=run_id), float(sent)


class _Resubscribe(Exception):
    """A (un)subscribe was not made: rebuild the subscription (and catch up)."""


class RedisBus:
    """The :class:`~runwire.bus.base.Bus` over Redis pub/sub.

    Args:
        url: ``redis://host:port/db``.
        node_id: this node (messages it published are not delivered twice).
        prefix: key/channel prefix (several deployments can share one Redis).
        on_reconnect: awaited after the subscription is re-established following an
            outage, and after every failed reconnect attempt while it lasts (at least
            once a second or so), so connections repair from the log what pub/sub lost
            or can't carry (events of runs executing on other nodes).
        guard: the node's Redis timeout + breaker (one is made from `timeout` if None).
    """

    def __init__(self, url: str, *, node_id: str, prefix: str = "runwire:",
                 on_reconnect: Callable[[], Awaitable[None]] | None = None,
                 guard: RedisGuard | None = None, timeout: float = 0.5) -> None:
        self._own_guard = guard is None
        self._guard = guard if guard is not None else RedisGuard(url, timeout=timeout)
        self._node = node_id
        self._echo = origin_prefix(node_id)
        self._prefix = prefix
        self.on_reconnect = on_reconnect
        self._local = InMemoryBus()
        self.on_control: Callable[[str], None] | None = None
        self.on_lag: Callable[[float], None] | None = None  # metrics: cross-node delivery lag
        self._redis = redis_client(url, self._guard.timeout)
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        self._listener: asyncio.Task[None] | None = None
        self._healthy = False
        self._stale = False  # a (un)subscribe was skipped: the listener resubscribes
        self._lock = asyncio.Lock()  # serialises (un)subscribe with reconnects

    @property
    def client(self) -> aioredis.Redis:
        return self._redis

    @property
    def guard(self) -> RedisGuard:
        return self._guard

    def channel(self, user_id: str) -> str:
        return f"{self._prefix}u:{user_id}"

    @property
    def control_channel(self) -> str:
        return f"{self._prefix}ctl"

    async def start(self) -> None:
        """Connect and start listening; does not fail if Redis is down (degraded)."""
        self._listener = asyncio.create_task(self._listen(), name="redis-bus-listener")

    async def publish(self, envelope: Envelope) -> None:
        await self.publish_many((envelope,))

    async def publish_many(self, envelopes: Sequence[Envelope]) -> None:
        """Deliver locally at once, then to other nodes if Redis answers within the
        guard's timeout (one pipeline per `PIPELINE` envelopes: a batch of the node's
        writer is one round trip); never raises for Redis trouble and never retries."""
        for envelope in envelopes:
            self._local.deliver(envelope)
        for start in range(0, len(envelopes), PIPELINE):
            pipe = self._redis.pipeline(transaction=False)
            for envelope in envelopes[start:start + PIPELINE]:
                pipe.publish(self.channel(envelope.user_id),
                             encode_message(self._node, envelope))
            try:
                await self._guard.call(pipe.execute)
            except RedisUnavailable:
                log.debug("publish skipped (redis unavailable); other nodes repair from the log")

    async def publish_control(self, message: str) -> None:
        if self.on_control is not None:
            self.on_control(message)
        data = f"{self._node}\n{message}"
        try:
            await self._guard.call(lambda: self._redis.publish(self.control_channel, data))
        except RedisUnavailable:
            log.warning("control message not sent to other nodes (redis unavailable)")

    @contextlib.asynccontextmanager
    async def subscribe(self, user_id: str, callback: Subscriber) -> AsyncIterator[None]:
        first = not self._local.has_subscribers(user_id)
        try:
            async with self._local.subscribe(user_id, callback):
                if first:
                    await self._remote(self._pubsub.subscribe, self.channel(user_id))
                yield
        finally:
            if not self._local.has_subscribers(user_id):
                await self._remote(self._pubsub.unsubscribe, self.channel(user_id))

    async def _remote(self, op: Callable[[str], Awaitable[object]], channel: str) -> None:
        """(Un)subscribe within one guard timeout (the lock wait included); if that is
        not possible the listener rebuilds the whole subscription when Redis answers."""
        if not self._guard.available or not self._healthy:
            self._stale = True
            return
        try:
            async with asyncio.timeout(self._guard.timeout), self._lock:
                await op(channel)
        except Exception as exc:  # any failure: resubscribe everything later
            self._stale = True
            log.debug("redis (un)subscribe deferred: %s", type(exc).__name__)

    async def _connect(self) -> None:
        """A fresh pub/sub connection subscribed to every channel this node needs."""
        async with asyncio.timeout(self._guard.timeout * 4), self._lock:
            old, self._pubsub = self._pubsub, self._redis.pubsub(ignore_subscribe_messages=True)
            with contextlib.suppress(Exception):
                await old.aclose()  # type: ignore[no-untyped-call]
            self._stale = False
            await self._pubsub.subscribe(self.control_channel,
                                         *(self.channel(u) for u in self._local.users()))
        await self._guard.call(self._redis.ping)  # the server answers (not just accepts)

    async def _listen(self) -> None:
        delay = 0.1
        first = True
        while True:
            try:
                await self._connect()
                self._healthy = True
                delay = 0.1
                if not first:
                    log.info("redis bus back; catching up connections from the log")
                    await self._repair()
                first = False
                await self._receive()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # lost, hung or stale: degrade, back off, reconnect
                if isinstance(exc, _Resubscribe):
                    log.info("redis bus: resubscribing (a subscription change was deferred)")
                elif self._healthy or first:
                    log.warning("redis bus lost (%s); serving local connections only",
                                type(exc).__name__)
                self._healthy = False
                if not first:
                    # runs executing on other nodes reach this node's connections only
                    # through the log while pub/sub is away: repair on every attempt
                    await self._repair()
                first = False
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX)

    async def _repair(self) -> None:
        if self.on_reconnect is None:
            return
        try:
            await self.on_reconnect()
        except Exception:
            log.exception("catching up connections from the log failed")

    async def _receive(self) -> None:
        """Dispatch messages until the subscription is lost, hung or stale."""
        while True:
            message = await self._pubsub.get_message(timeout=IDLE_PING)
            if message is None:
                # idle: a hung Redis keeps the socket open and silent; ask it directly
                await self._guard.call(self._redis.ping)
            elif message.get("type") == "message":
                if message.get("channel") == self.control_channel:
                    self._control(message["data"])
                else:
                    self._dispatch(message["data"])
            if self._stale:
                raise _Resubscribe()

    def _dispatch(self, data: str) -> None:
        if data.startswith(self._echo):
            return  # published by this node (its subscribers have it): not decoded
        try:
            origin, envelope, sent = decode_message(data)
        except (ValueError, TypeError):
            log.warning("malformed bus message dropped")
            return
        if origin != self._node:
            if self.on_lag is not None:
                self.on_lag(max(0.0, time.time() - sent))
            self._local.deliver(envelope)

    def _control(self, data: str) -> None:
        origin, _, message = data.partition("\n")
        if origin != self._node and self.on_control is not None:
            self.on_control(message)

    def subscriber_count(self) -> int:
        return self._local.subscriber_count()

    def health(self) -> BusHealth:
        """`degraded` while the subscription is down or the Redis breaker is not closed
        (this node then serves only its own connections)."""
        return "ok" if self._healthy and self._guard.available else "degraded"

    async def aclose(self) -> None:
        if self._listener is not None:
            await cancel_and_wait(self._listener)
        with contextlib.suppress(Exception):
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        with contextlib.suppress(Exception):
            await self._redis.aclose()
        if self._own_guard:
            await self._guard.aclose()
        await self._local.aclose()
