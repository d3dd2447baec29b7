"""Per-user connection counts across nodes (Redis), exact on one node without it.

Each connection holds a slot in a Redis sorted set per user, scored by when the slot
expires; nodes refresh their slots periodically, so a dead node's connections age out
within ``ttl``. Every call goes through the node's
:class:`~runwire.redisguard.RedisGuard`: a connect waits at most one Redis timeout, and
not at all while the breaker is open. When Redis can't answer the node falls back to its
own count (the registry), as SPEC 5 asks: limits then hold per node.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable

import redis.asyncio as aioredis

from runwire.redisguard import RedisGuard, RedisUnavailable, redis_client

log = logging.getLogger(__name__)

_ACQUIRE = """
local key, now, ttl, limit, member = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]),
  tonumber(ARGV[3]), ARGV[4]
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
if redis.call('ZCARD', key) >= limit then return 0 end
redis.call('ZADD', key, now + ttl, member)
redis.call('PEXPIRE', key, math.ceil((ttl + 1) * 1000))
return 1
"""


class RedisPresence:
    """Connection slots per user shared by every node."""

    def __init__(self, url: str, *, prefix: str, guard: RedisGuard, ttl: float = 30.0) -> None:
        self._redis = redis_client(url, guard.timeout)
        self._guard = guard
        self._prefix = prefix
        self.ttl = ttl
        self._acquire = self._redis.register_script(_ACQUIRE)

    @property
    def client(self) -> aioredis.Redis:
        return self._redis

    def _key(self, user_id: str) -> str:
        return f"{self._prefix}conns:{user_id}"

    async def acquire(self, user_id: str, connection_id: str, limit: int) -> bool | None:
        """Take a slot; True/False, or None when Redis can't answer (use local counts)."""
        try:
            got = await self._guard.call(lambda: self._acquire(
                keys=[self._key(user_id)], args=[time.time(), self.ttl, limit, connection_id]))
        except RedisUnavailable:
            log.debug("presence unavailable: per-node connection limit")
            return None
        return bool(got)

    async def release(self, user_id: str, connection_id: str) -> None:
        with contextlib.suppress(RedisUnavailable):  # else the slot expires within ttl
            await self._guard.call(lambda: self._redis.zrem(self._key(user_id), connection_id))

    async def refresh(self, slots: Iterable[tuple[str, str]]) -> None:
        """Extend (or, after Redis lost them, recreate) the slots of this node's open
        connections, including those admitted on per-node counts while Redis was away."""
        expires = time.time() + self.ttl
        async with self._redis.pipeline(transaction=False) as pipe:
            for user_id, connection_id in slots:
                pipe.zadd(self._key(user_id), {connection_id: expires})
            try:
                await self._guard.call(pipe.execute)
            except RedisUnavailable:
                log.warning("could not refresh connection slots; they expire in %.0f s "
                            "unless Redis answers again", self.ttl)

    async def aclose(self) -> None:
        await self._redis.aclose()
