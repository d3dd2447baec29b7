"""Per-user, per-operation rate limits (the `limits` library's moving window).

Operations: ``frame`` (every inbound WebSocket frame), ``user_message``, ``rest_write``
and ``tool:<name>`` for tools that declare a limit. The storage is in-process by default
and Redis when configured (so limits hold across nodes). Every shared call goes through the
node's :class:`~runwire.redisguard.RedisGuard` (a short timeout and the Redis breaker): this
runs for every inbound frame, pings included, so a slow or hung Redis must cost at most one
timeout before limits fall back to this node's own counts (SPEC 5 "Degraded modes").
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from runwire.redisguard import RedisGuard, RedisUnavailable


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    retry_after_ms: int = 0


class RateLimiter:
    """Checks and counts one hit of an operation for a user.

    Args:
        limits: operation → limit string (``"30/minute"``).
        storage: shared storage (Redis) or None for in-process counts.
        guard: timeout + breaker for the shared storage (required with `storage`).
    """

    def __init__(self, limits: dict[str, str], storage: Storage | None = None,
                 guard: RedisGuard | None = None) -> None:
        self._items: dict[str, RateLimitItem] = {op: parse(v) for op, v in limits.items()}
        self._local = MovingWindowRateLimiter(MemoryStorage())
        self._shared = MovingWindowRateLimiter(storage) if storage is not None else None
        self._storage = storage
        if self._shared is not None and guard is None:
            raise ValueError("a shared rate-limit storage needs a RedisGuard")
        self._guard = guard

    async def hit(self, user_id: str, op: str, limit: str | None = None) -> Decision:
        """Count one `op` by `user_id`; refuse it when over the limit.

        `limit` overrides the configured limit (tools declaring their own).
        """
        item = parse(limit) if limit else self._items.get(op)
        if item is None:
            return Decision(True)
        if self._shared is not None and self._guard is not None:
            shared = self._shared
            try:
                return await self._guard.call(lambda: self._decide(shared, item, user_id, op))
            except RedisUnavailable:
                pass  # shared counts unreachable: this node's own counts keep limits in force
        return await self._decide(self._local, item, user_id, op)

    @staticmethod
    async def _decide(limiter: MovingWindowRateLimiter, item: RateLimitItem, user_id: str,
                      op: str) -> Decision:
        if await limiter.hit(item, user_id, op):
            return Decision(True)
        stats = await limiter.get_window_stats(item, user_id, op)
        retry = max(1, int((stats.reset_time - time.time()) * 1000))
        return Decision(False, retry)

    async def aclose(self) -> None:
        """Close the shared storage's connections. `limits` has no close for its Redis
        storage; its redis-py client sits at ``bridge.storage`` (left open, the socket
        outlives the app and leaks at interpreter exit)."""
        client = getattr(getattr(self._storage, "bridge", None), "storage", None)
        close = getattr(client, "aclose", None)
        if close is not None:
            await close()
