"""Executing one claimed run and storing how it ended.

Transactions: start = ``agent_started`` (the claim already moved the row to running);
end = assistant message + final run status (with a completed run's pydantic-ai messages, the
history of the thread's later runs) + ``agent_response`` + the terminal event.
Every run ends with exactly one terminal event; the conditional status update is the
fence that keeps a node that lost its lease from writing one too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from runwire.agents.history import thread_history
from runwire.agents.scope import AgentOutcome, HistoryMessage, MessageSearch, RunScope
from runwire.errors import AgentFailure, LeaseLost, NotFound, StorageUnavailable
from runwire.ids import MessageId, RunId, ThreadId, UserId, new_id
from runwire.metrics import Metrics
from runwire.protocol.codes import RunStatus
from runwire.runs.lifecycle import AlreadyEnded, Ending, RunLifecycle
from runwire.runs.scheduler import RunTicket
from runwire.settings import Settings
from runwire.store import repo
from runwire.store.db import Database
from runwire.tracing import Tracing

log = logging.getLogger(__name__)

END_RETRY_SECONDS = 120.0


class AgentExecutor(Protocol):
    """What the run service needs of the agent runtime."""

    async def execute(self, scope: RunScope) -> AgentOutcome: ...

    def has_agent(self, name: str) -> bool: ...


class RunExecutor:
    """Runs claimed tickets through the agent runtime and ends them."""

    def __init__(self, *, settings: Settings, db: Database, lifecycle: RunLifecycle,
                 runtime: AgentExecutor, metrics: Metrics, search: MessageSearch,
                 tracing: Tracing | None = None) -> None:
        self._settings = settings
        self._lifecycle = lifecycle
        self._tracing = tracing or Tracing(None, node_id=settings.node_id)
        self._db = db
        self._runtime = runtime
        self._metrics = metrics
        self._search = search

    async def execute(self, ticket: RunTicket) -> None:
        with self._tracing.run_span(ticket.run_id, ticket.thread_id, ticket.agent):
            await self._execute(ticket)

    async def _execute(self, ticket: RunTicket) -> None:
        started = time.monotonic()
        node = self._settings.node_id
        if ticket.received_at:
            self._metrics.queue_wait.labels(node).observe(started - ticket.received_at)
        self._lifecycle.start(ticket.emitter)
        if ticket.received_at:
            self._metrics.start_latency.labels(node).observe(
                time.monotonic() - ticket.received_at)
        log.info("run started agent=%s", ticket.agent)
        assistant_id = MessageId(new_id())
        outcome: AgentOutcome | None = None
        failure: AgentFailure | None = None
        status: RunStatus = "completed"
        try:
            scope = await self._scope(ticket, assistant_id)
            async with asyncio.timeout(self._settings.agent_execution_timeout) as deadline:
                outcome = await self._runtime.execute(scope)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            if ticket.cancel_reason == "shutdown":
                status, failure = "failed", AgentFailure(
                    "internal", "the server shut down before the run finished", retryable=True)
            elif ticket.cancel_reason == "lease_lost":
                ticket.emitter.aclose()  # another node ends it; write nothing
                return
            else:
                status = "cancelled"
        except LeaseLost:
            ticket.emitter.aclose()
            return
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
            log.exception("agent run crashed")
            status, failure = "failed", AgentFailure("internal", "internal error", retryable=False)
        await self.end(ticket, status, failure, started=started, outcome=outcome,
                       assistant_id=assistant_id)

    async def _scope(self, ticket: RunTicket, assistant_id: MessageId) -> RunScope:
        run = ticket.run
        if run is None:
            raise NotFound("run vanished")
        request = run.request or {}
        async with self._db.read() as session:
            user_msg = await repo.find_message(session, ticket.user_id, run.message_id)
            if user_msg is None:
                raise NotFound("user message vanished")
            # The window: the newest max_history_size message rows before this run's own
            # user message (which is the prompt, not history), with their runs' stored
            # pydantic-ai messages.
            earlier = await repo.history(session, ticket.user_id, run.thread_id,
                                         before_id=user_msg.id,
                                         limit=self._settings.max_history_size)
            stored = await repo.run_model_messages(
                session, ticket.user_id, (m.run_id for m in earlier if m.run_id is not None))
        rows = [HistoryMessage("assistant" if m.role == "assistant" else "user", m.content,
                               run_id=m.run_id) for m in earlier]
        return RunScope(
            user_id=UserId(ticket.user_id), thread_id=ThreadId(run.thread_id),
            run_id=RunId(run.id), agent_name=run.agent, user_message=user_msg.content,
            user_message_id=MessageId(run.message_id), assistant_message_id=assistant_id,
            events=ticket.emitter, search=self._search,
            scopes=frozenset(request.get("scopes") or ()),
            history=thread_history(rows, stored),
            context=request.get("context") or {}, settings=request.get("settings") or {},
        )

    async def end(
        self,
        ticket: RunTicket,
        status: RunStatus,
        failure: AgentFailure | None,
        *,
        started: float | None,
        outcome: AgentOutcome | None = None,
        assistant_id: str | None = None,
        queued: bool = False,
    ) -> bool:
        """Store how the run ended (answer + status + terminal event, one transaction with
        its last events). Returns False when the run had already ended (nothing written)."""
        ticket.ending = True
        emitter = ticket.emitter
        content = outcome.content if outcome is not None else (
            emitter.streamed.get(assistant_id, "") if assistant_id else "")
        duration_ms = int((time.monotonic() - started) * 1000) if started is not None else 0
        ending = Ending(status, failure, content, assistant_id,
                        dict(outcome.usage) if outcome is not None else {}, duration_ms,
                        outcome.messages if outcome is not None else None)
        try:
            # The end must be stored: keep retrying through a database outage (bounded;
            # past it the run's lease expires and another node ends it).
            await self._lifecycle.end(emitter, ticket.agent, ending, queued=queued,
                                      retry_for=END_RETRY_SECONDS)
        except AlreadyEnded:
            return False
        except (StorageUnavailable, NotFound, LeaseLost):
            log.error("could not store the end of run %s", ticket.run_id)
            return False
        self._count(status, failure, duration_ms if started is not None else None)
        log.info("run ended status=%s code=%s duration_ms=%d", status,
                 failure.code if failure else "-", duration_ms)
        return True

    def _count(self, status: RunStatus, failure: AgentFailure | None,
               duration_ms: int | None) -> None:
        node = self._settings.node_id
        self._metrics.runs.labels(node, status, failure.code if failure else "").inc()
        if duration_ms is not None:
            self._metrics.run_duration.labels(node, status).observe(duration_ms / 1000)
        if failure is not None and failure.code == "model_error":
            self._metrics.model_errors.labels(node, str(failure.retryable).lower()).inc()
