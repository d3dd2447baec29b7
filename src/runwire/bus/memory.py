"""In-process bus: the embedded default (one node)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence

from runwire.bus.base import BusHealth, Subscriber
from runwire.protocol.envelope import Envelope

log = logging.getLogger(__name__)


class InMemoryBus:
    """Fan-out inside one process: user_id → set of subscriber callbacks."""

    def __init__(self) -> None:
        self._subscribers: dict[str, set[Subscriber]] = {}
        self.on_control: Callable[[str], None] | None = None

    async def publish(self, envelope: Envelope) -> None:
        self.deliver(envelope)

    async def publish_many(self, envelopes: Sequence[Envelope]) -> None:
        for envelope in envelopes:
            self.deliver(envelope)

    async def publish_control(self, message: str) -> None:
        if self.on_control is not None:
            self.on_control(message)

    def deliver(self, envelope: Envelope) -> None:
        """Hand `envelope` to the local subscribers of its user (synchronously)."""
        for callback in tuple(self._subscribers.get(envelope.user_id, ())):
            try:
                callback(envelope)
            except Exception:  # one broken subscriber must not stop the others
                log.exception("bus subscriber failed")

    @contextlib.asynccontextmanager
    async def subscribe(self, user_id: str, callback: Subscriber) -> AsyncIterator[None]:
        subs = self._subscribers.setdefault(user_id, set())
        subs.add(callback)
        try:
            yield
        finally:
            subs.discard(callback)
            if not subs:
                self._subscribers.pop(user_id, None)

    def has_subscribers(self, user_id: str) -> bool:
        return bool(self._subscribers.get(user_id))

    def users(self) -> list[str]:
        return list(self._subscribers)

    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._subscribers.values())

    def health(self) -> BusHealth:
        return "ok"

    async def aclose(self) -> None:
        self._subscribers.clear()
