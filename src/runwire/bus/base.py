"""The bus contract shared by the in-memory and the Redis backends."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Literal, Protocol

from runwire.protocol.envelope import Envelope

Subscriber = Callable[[Envelope], None]
BusHealth = Literal["ok", "degraded", "down"]


class Bus(Protocol):
    """Per-user fan-out of frames.

    Contract:
        - `publish` hands the envelope to every current subscriber of ``envelope.user_id``
          (on every node). Publishing never waits on a subscriber: callbacks are
          synchronous and must not block (connections only enqueue).
        - Envelopes published by one task reach a subscriber in publish order; delivery
          is at most once per subscriber. A lost message is repaired by the reader from
          the event log (gap rule), so the bus never needs to be durable.
        - `subscribe` is an async context manager: the callback receives envelopes from
          when it returns until the block exits.
    """

    async def publish(self, envelope: Envelope) -> None: ...

    async def publish_many(self, envelopes: Sequence[Envelope]) -> None:
        """`publish` each of `envelopes`, in order (the Redis backend sends a writer's batch
        to the other nodes in one round trip per few hundred)."""
        ...

    def subscribe(
        self, user_id: str, callback: Subscriber
    ) -> AbstractAsyncContextManager[None]: ...

    async def publish_control(self, message: str) -> None:
        """Send a node-level control message (e.g. ``cancel:<run_id>``) to every node,
        this one included; delivered to ``on_control``. Best effort: the database holds
        the same intent (cancel flag) for nodes that miss it."""
        ...

    on_control: Callable[[str], None] | None

    def health(self) -> BusHealth: ...

    def subscriber_count(self) -> int:
        """Local subscriptions open now (a gauge: back to 0 when every connection closed)."""
        ...

    async def aclose(self) -> None: ...
