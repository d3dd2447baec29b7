"""The run service: the one place that turns a user message into a stored, queued run,
and that stops runs.

Every transition of a run is :class:`~runwire.runs.lifecycle.RunLifecycle`'s (one
transaction plus its publish); this service decides which to make. The queue is the
``runs`` table: this node's :class:`~runwire.runs.scheduler.RunScheduler` (or any other
node's) claims the run, :class:`~runwire.runs.executor.RunExecutor` executes and ends it,
and one :class:`~runwire.runs.writer.EventWriter` per node commits every run's events.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError

from runwire.agents.scope import SearchHit
from runwire.auth import Principal
from runwire.bus.base import Bus
from runwire.errors import NotFound, StorageUnavailable
from runwire.ids import MessageId, ThreadId, UserId, new_id
from runwire.metrics import Metrics
from runwire.protocol.codes import ACTIVE_RUN_STATUSES, MultitaskStrategy
from runwire.protocol.envelope import utc_now
from runwire.protocol.frames import ApprovalBody, SendMessage
from runwire.runs.approvals import ApprovalDesk, Decided
from runwire.runs.emitter import RunEmitter
from runwire.runs.executor import AgentExecutor, RunExecutor
from runwire.runs.lifecycle import RunLifecycle
from runwire.runs.scheduler import CancelReason, RunScheduler, RunTicket
from runwire.runs.writer import EventWriter
from runwire.settings import Settings
from runwire.store import repo
from runwire.store.db import Database
from runwire.store.eventlog import NewEvent
from runwire.store.runqueue import RunRecord
from runwire.tracing import Tracing
from runwire.webhooks import outbox

log = logging.getLogger(__name__)

__all__ = ["Ack", "AgentExecutor", "RunService"]


@dataclass(frozen=True, slots=True)
class Ack:
    """The answer to a user message: `message_ack` payload."""

    message_id: str
    thread_id: str
    run_id: str
    duplicate: bool

    def payload(self) -> dict[str, Any]:
        return {"message_id": self.message_id, "thread_id": self.thread_id,
                "run_id": self.run_id, "duplicate": self.duplicate}


@dataclass(frozen=True, slots=True)
class _Waiting:
    """A run this node accepted that is still queued."""

    emitter: RunEmitter
    received_at: float  # when its user message arrived (latency metrics)
    accepted_at: float  # when it was stored (queue positions: see _report_positions)


class RunService:
    """Accepts messages, schedules runs, executes them and ends them."""

    def __init__(
        self, *, settings: Settings, db: Database, bus: Bus, runtime: AgentExecutor,
        metrics: Metrics, tracing: Tracing | None = None,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._db = db
        self._bus = bus
        self._runtime = runtime
        urls = settings.webhook_urls
        self.writer = EventWriter(
            db=db, bus=bus, node_id=settings.node_id, observe=self._observe_event,
            # a run's end or approval_required and its webhook rows: one transaction
            in_transaction=(lambda conn, envs: outbox.record(conn, envs, urls)) if urls else None)
        self.lifecycle = RunLifecycle(db=db, writer=self.writer, node_id=settings.node_id)
        self.executor = RunExecutor(settings=settings, db=db, lifecycle=self.lifecycle,
                                    runtime=runtime, metrics=metrics, search=self.search,
                                    tracing=tracing)
        self.approvals = ApprovalDesk(lifecycle=self.lifecycle, validator=runtime,
                                      metrics=metrics, node_id=settings.node_id,
                                      on_resumable=self._resumable)
        self.scheduler = RunScheduler(
            lifecycle=self.lifecycle, capacity=settings.max_concurrent_agents,
            ticket_for=self._ticket, execute=self.executor.execute,
            on_expired=self.end_expired, on_tick=self._report_positions,
            on_sweep=self.approvals.sweep,
            may_have_queued=lambda: self.queue_depth > 0 or bool(self._waiting),
            lease=settings.run_lease_seconds,
            poll_interval=1.0 if settings.embedded else 0.5,
        )
        # Runs this node accepted that are still queued: their emitters report
        # queue positions; the time each message arrived feeds the latency metrics.
        self._waiting: dict[str, _Waiting] = {}
        # Messages being stored now (user, message id) → arrival: a run the accepting
        # transaction starts itself has no _Waiting entry yet.
        self._arrivals: dict[tuple[str, str], float] = {}
        self._positions: dict[str, int] = {}
        self.queue_depth = 0  # queued runs of the whole deployment, as of the last tick

    # ---- accepting ---------------------------------------------------------------------

    async def send_message(self, principal: Principal, msg: SendMessage, *,
                           received_at: float | None = None) -> Ack:
        """Store a user message and its run (one transaction), then schedule the run.

        Raises:
            NotFound: `thread_id` is not one of the user's threads.
            ThreadBusy: the thread has an active run and the strategy is `reject`.
            StorageUnavailable: the database failed; nothing was stored.
        """
        user_id = principal.user_id
        agent = msg.agent or "supervisor"
        if not self._runtime.has_agent(agent):
            raise NotFound(f"agent {agent!r} not found")
        strategy: MultitaskStrategy = msg.multitask_strategy or self._settings.multitask_strategy
        message_id = msg.message_id or new_id()
        received = received_at or time.monotonic()
        arrival = (user_id, message_id)
        self._arrivals[arrival] = received
        try:
            done = await self.lifecycle.accept(
                user_id=user_id, thread_id=msg.thread_id, message_id=message_id,
                resend=msg.message_id is not None, content=msg.content, agent=agent,
                request={"scopes": sorted(principal.scopes), "context": msg.context,
                         "settings": msg.settings},
                reject_if_busy=strategy == "reject", admission=self.scheduler.admission())
        except IntegrityError:
            # The same message_id raced in on another connection: report that one.
            dup = await self._duplicate(user_id, message_id)
            if dup is None:
                raise StorageUnavailable("could not store the message") from None
            return dup
        finally:
            self._arrivals.pop(arrival, None)
        if done.duplicate:
            return Ack(done.message_id, done.thread_id, done.run_id, duplicate=True)
        if strategy == "interrupt":
            await self.stop_runs(list(done.busy_run_ids), reason="interrupted")
        if not done.started:  # else the accepting transaction claimed it: it runs already
            self._waiting[done.run_id] = _Waiting(
                self.lifecycle.emitter(user_id, done.thread_id, done.run_id),
                received, accepted_at=time.monotonic())
            self.scheduler.wake()
        return Ack(message_id, done.thread_id, done.run_id, duplicate=False)

    async def _duplicate(self, user_id: str, message_id: str) -> Ack | None:
        async with self._db.read() as session:
            found = await repo.find_message(session, user_id, message_id)
        if found is None or found.run_id is None:
            return None
        return Ack(message_id, found.thread_id, found.run_id, duplicate=True)

    def _observe_event(self, batch: Sequence[NewEvent], seconds: float) -> None:
        """Metrics from the events a run commits (append latency, tool outcomes)."""
        node = self._settings.node_id
        self._metrics.append_latency.labels(node).observe(seconds)
        for event in batch:
            if event.type == "tool_completed":
                outcome = "error" if event.payload.get("error") is not None else "ok"
                self._metrics.tool_calls.labels(node, str(event.payload.get("tool_name")),
                                                outcome).inc()

    def _ticket(self, run: RunRecord) -> RunTicket:
        """The ticket of a run this node claimed (it may have been accepted elsewhere)."""
        waiting = self._waiting.pop(run.id, None)
        self._positions.pop(run.id, None)
        emitter = (waiting.emitter if waiting
                   else self.lifecycle.emitter(run.user_id, run.thread_id, run.id))
        received = (waiting.received_at if waiting
                    else self._arrivals.get((run.user_id, run.message_id), 0.0))
        return RunTicket(run.id, run.thread_id, run.user_id, emitter, agent=run.agent,
                         message_id=run.message_id, received_at=received)

    async def _report_positions(self) -> None:
        """`agent_progress` with the queue position of runs this node accepted, when the
        position changed. Committed only while the run is still queued."""
        order = await self.lifecycle.queue()
        self.queue_depth = len(order)
        if not self._waiting:
            return
        position_of = {run_id: i for i, run_id in enumerate(order, start=1)}
        for run_id in list(self._waiting):
            waiting = self._waiting.get(run_id)
            if waiting is None or waiting.accepted_at > self.scheduler.last_claim_at:
                # No claim round has seen it yet: it may start now, and `order` (read
                # after the round began) may not hold it either.
                continue
            position = position_of.get(run_id)
            if position is None:  # claimed elsewhere or ended
                self._waiting.pop(run_id, None)
                self._positions.pop(run_id, None)
                continue
            if self._positions.get(run_id) == position:
                continue
            self._positions[run_id] = position
            await self.lifecycle.progress(waiting.emitter, position)

    # ---- approvals (SPEC 7) ------------------------------------------------------------

    async def decide(self, principal: Principal, run_id: str, body: ApprovalBody) -> Decided:
        """The user's decision on a tool call waiting for approval — the one path of the
        ``approve_tool`` frame and ``POST /api/runs/{run_id}/approvals``. The first decision
        wins; the last open call's decision queues the run to resume (on any node).

        Raises:
            NotFound, Conflict, InvalidArguments, StorageUnavailable: see
                :meth:`ApprovalDesk.decide`.
        """
        return await self.approvals.decide(principal, run_id, body)

    def _resumable(self) -> None:
        self.scheduler.wake()

    # ---- stopping ----------------------------------------------------------------------

    async def stop(self, principal: Principal, *, run_id: str | None, thread_id: str | None) -> int:
        """Cancel a run, or the active and queued runs of a thread; returns how many.

        Raises:
            NotFound: the run/thread does not exist or is another user's.
        """
        async with self._db.read() as session:
            if run_id is not None:
                run = await repo.get_run(session, principal.user_id, run_id)
                run_ids = [run.id] if run.status in ACTIVE_RUN_STATUSES else []
            else:
                assert thread_id is not None
                await repo.get_thread(session, principal.user_id, thread_id)
                run_ids = [r.id for r in await repo.active_runs(session, thread_id)]
        return await self.stop_runs(run_ids, reason="stopped")

    async def cancel_thread(self, user_id: str, thread_id: str, *, reason: CancelReason) -> int:
        """Cancel every active run of a (checked) thread."""
        async with self._db.read() as session:
            run_ids = [r.id for r in await repo.active_runs(session, thread_id)
                       if r.user_id == user_id]
        return await self.stop_runs(run_ids, reason=reason)

    async def stop_runs(self, run_ids: Sequence[str], *, reason: CancelReason) -> int:
        """Cancel runs wherever they are: queued ones end here at once (`cancelled`,
        no `agent_started`); running ones are cancelled by the node that holds them.

        Newest first: a thread's queued runs end before its active run is cancelled, or
        the slot that cancel frees could start the next queued run before its stop."""
        count = 0
        for run_id in reversed(run_ids):
            if await self._stop_one(run_id, reason):
                count += 1
        return count

    async def _stop_one(self, run_id: str, reason: CancelReason) -> bool:
        # Twice at most: a run may pause (running → waiting) between the look and the flag.
        for _ in range(2):
            if self.scheduler.cancel_local(run_id, reason):
                return True
            run = await self.lifecycle.record(run_id)
            if run is None:
                return False
            if run.status in ("queued", "waiting"):  # no node holds it: end it here
                ticket = RunTicket(run.id, run.thread_id, run.user_id,
                                   self.lifecycle.emitter(run.user_id, run.thread_id, run.id),
                                   agent=run.agent, message_id=run.message_id)
                if await self.executor.end(ticket, "cancelled", None, started=None,
                                           queued=True):
                    self._waiting.pop(run_id, None)
                    return True
                continue  # it moved on (claimed, resumed): look again
            if run.status != "running":
                return False
            if await self.lifecycle.request_cancel(run_id):  # running on another node
                await self._bus.publish_control(f"cancel:{run_id}:{reason}")
                return True
        return False

    def on_control(self, message: str) -> None:
        """A control message from the bus (possibly from another node)."""
        kind, _, rest = message.partition(":")
        if kind == "cancel":
            run_id, _, reason = rest.partition(":")
            self.scheduler.cancel_local(run_id, "interrupted" if reason == "interrupted"
                                        else "stopped")

    # ---- lifecycle ---------------------------------------------------------------------

    async def search(self, user_id: UserId, query: str, *, limit: int) -> list[SearchHit]:
        """Owner-scoped message search for the `search_threads` tool."""
        async with self._db.read() as session:
            rows = await repo.search_messages(session, user_id, query, limit=limit)
        return [SearchHit(ThreadId(m.thread_id), title, MessageId(m.message_id), m.role, m.content)
                for m, title in rows]

    async def end_expired(self, run: RunRecord, *, any_lease: bool = False) -> None:
        """End (or requeue, with RETRY_LOST_RUNS) a run whose node died: one terminal event,
        whichever node gets there first."""
        requeue = self._settings.retry_lost_runs
        # any_lease: at an embedded node's start every running run is its dead predecessor's
        horizon = utc_now() + timedelta(days=3650) if any_lease else None
        if not await self.lifecycle.expire(run, requeue=requeue, now=horizon):
            return
        if requeue:
            self.scheduler.wake()
        else:
            self._metrics.runs.labels(self._settings.node_id, "failed", "node_lost").inc()
        log.warning("run %s of a lost node %s", run.id, "requeued" if requeue else "ended")

    async def recover(self) -> None:
        """Single node (embedded) start-up: end the runs a dead predecessor left running.
        With a shared database, leases expire instead (other nodes may be alive)."""
        if not self._settings.embedded:
            return
        for run in await self.lifecycle.running():
            await self.end_expired(run, any_lease=True)

    async def start(self) -> None:
        """Start the writer, end what a dead predecessor left running, start claiming."""
        self.writer.start()
        await self.recover()
        self.scheduler.start()

    async def drain(self, grace: float) -> None:
        """Stop claiming, let runs finish (`grace` s), end the rest, then commit and
        publish what is pending."""
        await self.scheduler.drain(grace)
        await self.writer.aclose()
