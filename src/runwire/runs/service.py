"""The run service: the one place that turns a user message into a stored, running run.

Transactions (SPEC 3, seed "Data consistency 2"):
    - accept: thread (found or created) + user message + run + ``message_created`` event
      are one transaction; nothing is published before it commits.
    - start: ``queued → running`` + ``agent_started`` in one transaction.
    - end: assistant message + final run status + ``agent_response`` + terminal event in
      one transaction.
Every run ends with exactly one terminal event (``agent_completed`` or ``agent_error``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from runwire.agents.scope import AgentOutcome, HistoryMessage, RunScope, SearchHit
from runwire.auth import Principal
from runwire.bus.base import Bus
from runwire.errors import AgentFailure, NotFound, StorageUnavailable, ThreadBusy
from runwire.ids import MessageId, RunId, ThreadId, UserId, new_id
from runwire.metrics import Metrics
from runwire.protocol.codes import MultitaskStrategy, RunStatus
from runwire.protocol.envelope import Envelope, encode
from runwire.protocol.frames import SendMessage
from runwire.runs.emitter import RunEmitter, publish_all
from runwire.runs.scheduler import CancelReason, RunScheduler, RunTicket
from runwire.settings import Settings
from runwire.store import eventlog, repo
from runwire.store.db import Database
from runwire.store.eventlog import NewEvent
from runwire.store.models import Run

log = logging.getLogger(__name__)


class AgentExecutor(Protocol):
    """What the run service needs of the agent runtime."""

    async def execute(self, scope: RunScope) -> AgentOutcome: ...

    def has_agent(self, name: str) -> bool: ...


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


class RunService:
    """Accepts messages, schedules runs, executes them and ends them."""

    def __init__(
        self, *, settings: Settings, db: Database, bus: Bus, runtime: AgentExecutor,
        metrics: Metrics,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._db = db
        self._bus = bus
        self._runtime = runtime
        self.scheduler = RunScheduler(
            capacity=settings.max_concurrent_agents,
            execute=self._execute,
            on_position=self._report_position,
        )

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
        if msg.message_id is not None:
            dup = await self._duplicate(user_id, msg.message_id)
            if dup is not None:
                return dup
        strategy: MultitaskStrategy = msg.multitask_strategy or self._settings.multitask_strategy
        message_id = msg.message_id or new_id()
        created_thread: tuple[str, str] | None = None
        try:
            async with self._db.write() as session:
                if msg.thread_id is not None:
                    thread = await repo.get_thread(session, user_id, msg.thread_id)
                    busy = await repo.active_runs(session, thread.id)
                    if busy and strategy == "reject":
                        raise ThreadBusy(f"thread {thread.id} has an active run")
                else:
                    thread = await repo.create_thread(session, user_id, repo.title_from(msg.content))
                    created_thread = (thread.id, thread.title)
                run = await repo.create_run(
                    session, user_id=user_id, thread_id=thread.id, message_id=message_id,
                    agent=agent,
                    request={"scopes": sorted(principal.scopes), "context": msg.context,
                             "settings": msg.settings},
                )
                await repo.add_message(
                    session, user_id=user_id, thread_id=thread.id, message_id=message_id,
                    role="user", content=msg.content, run_id=run.id,
                )
                envelopes = await eventlog.append(session, user_id, thread.id, [
                    NewEvent("message_created", {"message_id": message_id, "role": "user",
                                                 "content": msg.content}),
                ])
        except IntegrityError:
            # The same message_id raced in on another connection: report that one.
            dup = await self._duplicate(user_id, message_id)
            if dup is None:
                raise StorageUnavailable("could not store the message") from None
            return dup
        if created_thread is not None:
            await self.publish_control(user_id, "thread_created",
                                       {"thread_id": created_thread[0], "title": created_thread[1]})
        await publish_all(self._bus, envelopes)
        if strategy == "interrupt":
            await self.cancel_thread(user_id, run.thread_id, reason="interrupted")
        self._schedule(run, received_at)
        return Ack(message_id, run.thread_id, run.id, duplicate=False)

    async def _duplicate(self, user_id: str, message_id: str) -> Ack | None:
        async with self._db.read() as session:
            found = await repo.find_message(session, user_id, message_id)
        if found is None or found.run_id is None:
            return None
        return Ack(message_id, found.thread_id, found.run_id, duplicate=True)

    async def publish_control(self, user_id: str, type: str, payload: Mapping[str, Any]) -> None:
        """Publish a frame that is not part of a thread's log to all the user's tabs."""
        await publish_all(self._bus, [Envelope(user_id, type, encode(type, payload))])

    def _emitter(self, user_id: str, thread_id: str, run_id: str) -> RunEmitter:
        return RunEmitter(db=self._db, bus=self._bus, user_id=user_id, thread_id=thread_id,
                          run_id=run_id, observe=self._observe_event)

    def _observe_event(self, batch: Sequence[NewEvent], seconds: float) -> None:
        """Metrics from the events a run commits (append latency, tool outcomes)."""
        node = self._settings.node_id
        self._metrics.append_latency.labels(node).observe(seconds)
        for event in batch:
            if event.type == "tool_completed":
                outcome = "error" if event.payload.get("error") is not None else "ok"
                self._metrics.tool_calls.labels(node, str(event.payload.get("tool_name")),
                                                outcome).inc()

    def _ticket(self, run: Run, received_at: float | None = None) -> RunTicket:
        return RunTicket(run.id, run.thread_id, run.user_id,
                         self._emitter(run.user_id, run.thread_id, run.id),
                         agent=run.agent, message_id=run.message_id,
                         received_at=received_at or time.monotonic())

    def _schedule(self, run: Run, received_at: float | None = None) -> None:
        self.scheduler.submit(self._ticket(run, received_at))

    async def _report_position(self, ticket: RunTicket, position: int) -> None:
        if ticket.state != "queued":
            return
        await ticket.emitter.emit("agent_progress", {
            "message": f"Queued (position {position})", "queue_position": position})

    # ---- stopping ----------------------------------------------------------------------

    async def stop(self, principal: Principal, *, run_id: str | None, thread_id: str | None) -> int:
        """Cancel a run, or the active and queued runs of a thread; returns how many.

        Raises:
            NotFound: the run/thread does not exist or is another user's.
        """
        async with self._db.read() as session:
            if run_id is not None:
                run = await repo.get_run(session, principal.user_id, run_id)
                run_ids = [run.id] if run.status in ("queued", "running") else []
            else:
                assert thread_id is not None
                await repo.get_thread(session, principal.user_id, thread_id)
                run_ids = [r.id for r in await repo.active_runs(session, thread_id)]
        cancelled = 0
        for rid in run_ids:
            cancelled += await self._cancel(rid, "stopped")
        return cancelled

    async def cancel_thread(self, user_id: str, thread_id: str, *, reason: CancelReason) -> int:
        """Cancel every active run of a thread this node holds (interrupt, delete)."""
        count = 0
        for ticket in self.scheduler.of_thread(thread_id):
            if ticket.user_id == user_id:
                count += await self._cancel(ticket.run_id, reason)
        return count

    async def _cancel(self, run_id: str, reason: CancelReason) -> int:
        ticket = self.scheduler.get(run_id)
        was = self.scheduler.cancel(run_id, reason)
        if was == "queued" and ticket is not None:
            await self._end(ticket, "cancelled", None, started=None)
        return 0 if was is None else 1

    # ---- executing ---------------------------------------------------------------------

    async def _execute(self, ticket: RunTicket) -> None:
        started = time.monotonic()
        node = self._settings.node_id
        self._metrics.queue_wait.labels(node).observe(started - ticket.received_at)
        try:
            run = await self._start(ticket)
            self._metrics.start_latency.labels(node).observe(
                time.monotonic() - ticket.received_at)
        except (StorageUnavailable, NotFound) as exc:
            log.warning("run could not start: %s", exc)
            await self._end(ticket, "failed", AgentFailure(
                "storage_unavailable", "could not start the run", retryable=True), started=None)
            return
        if run is None:  # ended meanwhile (cancelled from another path)
            return
        log.info("run started agent=%s", ticket.agent)
        assistant_id = MessageId(new_id())
        outcome: AgentOutcome | None = None
        failure: AgentFailure | None = None
        status: RunStatus = "completed"
        try:
            scope = await self._scope(ticket, run, assistant_id)
            async with asyncio.timeout(self._settings.agent_execution_timeout) as deadline:
                outcome = await self._runtime.execute(scope)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            if ticket.cancel_reason == "shutdown":
                status, failure = "failed", AgentFailure(
                    "internal", "the server shut down before the run finished", retryable=True)
            else:
                status = "cancelled"
        except TimeoutError:
            if deadline.expired():
                status, failure = "timed_out", AgentFailure(
                    "timeout", f"the run exceeded {self._settings.agent_execution_timeout:g} s",
                    retryable=True)
            else:
                status, failure = "failed", AgentFailure("internal", "timed out", retryable=True)
        except AgentFailure as exc:
            status, failure = "failed", exc
        except StorageUnavailable:
            status, failure = "failed", AgentFailure(
                "storage_unavailable", "the database is unavailable", retryable=True)
        except Exception:
            log.exception("agent run crashed", extra={"run_id": ticket.run_id})
            status, failure = "failed", AgentFailure("internal", "internal error", retryable=False)
        await self._end(ticket, status, failure, started=started, outcome=outcome,
                        assistant_id=assistant_id)

    async def _start(self, ticket: RunTicket) -> Run | None:
        run_holder: list[Run] = []

        async def mark(session: AsyncSession) -> None:
            if not await repo.mark_running(session, ticket.run_id, self._settings.node_id):
                raise _AlreadyEnded
            run = await session.get(Run, ticket.run_id)
            assert run is not None
            run_holder.append(run)

        try:
            await ticket.emitter.commit([NewEvent("agent_started", {
                "agent_name": ticket.agent, "message_id": ticket.message_id,
                "run_id": ticket.run_id}, ticket.run_id)], extra=mark)
        except _AlreadyEnded:
            return None
        return run_holder[0]

    async def _scope(self, ticket: RunTicket, run: Run, assistant_id: MessageId) -> RunScope:
        request = run.request or {}
        async with self._db.read() as session:
            user_msg = await repo.find_message(session, ticket.user_id, run.message_id)
            if user_msg is None:
                raise NotFound("user message vanished")
            earlier = await repo.history(session, run.thread_id, before_id=user_msg.id,
                                         limit=self._settings.max_history_size)
        return RunScope(
            user_id=UserId(ticket.user_id), thread_id=ThreadId(run.thread_id),
            run_id=RunId(run.id), agent_name=run.agent, user_message=user_msg.content,
            user_message_id=MessageId(run.message_id), assistant_message_id=assistant_id,
            events=ticket.emitter, search=self.search,
            scopes=frozenset(request.get("scopes") or ()),
            history=[HistoryMessage("assistant" if m.role == "assistant" else "user", m.content)
                     for m in earlier],
            context=request.get("context") or {}, settings=request.get("settings") or {},
        )

    async def search(self, user_id: UserId, query: str, *, limit: int) -> list[SearchHit]:
        """Owner-scoped message search for the `search_threads` tool."""
        async with self._db.read() as session:
            rows = await repo.search_messages(session, user_id, query, limit=limit)
        return [SearchHit(ThreadId(m.thread_id), title, MessageId(m.message_id), m.role, m.content)
                for m, title in rows]

    async def _end(
        self,
        ticket: RunTicket,
        status: RunStatus,
        failure: AgentFailure | None,
        *,
        started: float | None,
        outcome: AgentOutcome | None = None,
        assistant_id: str | None = None,
    ) -> None:
        """Store how the run ended: answer + status + terminal event, one transaction."""
        emitter = ticket.emitter
        content = outcome.content if outcome is not None else (
            emitter.streamed.get(assistant_id, "") if assistant_id else "")
        usage = dict(outcome.usage) if outcome is not None else {}
        duration_ms = int((time.monotonic() - started) * 1000) if started is not None else 0
        events: list[NewEvent] = []
        if content and assistant_id:
            events.append(NewEvent("agent_response", {
                "agent_name": ticket.agent, "message_id": assistant_id, "content": content},
                ticket.run_id))
        if failure is None:
            events.append(NewEvent("agent_completed", {
                "status": status, "result": content, "message_id": assistant_id if content else None,
                "usage": usage, "duration_ms": duration_ms}, ticket.run_id))
        else:
            events.append(NewEvent("agent_error", {
                "code": failure.code, "message": failure.message,
                "retryable": failure.retryable}, ticket.run_id))

        async def finish(session: AsyncSession) -> None:
            if not await repo.mark_ended(
                session, ticket.run_id, status,
                error_code=failure.code if failure else None,
                error_message=failure.message if failure else None, usage=usage,
            ):
                raise _AlreadyEnded
            if content and assistant_id:
                await repo.add_message(
                    session, user_id=ticket.user_id, thread_id=ticket.thread_id,
                    message_id=assistant_id, role="assistant", content=content,
                    run_id=ticket.run_id)

        node = self._settings.node_id
        log.info("run ended status=%s code=%s duration_ms=%d", status,
                 failure.code if failure else "-", duration_ms)
        self._metrics.runs.labels(node, status, failure.code if failure else "").inc()
        if started is not None:
            self._metrics.run_duration.labels(node, status).observe(duration_ms / 1000)
        if failure is not None and failure.code == "model_error":
            self._metrics.model_errors.labels(node, str(failure.retryable).lower()).inc()
        try:
            await emitter.commit(events, extra=finish)
        except _AlreadyEnded:
            log.info("run already ended elsewhere", extra={"run_id": ticket.run_id})
        except (StorageUnavailable, NotFound):
            log.error("could not store the end of run %s", ticket.run_id)
        finally:
            await emitter.aclose()

    # ---- lifecycle ---------------------------------------------------------------------

    async def recover(self) -> None:
        """Single node start-up: end runs a dead predecessor left running; requeue the
        queued ones."""
        async with self._db.read() as session:
            runs = await repo.unfinished_runs(session)
        for run in runs:
            if run.status == "queued":
                self._schedule(run)
                continue
            ticket = self._ticket(run)
            await self._end(ticket, "failed", AgentFailure(
                "node_lost", "the server stopped while this run was executing",
                retryable=True), started=None)

    async def drain(self, grace: float) -> None:
        await self.scheduler.drain(grace)


class _AlreadyEnded(Exception):
    """The run's row was already moved on (fencing): write nothing."""

