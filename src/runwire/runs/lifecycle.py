"""The life of a run, in one place: every transition is one transaction plus its publish.

::

    accept ──► queued ──claim──► running ──end──► completed | cancelled | failed | timed_out
                 │  ▲               │
                 │  └──expire(requeue)┘ (lease ran out: its node died)
                 └──end(queued)──► cancelled            expire ──► failed (node_lost)

- ``accept``: thread (found or created) + user message + queued run + ``message_created``.
- ``claim``: queued → running with a lease, + ``agent_started``, for up to `limit` runs.
- ``start``: from now on every commit of the run's events is fenced by its lease.
- ``progress``: ``agent_progress`` with a queue position, only while still queued.
- ``end``: the run's status + its answer + ``agent_response`` + the terminal event, in the
  same transaction as the run's last events (through the :class:`EventWriter`); the
  conditional status update is the fence that keeps a node that lost the run from
  writing a second terminal event.
- ``expire``: a run whose lease ran out ends with ``agent_error`` ``node_lost`` (or goes
  back to the queue with RETRY_LOST_RUNS), whichever node gets there first.
- ``request_cancel``: the cancel flag for a run held by another node.

The scheduler, the executor and the run service call down into this module; the emitter
only buffers, and the writer only batches.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from runwire.bus.base import Bus
from runwire.errors import AgentFailure
from runwire.protocol.codes import RunStatus
from runwire.protocol.envelope import Envelope, encode, utc_now
from runwire.runs.emitter import RunEmitter
from runwire.runs.writer import EventWriter
from runwire.store import eventlog, runqueue
from runwire.store.db import Database
from runwire.store.eventlog import NewEvent
from runwire.store.runqueue import Enqueued, RunRecord

log = logging.getLogger(__name__)


class AlreadyEnded(Exception):
    """The run's row already moved on (another node, a stop, an expiry): nothing written."""


class NotQueued(Exception):
    """The run is no longer queued: its queue position is not worth reporting."""


@dataclass(frozen=True, slots=True)
class Ending:
    """How a run ended, for :meth:`RunLifecycle.end`."""

    status: RunStatus
    failure: AgentFailure | None = None
    content: str = ""
    assistant_id: str | None = None
    usage: Mapping[str, int] | None = None
    duration_ms: int = 0
    model_messages: str | None = None


class RunLifecycle:
    """Owns every transition of a run (see the module docstring)."""

    def __init__(self, *, db: Database, bus: Bus, writer: EventWriter, node_id: str) -> None:
        self._db = db
        self._bus = bus
        self.writer = writer
        self.node_id = node_id

    def emitter(self, user_id: str, thread_id: str, run_id: str) -> RunEmitter:
        return RunEmitter(writer=self.writer, user_id=user_id, thread_id=thread_id,
                          run_id=run_id)

    # ---- accept ------------------------------------------------------------------------------

    async def accept(self, *, user_id: str, thread_id: str | None, message_id: str,
                     resend: bool, content: str, agent: str, request: Mapping[str, Any],
                     reject_if_busy: bool) -> Enqueued:
        """Store the user message and its queued run; publish ``thread_created`` (for a new
        thread) and ``message_created``.

        Raises:
            NotFound, ThreadBusy, IntegrityError, StorageUnavailable: see
                :func:`runwire.store.runqueue.enqueue`; nothing was stored.
        """
        envelopes: list[Envelope] = []

        def work(conn: Connection) -> Enqueued:
            envelopes.clear()
            done = runqueue.enqueue(conn, user_id=user_id, thread_id=thread_id,
                                    message_id=message_id, resend=resend, content=content,
                                    agent=agent, request=request, reject_if_busy=reject_if_busy)
            if not done.duplicate:
                envelopes.extend(eventlog.append(conn, user_id, done.thread_id, [
                    NewEvent("message_created", {"message_id": message_id, "role": "user",
                                                 "content": content})]))
            return done

        done = await self._db.transaction(work)
        if done.created_title is not None:
            await self.publish_control(user_id, "thread_created",
                                       {"thread_id": done.thread_id, "title": done.created_title})
        await self.writer.publish(envelopes)
        return done

    async def publish_control(self, user_id: str, type: str, payload: Mapping[str, Any]) -> None:
        """Publish a frame that is not part of a thread's log to all the user's tabs."""
        try:
            await self._bus.publish(Envelope(user_id, type, encode(type, payload)))
        except Exception:  # clients repair a lost control frame by their REST reloads
            log.warning("bus publish of %s failed", type, exc_info=True)

    # ---- claim and start ---------------------------------------------------------------------

    async def claim(self, *, limit: int, lease: timedelta,
                    start: Callable[[RunRecord], None]) -> list[RunRecord]:
        """Claim up to `limit` queued runs for this node, each with its ``agent_started``
        (one transaction); `start` is called for each claimed run before its
        ``agent_started`` is published (so whoever sees it finds the run executing), and
        that is published before this returns.

        Raises:
            IntegrityError: another node won a thread (try again).
        """
        if limit <= 0:
            return []
        skip_locked = not self._db.is_sqlite
        envelopes: list[Envelope] = []

        def work(conn: Connection) -> list[RunRecord]:
            envelopes.clear()
            runs = runqueue.claim(conn, node_id=self.node_id, limit=limit, lease=lease,
                                  skip_locked=skip_locked)
            now = utc_now()
            for run in runs:
                envelopes.extend(eventlog.append(conn, run.user_id, run.thread_id, [
                    NewEvent("agent_started", {"agent_name": run.agent,
                                               "message_id": run.message_id,
                                               "run_id": run.id}, run.id)], now))
            return runs

        runs = await self._db.transaction(work)
        for run in runs:
            start(run)
        await self.writer.publish(envelopes)
        return runs

    @staticmethod
    def start(emitter: RunEmitter) -> None:
        """From now on each commit of the run's events is fenced by this node's lease."""
        emitter.fenced = True

    async def renew(self, run_ids: Sequence[str], lease: timedelta) -> dict[str, bool]:
        """Extend this node's leases; run id → cancel requested, for the runs still held."""
        if not run_ids:
            return {}
        return await self._db.transaction(
            lambda conn: runqueue.renew(conn, node_id=self.node_id, run_ids=run_ids, lease=lease))

    # ---- while queued ------------------------------------------------------------------------

    async def progress(self, emitter: RunEmitter, position: int) -> bool:
        """``agent_progress`` with the run's queue position, committed only while it is still
        queued; False when it no longer is."""
        run_id = emitter.run_id
        try:
            await emitter.commit(
                [NewEvent("agent_progress", {"message": f"Queued (position {position})",
                                             "queue_position": position}, run_id)],
                lambda conn: runqueue.is_queued(conn, run_id), rejected=NotQueued())
        except NotQueued:
            return False
        return True

    async def queue(self) -> list[str]:
        """The queued runs of the deployment, in claim order."""
        return await self._db.query(runqueue.queued_ids)

    # ---- end ---------------------------------------------------------------------------------

    async def end(self, emitter: RunEmitter, agent: str, ending: Ending, *, queued: bool = False,
                  retry_for: float | None = None) -> None:
        """Store how the run ended: status, answer, ``agent_response`` and the terminal
        event, with its last events, in one transaction; published before this returns.

        `queued`: the run never started (a stop while queued): it ends only if still queued.

        Raises:
            AlreadyEnded: the run had already moved on; nothing was written.
            StorageUnavailable: the database stayed unavailable for `retry_for` seconds.
            NotFound: the thread was deleted.
        """
        emitter.fenced = False  # the conditional status update below is the fence
        failure = ending.failure
        content, answer_id = ending.content, ending.assistant_id
        usage = dict(ending.usage or {})
        run_id = emitter.run_id
        node = None if queued else self.node_id

        def finish(conn: Connection) -> bool:
            if not runqueue.end(
                conn, run_id, ending.status, node_id=node,
                error_code=failure.code if failure else None,
                error_message=failure.message if failure else None, usage=usage,
                model_messages=ending.model_messages,
            ):
                return False
            if content and answer_id:
                runqueue.add_message(conn, user_id=emitter.user_id, thread_id=emitter.thread_id,
                                     message_id=answer_id, role="assistant", content=content,
                                     run_id=run_id)
            return True

        try:
            await emitter.commit(terminal_events(run_id, agent, ending, usage), finish,
                                 rejected=AlreadyEnded(run_id), retry_for=retry_for)
        finally:
            emitter.aclose()

    async def expire(self, run: RunRecord, *, requeue: bool, now: datetime | None = None) -> bool:
        """End (or requeue) a run whose lease ran out before `now`; False when another node
        got there first. One terminal event (``agent_error`` ``node_lost``) either way."""
        emitter = self.emitter(run.user_id, run.thread_id, run.id)
        event = (NewEvent("agent_progress", {"message": "Retrying on another node"}, run.id)
                 if requeue else NewEvent("agent_error", {
                     "code": "node_lost", "message": "the node running this run stopped",
                     "retryable": True}, run.id))
        try:
            await emitter.commit(
                [event], lambda conn: runqueue.take_expired(conn, run.id, now=now,
                                                            requeue=requeue),
                rejected=AlreadyEnded(run.id))
        except AlreadyEnded:
            return False
        finally:
            emitter.aclose()
        return True

    async def expired(self) -> list[RunRecord]:
        return await self._db.query(runqueue.expired)

    async def running(self) -> list[RunRecord]:
        return await self._db.query(runqueue.running)

    # ---- cancel ------------------------------------------------------------------------------

    async def request_cancel(self, run_id: str) -> None:
        """Flag a run another node holds; that node cancels it at its next renewal (the
        bus's control message is the fast path)."""
        await self._db.transaction(lambda conn: runqueue.request_cancel(conn, run_id))

    async def record(self, run_id: str) -> RunRecord | None:
        return await self._db.query(lambda conn: runqueue.get_record(conn, run_id))


def terminal_events(run_id: str, agent: str, ending: Ending,
                    usage: Mapping[str, int]) -> list[NewEvent]:
    """``agent_response`` (when there is an answer) and the terminal event."""
    events: list[NewEvent] = []
    content, answer_id, failure = ending.content, ending.assistant_id, ending.failure
    if content and answer_id:
        events.append(NewEvent("agent_response", {
            "agent_name": agent, "message_id": answer_id, "content": content}, run_id))
    if failure is None:
        events.append(NewEvent("agent_completed", {
            "status": ending.status, "result": content,
            "message_id": answer_id if content else None,
            "usage": dict(usage), "duration_ms": ending.duration_ms}, run_id))
    else:
        events.append(NewEvent("agent_error", {
            "code": failure.code, "message": failure.message,
            "retryable": failure.retryable}, run_id))
    return events
