"""A read-through cache of recent thread history (seed SPOF 3: reads without a fallback).

With Redis configured, the first page of a thread's messages is cached with its owner;
writers invalidate it after they commit. When the database is unavailable, REST reads of
that page are answered from the cache (marked stale) instead of failing. The database
stays the only history: the cache is never written to the database or trusted for
anything else.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Protocol

import redis.asyncio as aioredis

from runwire.redisguard import RedisGuard, RedisUnavailable

log = logging.getLogger(__name__)


class HistoryCache(Protocol):
    async def get(self, thread_id: str) -> tuple[str, list[dict[str, Any]]] | None:
        """(owner user id, messages oldest first) or None."""
        ...

    async def put(self, thread_id: str, owner: str, messages: list[dict[str, Any]]) -> None: ...

    async def invalidate(self, thread_id: str) -> None: ...


class NoCache:
    """The embedded default: nothing cached (one process, one SQLite file)."""

    async def get(self, thread_id: str) -> tuple[str, list[dict[str, Any]]] | None:
        return None

    async def put(self, thread_id: str, owner: str, messages: list[dict[str, Any]]) -> None:
        return None

    async def invalidate(self, thread_id: str) -> None:
        return None


class RedisHistoryCache:
    """Recent messages per thread in Redis, with a TTL; failures are never fatal.

    Calls go through the node's :class:`~runwire.redisguard.RedisGuard` (short timeout,
    shared Redis breaker): while Redis is away a read is a miss and a write is skipped at
    once. An invalidation that could not be made leaves a stale page for at most ``ttl``
    seconds, and only for reads made while the database is down.
    """

    def __init__(self, client: aioredis.Redis, *, prefix: str, guard: RedisGuard,
                 ttl: float = 86400.0) -> None:
        self._redis = client
        self._prefix = prefix
        self._ttl = int(ttl)
        self._guard = guard

    def _key(self, thread_id: str) -> str:
        return f"{self._prefix}hist:{thread_id}"

    async def get(self, thread_id: str) -> tuple[str, list[dict[str, Any]]] | None:
        try:
            raw = await self._guard.call(lambda: self._redis.get(self._key(thread_id)))
        except RedisUnavailable:
            return None
        if raw is None:
            return None
        data = json.loads(raw)
        return str(data["owner"]), list(data["messages"])

    async def put(self, thread_id: str, owner: str, messages: list[dict[str, Any]]) -> None:
        value = json.dumps({"owner": owner, "messages": messages})
        try:
            await self._guard.call(lambda: self._redis.set(self._key(thread_id), value,
                                                           ex=self._ttl))
        except RedisUnavailable:
            log.debug("history cache write skipped")

    async def invalidate(self, thread_id: str) -> None:
        try:
            await self._guard.call(lambda: self._redis.delete(self._key(thread_id)))
        except RedisUnavailable:
            log.warning("history cache invalidation failed for %s", thread_id)
