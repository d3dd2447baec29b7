"""Per-user connection counts across nodes (Redis), exact on one node without it.

Each connection holds a slot in a Redis sorted set per user, scored by when the slot
expires; nodes refresh their slots periodically, so a dead node's connections age out
within ``ttl``. When Redis is unreachable the node falls back to its own count (the
registry), as SPEC 5 asks: limits then hold per node.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

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

    def __init__(self, url: str, *, prefix: str, ttl: float = 30.0, timeout: float = 1.0) -> None:
        self._redis: aioredis.Redis = aioredis.Redis.from_url(
            url, decode_responses=True, socket_timeout=timeout, socket_connect_timeout=timeout)
        self._prefix = prefix
        self.ttl = ttl
        self._timeout = timeout
        self._acquire = self._redis.register_script(_ACQUIRE)

    @property
    def client(self) -> aioredis.Redis:
        return self._redis

    def _key(self, user_id: str) -> str:
        return f"{self._prefix}conns:{user_id}"

    async def acquire(self, user_id: str, connection_id: str, limit: int) -> bool | None:
        """Take a slot; True/False, or None when Redis can't answer (use local counts)."""
        try:
            async with asyncio.timeout(self._timeout):
                got = await self._acquire(keys=[self._key(user_id)],
                                          args=[time.time(), self.ttl, limit, connection_id])
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("presence unavailable (%s): per-node connection limits",
                        type(exc).__name__)
            return None
        return bool(got)

    async def release(self, user_id: str, connection_id: str) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await self._redis.zrem(self._key(user_id), connection_id)
        except (RedisError, OSError, TimeoutError):
            pass  # the slot expires by itself

    async def refresh(self, slots: Iterable[tuple[str, str]]) -> None:
        """Extend the slots of this node's open connections."""
        expires = time.time() + self.ttl
        try:
            async with asyncio.timeout(self._timeout), self._redis.pipeline(
                    transaction=False) as pipe:
                for user_id, connection_id in slots:
                    pipe.zadd(self._key(user_id), {connection_id: expires}, xx=True)
                await pipe.execute()
        except (RedisError, OSError, TimeoutError):
            log.warning("could not refresh connection slots")

    async def aclose(self) -> None:
        await self._redis.aclose()
