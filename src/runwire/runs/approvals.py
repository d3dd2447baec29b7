"""Human approval of tool calls (SPEC 7): the paused state of a run, and deciding.

A run whose model asks for calls that need approval pauses (``waiting``: no slot, no
lease, no task — see :meth:`RunLifecycle.wait`) with a :class:`PausedState`. Decisions
come over the WebSocket (``approve_tool``) and REST (``POST /api/runs/{id}/approvals``),
both through :meth:`ApprovalDesk.decide`; the timeout sweep denies what nobody decided
(:meth:`ApprovalDesk.sweep`). The decision that leaves nothing open queues the run again,
and the node that claims it resumes it (:mod:`runwire.runs.executor`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import pydantic

from runwire.auth import Principal
from runwire.errors import Conflict, InvalidArguments, NotFound
from runwire.metrics import Metrics
from runwire.protocol.envelope import utc_now
from runwire.protocol.frames import ApprovalBody
from runwire.runs.lifecycle import RunLifecycle
from runwire.store.approvals import Verdict

log = logging.getLogger(__name__)

TIMED_OUT = "timed out"


class ArgsValidator(Protocol):
    def validate_tool_args(self, tool_name: str, args: dict[str, Any]) -> dict[str, Any]: ...


@dataclass(slots=True)
class PausedState:
    """What a paused run keeps in ``runs.paused_state`` to resume on any node.

    Attributes:
        messages: pydantic-ai's messages at the pause (JSON); the first `history_len` are
            the thread's history given to the run, the rest are the run's own.
        assistant_id: the answer's message id (its deltas so far carry it).
        text: the answer streamed so far.
        usage: token usage and tool calls so far.
        elapsed: seconds of execution so far (the execution timeout stops while waiting).
        pending: the ids of the calls of this pause.
    """

    messages: str
    history_len: int
    assistant_id: str
    text: str
    usage: dict[str, int] = field(default_factory=dict)
    elapsed: float = 0.0
    pending: list[str] = field(default_factory=list)

    def dump(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def load(cls, data: str) -> PausedState:
        return cls(**json.loads(data))


@dataclass(frozen=True, slots=True)
class Decided:
    """A stored decision; `resumed`: it was the last open call, the run is queued again."""

    run_id: str
    tool_call_id: str
    approved: bool
    reason: str | None
    args: Mapping[str, Any] | None
    resumed: bool

    def payload(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "tool_call_id": self.tool_call_id,
                "approved": self.approved, "reason": self.reason,
                "args": dict(self.args) if self.args is not None else None,
                "resumed": self.resumed}


class ApprovalDesk:
    """Takes decisions on calls waiting for approval (one per node, built by the run
    service). `on_resumable` is called when a run is queued again (wake the claimer)."""

    def __init__(self, *, lifecycle: RunLifecycle, validator: ArgsValidator, metrics: Metrics,
                 node_id: str, on_resumable: Callable[[], None]) -> None:
        self._lifecycle = lifecycle
        self._validator = validator
        self._metrics = metrics
        self._node = node_id
        self._on_resumable = on_resumable
        self.waiting = 0  # waiting runs of the deployment, as of the last sweep

    async def decide(self, principal: Principal, run_id: str, body: ApprovalBody) -> Decided:
        """The user's decision on one call of one of their runs.

        Raises:
            NotFound: no such run or call, or another user's.
            Conflict: the call was decided already, or its run is no longer waiting.
            InvalidArguments: `body.args` do not fit the tool's schema (nothing decided).
            StorageUnavailable: the database failed; nothing decided.
        """
        row = await self._lifecycle.approval(run_id, body.tool_call_id)
        if row is None or row.user_id != principal.user_id:
            raise NotFound(f"no call {body.tool_call_id} waiting for approval in run {run_id}")
        if row.decided_at is not None:
            raise Conflict(f"call {body.tool_call_id} was already "
                           f"{'approved' if row.approved else 'denied'}")
        args: Mapping[str, Any] | None = None
        if body.approved:
            args = dict(row.tool_args)
            if body.args is not None:
                try:
                    self._validator.validate_tool_args(row.tool_name, dict(body.args))
                except pydantic.ValidationError as exc:
                    raise InvalidArguments(_problems(row.tool_name, exc)) from None
                except KeyError:
                    raise InvalidArguments(f"tool {row.tool_name} is not registered") from None
                args = dict(body.args)
        reason = body.reason.strip() if body.reason and body.reason.strip() else None
        verdict = await self._lifecycle.decide(row, approved=body.approved, reason=reason,
                                               args=args)
        outcome = "approved" if body.approved else "denied"
        return self._settled(verdict, row.run_id, body.tool_call_id, body.approved, reason,
                             args, outcome, (utc_now() - row.created_at).total_seconds())

    def _settled(self, verdict: Verdict, run_id: str, call_id: str, approved: bool,
                 reason: str | None, args: Mapping[str, Any] | None, outcome: str,
                 latency: float) -> Decided:
        if verdict == "not_found":
            raise NotFound(f"no call {call_id} waiting for approval in run {run_id}")
        if verdict == "conflict":
            raise Conflict(f"call {call_id} was already decided, or run {run_id} is no "
                           "longer waiting")
        self._metrics.approval_decisions.labels(self._node, outcome).inc()
        self._metrics.approval_latency.labels(self._node, outcome).observe(latency)
        log.info("approval %s run=%s call=%s", outcome, run_id, call_id)
        if verdict == "resumable":
            self._on_resumable()
        return Decided(run_id, call_id, approved, reason, args, verdict == "resumable")

    async def sweep(self) -> int:
        """Deny, with reason "timed out", the calls nobody decided in time (each once,
        whichever node sweeps first); refresh the waiting-runs gauge. Returns how many."""
        denied = 0
        for row in await self._lifecycle.expired_approvals():
            verdict = await self._lifecycle.decide(row, approved=False, reason=TIMED_OUT,
                                                   args=None, expired_before=utc_now())
            if verdict in ("decided", "resumable"):
                denied += 1
                self._settled(verdict, row.run_id, row.tool_call_id, False, TIMED_OUT, None,
                              "timed_out", (utc_now() - row.created_at).total_seconds())
        self.waiting = await self._lifecycle.waiting_count()
        return denied


def _problems(tool_name: str, exc: pydantic.ValidationError) -> str:
    problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'arguments'}: {err['msg']}"
                         for err in exc.errors(include_url=False))
    return f"invalid arguments for {tool_name}: {problems}"

