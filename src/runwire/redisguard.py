"""One timeout and one circuit breaker for every Redis call on a hot path.

Redis is optional for correctness (the database holds all history), so a Redis call must
never hold up a client: the rate limiter (every inbound frame), presence (every connect),
the bus (every event of every run, under the run's emit lock) and the history cache all
go through one :class:`RedisGuard`. A call that fails or takes longer than ``timeout``
counts against the breaker; once it opens, calls fail at once with
:class:`RedisUnavailable` and each caller falls back to its per-node behaviour (SPEC 5
"Degraded modes"). No caller is ever the trial call: the guard's own probe pings Redis
once per cool-down while the breaker is open, and its first answer closes it.

A hung Redis (SIGSTOP, a black-holed host) accepts connections and never answers: the
socket timeouts on the clients and the ``asyncio.timeout`` here bound it; a stopped one
refuses at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from runwire.breaker import BreakerState, CircuitBreaker, CircuitOpen

log = logging.getLogger(__name__)

T = TypeVar("T")

THRESHOLD = 2  # consecutive failures (or timeouts) that open the breaker
COOLDOWN = 1.0  # seconds between the probe's pings while the breaker is open


class RedisUnavailable(Exception):
    """The call was not made (breaker open) or failed/timed out; use the fallback."""


def client_options(timeout: float) -> dict[str, Any]:
    """redis-py options for a hot-path client: bounded connect and reads, and no
    client-side retries (a retry would multiply the wait; the breaker decides)."""
    return {"socket_timeout": timeout, "socket_connect_timeout": timeout,
            "retry": Retry(NoBackoff(), 0)}


def redis_client(url: str, timeout: float) -> aioredis.Redis:
    client: aioredis.Redis = aioredis.Redis.from_url(
        url, decode_responses=True, **client_options(timeout))
    return client


class RedisGuard:
    """Timeout + breaker around Redis calls, shared by every Redis user of one node.

    While the breaker is open (or half open) every call fails at once: no client frame
    ever waits on a trial call. Recovery is detected by the guard's own probe, a task
    that pings Redis once per ``cooldown`` while the breaker is open and closes it on the
    first answer.

    Args:
        url: the Redis URL (the probe's own connection).
        timeout: seconds one call may take (also set as the clients' socket timeouts).
        on_change: called with ("redis", state) when the breaker changes (metrics).
    """

    def __init__(self, url: str, *, timeout: float = 0.5, threshold: int = THRESHOLD,
                 cooldown: float = COOLDOWN,
                 on_change: Callable[[str, BreakerState], None] | None = None) -> None:
        self.timeout = timeout
        self._notify = on_change
        self.breaker = CircuitBreaker("redis", threshold=threshold, cooldown=cooldown,
                                      on_change=self._changed)
        self._probe_client = redis_client(url, timeout)
        self._probe: asyncio.Task[None] | None = None

    @property
    def available(self) -> bool:
        """False while the breaker is open or half open (callers are on their fallback)."""
        return self.breaker.state == "closed"

    def _changed(self, name: str, state: BreakerState) -> None:
        if state == "open":
            if self._probe is None or self._probe.done():
                log.warning("redis unavailable: per-node fallbacks until it answers again")
                self._probe = asyncio.get_running_loop().create_task(
                    self._probe_until_closed(), name="redis-probe")
        elif state == "closed":
            log.info("redis answers again: breaker closed")
        if self._notify is not None:
            self._notify(name, state)

    async def _probe_until_closed(self) -> None:
        """Ping once per cool-down until Redis answers within the timeout."""
        while self.breaker.state != "closed":
            await asyncio.sleep(self.breaker.cooldown)
            try:
                self.breaker.check()  # open → half open once the cool-down has passed
            except CircuitOpen:
                continue
            try:
                async with asyncio.timeout(self.timeout):
                    await self._probe_client.ping()
            except (RedisError, OSError, TimeoutError):
                self.breaker.failure()
            else:
                self.breaker.success()

    async def call(self, op: Callable[[], Awaitable[T]]) -> T:
        """Run one Redis call within the timeout.

        Raises:
            RedisUnavailable: the breaker is not closed (nothing was sent), or the call
                failed or timed out (counted towards opening it).
        """
        if self.breaker.state != "closed":
            raise RedisUnavailable("redis is unavailable (breaker open)")
        task = asyncio.current_task()
        cancels = task.cancelling() if task is not None else 0
        try:
            async with asyncio.timeout(self.timeout):
                result = await op()
        except (RedisError, OSError, TimeoutError) as exc:
            self.breaker.failure()
            raise RedisUnavailable(f"redis: {type(exc).__name__}") from exc
        self.breaker.success()
        if task is not None and task.cancelling() > cancels:
            # redis-py awaits through asyncio.wait_for, which on Python 3.11 can swallow a
            # cancel that lands as the inner call completes: deliver it, or a stopped run
            # or a closing listener would carry on
            raise asyncio.CancelledError()
        return result

    async def aclose(self) -> None:
        if self._probe is not None:
            await cancel_and_wait(self._probe)
        await self._probe_client.aclose()


async def cancel_and_wait(task: asyncio.Task[None]) -> None:
    """Cancel a task that talks to Redis and wait for it to end. The cancel is repeated:
    redis-py awaits through asyncio.wait_for, which on Python 3.11 can swallow one."""
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=0.5)
