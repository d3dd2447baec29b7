"""Per-user, per-operation rate limits (the `limits` library's moving window).

Operations: ``frame`` (every inbound WebSocket frame), ``user_message``, ``rest_write``
and ``tool:<name>`` for tools that declare a limit. The storage is in-process by default
and Redis when configured (so limits hold across nodes); if Redis fails, limits fall back
to this node's own counts instead of failing requests.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    retry_after_ms: int = 0


class RateLimiter:
    """Checks and counts one hit of an operation for a user.

    Args:
        limits: operation → limit string (``"30/minute"``).
        storage: shared storage (Redis) or None for in-process counts.
    """

    def __init__(self, limits: dict[str, str], storage: Storage | None = None) -> None:
        self._items: dict[str, RateLimitItem] = {op: parse(v) for op, v in limits.items()}
        self._local = MovingWindowRateLimiter(MemoryStorage())
        self._shared = MovingWindowRateLimiter(storage) if storage is not None else None
        self._storage = storage

    async def hit(self, user_id: str, op: str, limit: str | None = None) -> Decision:
        """Count one `op` by `user_id`; refuse it when over the limit.

        `limit` overrides the configured limit (tools declaring their own).
        """
        item = parse(limit) if limit else self._items.get(op)
        if item is None:
            return Decision(True)
        limiter = self._shared or self._local
        try:
            allowed = await limiter.hit(item, user_id, op)
            if allowed:
                return Decision(True)
            stats = await limiter.get_window_stats(item, user_id, op)
        except Exception:  # shared storage down: per-node counts keep limits in force
            if limiter is self._local:
                raise
            log.warning("rate limit storage unavailable; using per-node counts")
            limiter = self._local
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
