"""Redis bus: cross-node fan-out over Redis pub/sub (one channel per user).

Each node delivers to its own subscribers at once (so a node keeps serving its own
connections when Redis is down) and publishes to ``<prefix>u:<user_id>`` for the others;
a node subscribes to a user's channel while it holds a connection of that user and
ignores messages it published itself. An envelope is published once per node-set, never
once per connection. Pub/sub is not durable: after Redis comes back the node calls
``on_reconnect`` so connections catch up from the event log (the database stays the only
history).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from runwire.bus.base import BusHealth, Subscriber
from runwire.bus.memory import InMemoryBus
from runwire.protocol.envelope import Envelope

log = logging.getLogger(__name__)

RECONNECT_MAX = 5.0


def encode_message(origin: str, env: Envelope) -> str:
    header = json.dumps([origin, env.user_id, env.type, env.thread_id, env.seq, env.run_id,
                         time.time()])
    return header + "\n" + env.text


def decode_message(data: str) -> tuple[str, Envelope, float]:
    """(origin node, envelope, wall time it was published)."""
    header, _, text = data.partition("\n")
    origin, user_id, type_, thread_id, seq, run_id, sent = json.loads(header)
    return origin, Envelope(user_id=user_id, type=type_, text=text, thread_id=thread_id,
                            seq=seq, run_id=run_id), float(sent)


class RedisBus:
    """The :class:`~runwire.bus.base.Bus` over Redis pub/sub.

    Args:
        url: ``redis://host:port/db``.
        node_id: this node (messages it published are not delivered twice).
        prefix: key/channel prefix (several deployments can share one Redis).
        on_reconnect: awaited after the subscription is re-established following an
            outage, so connections can repair what pub/sub lost.
    """

    def __init__(self, url: str, *, node_id: str, prefix: str = "runwire:",
                 on_reconnect: Callable[[], Awaitable[None]] | None = None,
                 timeout: float = 2.0) -> None:
        self._url = url
        self._node = node_id
        self._prefix = prefix
        self._timeout = timeout
        self.on_reconnect = on_reconnect
        self._local = InMemoryBus()
        self.on_control: Callable[[str], None] | None = None
        self.on_lag: Callable[[float], None] | None = None  # metrics: cross-node delivery lag
        self._redis: aioredis.Redis = aioredis.Redis.from_url(
            url, decode_responses=True, socket_timeout=timeout, socket_connect_timeout=timeout,
            health_check_interval=10)
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        self._listener: asyncio.Task[None] | None = None
        self._healthy = False
        self._lock = asyncio.Lock()  # serialises (un)subscribe with reconnects

    @property
    def client(self) -> aioredis.Redis:
        return self._redis

    def channel(self, user_id: str) -> str:
        return f"{self._prefix}u:{user_id}"

    @property
    def control_channel(self) -> str:
        return f"{self._prefix}ctl"

    async def start(self) -> None:
        """Connect and start listening; does not fail if Redis is down (degraded)."""
        self._listener = asyncio.create_task(self._listen(), name="redis-bus-listener")

    async def publish(self, envelope: Envelope) -> None:
        self._local.deliver(envelope)
        try:
            async with asyncio.timeout(self._timeout):
                await self._redis.publish(self.channel(envelope.user_id),
                                          encode_message(self._node, envelope))
        except (RedisError, OSError, TimeoutError) as exc:
            self._healthy = False
            log.warning("redis publish failed (%s); other nodes repair from the log",
                        type(exc).__name__)

    async def publish_control(self, message: str) -> None:
        if self.on_control is not None:
            self.on_control(message)
        try:
            async with asyncio.timeout(self._timeout):
                await self._redis.publish(self.control_channel, f"{self._node}\n{message}")
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("redis control publish failed: %s", type(exc).__name__)

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
        try:
            async with self._lock, asyncio.timeout(self._timeout):
                await op(channel)
        except (RedisError, OSError, TimeoutError) as exc:
            self._healthy = False  # the listener re-subscribes everything on reconnect
            log.warning("redis (un)subscribe failed: %s", type(exc).__name__)

    async def _listen(self) -> None:
        delay = 0.1
        first = True
        while True:
            try:
                async with self._lock:
                    with contextlib.suppress(Exception):
                        await self._pubsub.aclose()  # type: ignore[no-untyped-call]
                    self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                    channels = [self.control_channel,
                                *(self.channel(u) for u in self._local.users())]
                    await self._pubsub.subscribe(*channels)
                self._healthy = True
                delay = 0.1
                if not first and self.on_reconnect is not None:
                    await self.on_reconnect()
                first = False
                while True:
                    message = await self._pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        if message.get("channel") == self.control_channel:
                            self._control(message["data"])
                        else:
                            self._dispatch(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # connection lost: degrade, back off, reconnect
                if self._healthy or first:
                    log.warning("redis bus lost (%s); serving local connections only",
                                type(exc).__name__)
                self._healthy = False
                first = False
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX)

    def _dispatch(self, data: str) -> None:
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
        return "ok" if self._healthy else "degraded"

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(self._timeout):
                return bool(await self._redis.ping())
        except (RedisError, OSError, TimeoutError):
            return False

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        with contextlib.suppress(Exception):
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        with contextlib.suppress(Exception):
            await self._redis.aclose()
        await self._local.aclose()
