"""The per-run emitter: buffers a run's events for the node's
:class:`~runwire.runs.writer.EventWriter`.

``emit`` only appends to the run's buffer and tells the writer; the writer commits the
buffers of all runs together as soon as its previous commit finished, then publishes.
So nothing is sent before it is committed, and the events of one run keep the order of
the ``emit`` calls (consecutive deltas of one answer become one event).

A commit that fails for this run (its lease was lost, its thread deleted, or the database
stayed unavailable longer than ``retry_for``) is raised by the run's next ``emit``, so the
run ends the way it would have had ``emit`` committed itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from runwire.protocol.codes import RunEventType
from runwire.runs.writer import Commit, EventWriter, Item, Transition
from runwire.store.eventlog import NewEvent


class RunEmitter:
    """Implements :class:`runwire.agents.scope.EventSink` for one run.

    Attributes:
        fenced: from the run's start on, every commit of its events checks that this node
            still holds the run (the lifecycle sets it).
    """

    def __init__(self, *, writer: EventWriter, user_id: str, thread_id: str, run_id: str,
                 retry_for: float = 5.0) -> None:
        self._writer = writer
        self.user_id = user_id
        self.thread_id = thread_id
        self.run_id = run_id
        self.retry_for = retry_for
        self.fenced = False
        self.closed = False
        self.failing_since: float | None = None  # monotonic time of the first failed commit
        self._items: list[Item] = []
        self._failure: Exception | None = None
        self._streamed: dict[str, list[str]] = {}

    async def emit(self, type: RunEventType, payload: Mapping[str, Any]) -> None:
        """Queue the event for the writer's next commit.

        Raises:
            StorageUnavailable, LeaseLost, NotFound: an earlier commit of this run failed.
        """
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure
        if type == "partial_result":
            msg_id, delta = payload["message_id"], payload["delta"]
            self._items.append((payload["agent_name"], msg_id, delta))
            self._streamed.setdefault(msg_id, []).append(delta)
        else:
            self._items.append(NewEvent(type, payload, self.run_id))
        self._writer.notify(self)
        await self._writer.room()

    async def commit(self, events: Sequence[NewEvent] = (), transition: Transition | None = None,
                     *, rejected: Exception | None = None,
                     retry_for: float | None = None) -> None:
        """Commit everything emitted so far, then `events`, with `transition` in the same
        transaction; returns once that is committed and published.

        Raises:
            `rejected`: `transition` returned False (nothing of this run was written).
            StorageUnavailable: the database stayed unavailable for `retry_for` seconds
                (default: the emitter's).
            LeaseLost, NotFound: the run was lost, or its thread deleted.
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._items.append(Commit(tuple(events), transition, rejected, retry_for, future))
        self._writer.notify(self)
        await future

    def streamed(self, message_id: str) -> str:
        """The answer text streamed so far under `message_id` (what clients saw)."""
        return "".join(self._streamed.get(message_id, ()))

    def take(self) -> list[Item]:
        """The writer takes everything pending."""
        items, self._items = self._items, []
        return items

    def give_back(self, items: list[Item]) -> None:
        """A failed commit: `items` go back in front of what was emitted since."""
        self._items[:0] = items

    def fail(self, exc: Exception) -> None:
        """A commit of this run failed: raised by its next emit."""
        self._failure = exc

    def aclose(self) -> None:
        """The run is over: what is still pending is dropped (its end commits it first)."""
        self.closed = True
