"""The per-run emitter: commit each event to the thread's log, then publish it.

Order: events of one run are appended and published under one lock, so they reach the
bus in seq order. Events wait at most ``window`` seconds (30 ms) and go to the log in one
transaction with whatever else the run emitted meanwhile: consecutive ``partial_result``
deltas are merged into one event (one transaction instead of one per token), and a burst
such as ``tool_executing`` + ``tool_completed`` of a fast tool, or the thinking before it,
costs one transaction instead of one each. Nothing is sent before it is committed, and
nothing overtakes anything: the pending list keeps the order of the ``emit`` calls.

A flush that fails (the database stayed unavailable through the retries, or the node lost
the run: :class:`~runwire.errors.LeaseLost`) is raised by the run's next ``emit``, so the
run ends the way it would have had ``emit`` committed itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential_jitter,
)

from runwire.bus.base import Bus
from runwire.errors import StorageUnavailable
from runwire.protocol.codes import RunEventType
from runwire.protocol.envelope import Envelope
from runwire.store import eventlog
from runwire.store.db import Database
from runwire.store.eventlog import NewEvent

log = logging.getLogger(__name__)

Extra = Callable[[AsyncSession], Awaitable[None]]


async def publish_all(bus: Bus, envelopes: Sequence[Envelope]) -> None:
    """Publish committed envelopes; a bus failure is logged (the log repairs it)."""
    for env in envelopes:
        try:
            await bus.publish(env)
        except Exception:
            log.warning("bus publish failed; clients repair from the log", exc_info=True)


class RunEmitter:
    """Implements :class:`runwire.agents.scope.EventSink` for one run."""

    def __init__(
        self,
        *,
        db: Database,
        bus: Bus,
        user_id: str,
        thread_id: str,
        run_id: str,
        window: float = 0.03,
        observe: Callable[[Sequence[NewEvent], float], None] | None = None,
        retry_for: float = 5.0,
    ) -> None:
        self._db = db
        self._bus = bus
        self.user_id = user_id
        self.thread_id = thread_id
        self.run_id = run_id
        self._window = window
        self._observe = observe
        self._retry_for = retry_for
        # Run inside every commit's transaction once the run has started: raises
        # LeaseLost when this node no longer holds the run (fencing).
        self.fence: Extra | None = None
        self._lock = asyncio.Lock()
        # In emit order: deltas as (agent_name, message_id, delta), other events as they are.
        self._pending: list[tuple[str, str, str] | NewEvent] = []
        self._failure: Exception | None = None  # a failed flush, raised by the next emit
        self._timer: asyncio.TimerHandle | None = None
        self._flush_task: asyncio.Task[None] | None = None
        self.streamed: dict[str, str] = {}  # message_id → text streamed so far

    async def emit(self, type: RunEventType, payload: Mapping[str, Any]) -> None:
        """Queue the event for the run's next commit (within `window` s).

        Raises:
            StorageUnavailable, LeaseLost: an earlier flush of this run failed.
        """
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure
        if type == "partial_result":
            agent, msg_id, delta = payload["agent_name"], payload["message_id"], payload["delta"]
            self._pending.append((agent, msg_id, delta))
            self.streamed[msg_id] = self.streamed.get(msg_id, "") + delta
        else:
            self._pending.append(NewEvent(type, payload, self.run_id))
        self._arm()

    def _arm(self) -> None:
        if self._window <= 0:
            self._schedule_flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._window, self._schedule_flush)

    def _schedule_flush(self) -> None:
        self._timer = None
        if self._flush_task is None or self._flush_task.done():
            self._flush_task = asyncio.create_task(self._flush_quietly(), name="emitter-flush")

    async def _flush_quietly(self) -> None:
        try:
            await self.commit([])
        except Exception as exc:  # raised by the run's next emit
            log.warning("event flush failed", exc_info=True)
            self._failure = exc

    def _take_pending(self) -> list[NewEvent]:
        """The pending events in order, each run of deltas of one answer merged into one."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        merged: list[NewEvent] = []
        last_key: tuple[str, str] | None = None
        parts: list[str] = []
        for item in self._pending:
            key = None if isinstance(item, NewEvent) else (item[0], item[1])
            if last_key is not None and key != last_key:
                merged.append(self._delta_event(last_key, parts))
                parts = []
            if isinstance(item, NewEvent):
                merged.append(item)
                last_key = None
            else:
                last_key = key
                parts.append(item[2])
        if last_key is not None:
            merged.append(self._delta_event(last_key, parts))
        self._pending.clear()
        return merged

    def _delta_event(self, key: tuple[str, str], parts: list[str]) -> NewEvent:
        payload = {"agent_name": key[0], "message_id": key[1], "delta": "".join(parts)}
        return NewEvent("partial_result", payload, self.run_id)

    async def commit(self, events: Sequence[NewEvent], extra: Extra | None = None, *,
                     retry_for: float | None = None) -> None:
        """Flush pending events, then append `events` (and run `extra` in the same
        transaction), commit, and publish — in that order.

        While the database is unavailable the transaction is retried with backoff for up to
        `retry_for` seconds (default: the emitter's own), then StorageUnavailable is raised;
        nothing is published unless it committed.
        """
        async with self._lock:
            batch = [*self._take_pending(), *events]
            if not batch and extra is None:
                return
            began = time.monotonic()
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(StorageUnavailable),
                wait=wait_exponential_jitter(multiplier=0.05, max=2.0),
                stop=stop_after_delay(self._retry_for if retry_for is None else retry_for),
                reraise=True,
            ):
                with attempt:
                    async with self._db.write() as session:
                        if self.fence is not None:
                            await self.fence(session)
                        if extra is not None:
                            await extra(session)
                        envelopes = await eventlog.append(session, self.user_id,
                                                          self.thread_id, batch)
            await publish_all(self._bus, envelopes)
            if self._observe is not None:
                self._observe(batch, time.monotonic() - began)

    async def aclose(self) -> None:
        """Stop the flush timer; pending events are dropped unless committed before (the
        run's end commits them with its terminal event)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flush_task is not None and not self._flush_task.done():
            self._flush_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._flush_task
