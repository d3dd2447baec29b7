"""The life of a run, in one place: every transition is one transaction plus its publish.

::

    accept ──► queued ──claim──► running ──end──► completed | cancelled | failed | timed_out
                 │  ▲               │
                 │  └──expire(requeue)┘ (lease ran out: its node died)
                 └──end(queued)──► cancelled            expire ──► failed (node_lost)

- ``accept``: thread (found or created) + user message + queued run + ``message_created``;
  with a free slot on this node, the same transaction is a claim round too (the run
  starts without waiting for the claimer).
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
- ``wait``: running → waiting (SPEC 7): the paused state, a row per call waiting for
  approval and their ``approval_required`` events; no lease, no slot. ``decide``: a
  decision on one call + ``approval_resolved``; the last one moves the run back to queued,
  and claiming it resumes it (no second ``agent_started``). A stop ends a waiting run like
  a queued one.

The scheduler, the executor and the run service call down into this module; the emitter
only buffers, and the writer only batches.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from runwire import threads
from runwire.agents.scope import ApprovalRequest
from runwire.errors import AgentFailure
from runwire.protocol.codes import RunStatus
from runwire.protocol.envelope import Envelope, utc_now
from runwire.runs.emitter import RunEmitter
from runwire.runs.writer import EventWriter
from runwire.store import approvals, eventlog, runqueue
from runwire.store.approvals import ApprovalRow, Verdict
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


Start = Callable[[RunRecord, "asyncio.Future[None]"], None]
"""Starts executing a claimed run once the gate (a future) is done."""


def _open(gate: asyncio.Future[None]) -> None:
    if not gate.done():
        gate.set_result(None)


@dataclass(frozen=True, slots=True)
class Admission:
    """A claim round for this node: up to `limit` runs, each with `lease`; `start` is
    called for each claimed run before its ``agent_started`` is published (see
    :meth:`RunLifecycle.claim`)."""

    limit: int
    lease: timedelta
    start: Start


class RunLifecycle:
    """Owns every transition of a run (see the module docstring)."""

    def __init__(self, *, db: Database, writer: EventWriter, node_id: str) -> None:
        self._db = db
        self.writer = writer
        self.node_id = node_id

    def emitter(self, user_id: str, thread_id: str, run_id: str) -> RunEmitter:
        return RunEmitter(writer=self.writer, user_id=user_id, thread_id=thread_id,
                          run_id=run_id)

    # ---- accept ------------------------------------------------------------------------------

    async def accept(self, *, user_id: str, thread_id: str | None, message_id: str,
                     resend: bool, content: str, agent: str, request: Mapping[str, Any],
                     reject_if_busy: bool, admission: Admission | None = None) -> Enqueued:
        """Store the user message and its queued run; ``thread_created`` (for a new thread)
        and ``message_created`` are published right after (in the writer's order, not
        waited for).

        With an `admission` (this node has free slots) the same transaction is also a claim
        round (:meth:`claim`): the oldest claimable runs — usually this one — start at once,
        their ``agent_started`` published with the message, instead of a second
        transaction after the claimer wakes.

        Raises:
            NotFound, ThreadBusy, IntegrityError, StorageUnavailable: see
                :func:`runwire.store.runqueue.enqueue`; nothing was stored.
        """
        envelopes: list[Envelope] = []
        started: list[Envelope] = []
        claimed: list[RunRecord] = []

        def work(conn: Connection) -> Enqueued:
            envelopes.clear()
            started.clear()
            claimed.clear()
            done = runqueue.enqueue(conn, user_id=user_id, thread_id=thread_id,
                                    message_id=message_id, resend=resend, content=content,
                                    agent=agent, request=request, reject_if_busy=reject_if_busy)
            if not done.duplicate:
                envelopes.extend(eventlog.append(conn, user_id, done.thread_id, [
                    NewEvent("message_created", {"message_id": message_id, "role": "user",
                                                 "content": content})]))
                if admission is not None:
                    claimed.extend(self._claim_round(conn, admission, started))
            return done

        done = await self._db.transaction(work)
        gate = self._start_all(claimed, admission.start if admission is not None else None)
        if any(run.id == done.run_id for run in claimed):
            done = replace(done, started=True)
        if done.created_title is not None:
            envelopes.insert(0, threads.created(user_id, done.thread_id, done.created_title))
        # Not waited for: the publisher sends them on its next turn, in one batch, after the
        # caller has queued its ``message_ack`` — so the ack, ``thread_created``,
        # ``message_created`` and ``agent_started`` leave in one socket write as a rule. The
        # runs begin once they are out.
        self.writer.publish_soon([*envelopes, *started], lambda: _open(gate))
        return done

    @staticmethod
    def _start_all(runs: Sequence[RunRecord], start: Start | None) -> asyncio.Future[None]:
        """`start` each claimed run, each behind the returned gate: a run's first steps
        (its agent's set-up is milliseconds of CPU) wait until its ``agent_started`` and
        what came before it are on their way to the clients."""
        gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if start is not None:
            for run in runs:
                start(run, gate)
        return gate

    # ---- claim and start ---------------------------------------------------------------------

    async def claim(self, *, limit: int, lease: timedelta, start: Start) -> list[RunRecord]:
        """Claim up to `limit` queued runs for this node, each with its ``agent_started``
        (one transaction); `start` is called for each claimed run before its
        ``agent_started`` is published (so whoever sees it finds the run executing), with a
        gate that opens once that is published (before this returns).

        Raises:
            IntegrityError: another node won a thread (try again).
        """
        if limit <= 0:
            return []
        envelopes: list[Envelope] = []
        order = Admission(limit, lease, start)

        def work(conn: Connection) -> list[RunRecord]:
            envelopes.clear()
            return self._claim(conn, order, envelopes)

        runs = await self._db.transaction(work)
        gate = self._start_all(runs, start)
        try:
            await self.writer.publish(envelopes)
        finally:
            _open(gate)
        return runs

    def _claim(self, conn: Connection, order: Admission,
               envelopes: list[Envelope]) -> list[RunRecord]:
        """A claim round inside the caller's transaction: the runs claimed, and their
        ``agent_started`` envelopes appended to `envelopes`."""
        runs = runqueue.claim(conn, node_id=self.node_id, limit=order.limit, lease=order.lease,
                              skip_locked=not self._db.is_sqlite)
        now = utc_now()
        for run in runs:
            if run.paused:
                continue  # resuming after approvals: it started before (SPEC 7)
            envelopes.extend(eventlog.append(conn, run.user_id, run.thread_id, [
                NewEvent("agent_started", {"agent_name": run.agent,
                                           "message_id": run.message_id,
                                           "run_id": run.id}, run.id)], now))
        return runs

    def _claim_round(self, conn: Connection, order: Admission,
                     envelopes: list[Envelope]) -> list[RunRecord]:
        """:meth:`_claim` as part of another transaction (an accept): on PostgreSQL in a
        savepoint, so losing a thread to another node's claim (IntegrityError) costs only
        the claim — the claimer's next round (woken by the caller) tries again."""
        if self._db.is_sqlite:  # one writer: no other claim can race this one
            return self._claim(conn, order, envelopes)
        mark = len(envelopes)
        try:
            with conn.begin_nested():
                return self._claim(conn, order, envelopes)
        except IntegrityError:
            del envelopes[mark:]
            return []

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

    # ---- approvals ---------------------------------------------------------------------------

    async def wait(self, emitter: RunEmitter, agent: str, *, state: str,
                   calls: Sequence[ApprovalRequest], expires_at: datetime) -> None:
        """Pause the run for `calls` (its last events, the paused state, a row and an
        ``approval_required`` per call: one transaction); published before this returns.

        Raises:
            AlreadyEnded: the run moved on, or a stop was requested; nothing was written.
        """
        run_id = emitter.run_id
        expires = expires_at.isoformat().replace("+00:00", "Z")
        events = [NewEvent("approval_required", {
            "agent_name": agent, "tool_call_id": call.tool_call_id,
            "tool_name": call.tool_name, "tool_args": dict(call.args),
            "expires_at": expires}, run_id) for call in calls]
        await emitter.commit(events, lambda conn: approvals.pause(
            conn, run_id=run_id, user_id=emitter.user_id, agent=agent,
            node_id=self.node_id, state=state, calls=calls, expires_at=expires_at),
            rejected=AlreadyEnded(run_id))
        emitter.aclose()  # refused: the caller ends the run with this emitter

    async def decide(self, row: ApprovalRow, *, approved: bool, reason: str | None,
                     args: Mapping[str, Any] | None,
                     expired_before: datetime | None = None) -> Verdict:
        """Store a decision on `row`'s call, with its ``approval_resolved`` (one
        transaction, published before this returns), unless it was decided already
        (``conflict``) — the first decision wins, whichever node takes it."""
        emitter = self.emitter(row.user_id, row.thread_id, row.run_id)
        verdict: list[Verdict] = []

        def store(conn: Connection) -> bool:
            verdict[:] = [approvals.decide(
                conn, run_id=row.run_id, user_id=row.user_id, tool_call_id=row.tool_call_id,
                approved=approved, reason=reason, final_args=args,
                expired_before=expired_before)]
            return verdict[0] in ("decided", "resumable")

        event = NewEvent("approval_resolved", {
            "tool_call_id": row.tool_call_id, "approved": approved, "reason": reason,
            "args": dict(args) if args is not None else None}, row.run_id)
        try:
            await emitter.commit([event], store, rejected=AlreadyEnded(row.run_id))
        except AlreadyEnded:
            pass
        finally:
            emitter.aclose()
        return verdict[0] if verdict else "conflict"

    async def approval(self, run_id: str, tool_call_id: str) -> ApprovalRow | None:
        return await self._db.query(lambda conn: approvals.get(conn, run_id, tool_call_id))

    async def decisions(self, run_id: str, tool_call_ids: Sequence[str]) -> list[ApprovalRow]:
        """The rows of the calls a paused run waited for."""
        return await self._db.query(
            lambda conn: approvals.decisions(conn, run_id, tool_call_ids))

    async def pending(self, user_id: str, *, thread_id: str | None = None) -> list[ApprovalRow]:
        """The user's calls that wait for a decision."""
        return await self._db.query(
            lambda conn: approvals.pending(conn, user_id, thread_id=thread_id))

    async def expired_approvals(self) -> list[ApprovalRow]:
        return await self._db.query(lambda conn: approvals.expired(conn))

    async def waiting_count(self) -> int:
        return await self._db.query(approvals.waiting_count)

    # ---- cancel ------------------------------------------------------------------------------

    async def request_cancel(self, run_id: str) -> bool:
        """Flag a run another node holds; that node cancels it at its next renewal (the
        bus's control message is the fast path). False: it is not running (any more)."""
        return await self._db.transaction(lambda conn: runqueue.request_cancel(conn, run_id))

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
