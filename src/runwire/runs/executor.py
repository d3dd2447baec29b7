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
from collections.abc import Mapping
from dataclasses import replace
from datetime import timedelta
from typing import Any, Protocol

from runwire.agents.history import thread_history
from runwire.agents.scope import (
    AgentOutcome,
    ApprovalDecision,
    HistoryMessage,
    MessageSearch,
    Resumption,
    RunScope,
)
from runwire.errors import AgentFailure, LeaseLost, NotFound, StorageUnavailable
from runwire.ids import MessageId, RunId, ThreadId, UserId, new_id
from runwire.metrics import Metrics
from runwire.protocol.codes import RunStatus
from runwire.protocol.envelope import utc_now
from runwire.runs.approvals import PausedState
from runwire.runs.lifecycle import AlreadyEnded, Ending, RunLifecycle
from runwire.runs.scheduler import RunTicket
from runwire.settings import Settings
from runwire.store import runqueue
from runwire.store.db import Database
from runwire.store.runqueue import RunRecord
from runwire.tracing import Tracing

log = logging.getLogger(__name__)

END_RETRY_SECONDS = 120.0


class AgentExecutor(Protocol):
    """What the run service needs of the agent runtime."""

    async def execute(self, scope: RunScope) -> AgentOutcome: ...

    def has_agent(self, name: str) -> bool: ...

    def validate_tool_args(self, tool_name: str, args: dict[str, Any]) -> dict[str, Any]: ...


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
        assistant_id = MessageId(new_id())
        outcome: AgentOutcome | None = None
        failure: AgentFailure | None = None
        status: RunStatus = "completed"
        paused: PausedState | None = None
        limit = self._settings.agent_execution_timeout
        try:
            if ticket.gate is not None:
                # its agent_started goes out first (RunLifecycle.claim); shielded: the gate
                # is shared by the runs of one claim round, a stop cancels only this one
                await asyncio.shield(ticket.gate)
            resume: Resumption | None = None
            if ticket.run is not None and ticket.run.paused:
                paused, resume = await self._resumption(ticket.run)
                # The execution timeout stopped while the run waited: it goes on from there.
                started -= paused.elapsed
                assistant_id = MessageId(paused.assistant_id)
            log.info("run %s agent=%s", "resumed" if paused else "started", ticket.agent)
            scope = await self._scope(ticket, assistant_id, resume)
            async with asyncio.timeout(max(limit - (time.monotonic() - started), 0.0)
                                       ) as deadline:
                outcome = await self._runtime.execute(scope)
            if paused is not None:
                outcome = replace(outcome, usage=_add(paused.usage, outcome.usage))
            if outcome.pending:
                if await self._pause(ticket, outcome, started, assistant_id):
                    return
                status, outcome = "cancelled", replace(outcome, pending=())
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
                    "timeout", f"the run exceeded {limit:g} s", retryable=True)
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

    async def _resumption(self, run: RunRecord) -> tuple[PausedState, Resumption]:
        """A paused run's state and the decisions on the calls it waited for."""
        run_id = run.id
        assert run.paused_state is not None
        state = PausedState.load(run.paused_state)
        rows = {row.tool_call_id: row for row in
                await self._lifecycle.decisions(run_id, state.pending)}
        decisions = []
        for call_id in state.pending:
            row = rows.get(call_id)
            if row is None:  # cannot happen (one transaction stored both); deny, say why
                log.error("run %s resumed without the call %s", run_id, call_id)
                continue
            approved = bool(row.approved)
            decisions.append(ApprovalDecision(
                call_id, row.tool_name, approved, row.reason,
                (row.final_args or row.tool_args) if approved else row.tool_args))
        return state, Resumption(state.messages, state.history_len, state.text, decisions)

    async def _pause(self, ticket: RunTicket, outcome: AgentOutcome, started: float,
                     assistant_id: str) -> bool:
        """Pause the run for its calls that need approval (SPEC 7). False: a stop came
        first (the run is still this node's: end it as cancelled)."""
        assert outcome.paused_messages is not None
        state = PausedState(
            messages=outcome.paused_messages, history_len=outcome.history_len,
            assistant_id=assistant_id, text=outcome.content, usage=dict(outcome.usage),
            elapsed=time.monotonic() - started,
            pending=[call.tool_call_id for call in outcome.pending])
        ticket.ending = True  # from here, the conditional pause decides (not a cancel)
        expires_at = utc_now() + timedelta(seconds=self._settings.approval_timeout)
        try:
            await self._lifecycle.wait(
                ticket.emitter, ticket.agent, state=state.dump(), expires_at=expires_at,
                calls=outcome.pending)
        except AlreadyEnded:
            return False
        except (StorageUnavailable, LeaseLost, NotFound):
            log.error("could not pause run %s (its lease expiry ends it)", ticket.run_id)
            ticket.emitter.aclose()
            return True
        log.info("run paused: %d call(s) wait for approval", len(outcome.pending))
        return True

    async def _scope(self, ticket: RunTicket, assistant_id: MessageId,
                     resume: Resumption | None = None) -> RunScope:
        run = ticket.run
        if run is None:
            raise NotFound("run vanished")
        request = run.request or {}
        found = await self._db.query(
            lambda conn: runqueue.inputs(conn, run, history_limit=self._settings.max_history_size),
            small=True)
        if found is None:
            raise NotFound("user message vanished")
        rows = [HistoryMessage("assistant" if m.role == "assistant" else "user", m.content,
                               run_id=m.run_id) for m in found.earlier]
        return RunScope(
            user_id=UserId(ticket.user_id), thread_id=ThreadId(run.thread_id),
            run_id=RunId(run.id), agent_name=run.agent, user_message=found.prompt,
            user_message_id=MessageId(run.message_id), assistant_message_id=assistant_id,
            events=ticket.emitter, search=self._search,
            scopes=frozenset(request.get("scopes") or ()),
            history=thread_history(rows, found.stored),
            context=request.get("context") or {}, settings=request.get("settings") or {},
            resume=resume,
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
            emitter.streamed(assistant_id) if assistant_id else "")
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


def _add(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    """Usage counts of a run's parts (before and after a pause) added up."""
    return {key: a.get(key, 0) + b.get(key, 0) for key in {*a, *b}}
