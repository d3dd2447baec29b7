"""Tool calls waiting for the user's approval (SPEC 7): the ``run_approvals`` table and the
``waiting`` state of a run, as Core statements on a transaction's connection.

A run that reaches calls needing approval is *paused*: its row goes ``running`` →
``waiting`` (no node, no lease) with its paused state, and each call gets a row here. A
decision is one conditional update of the call's row (``decided_at IS NULL``: the first
wins); the decision that leaves no call of the run undecided moves the run back to
``queued``, from where any node claims and resumes it. Every decision first touches the
run's row (``UPDATE … WHERE status = 'waiting'``), which serialises the deciders of one run
on PostgreSQL, so two calls decided at once on two nodes cannot both think the other one is
still open.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, bindparam, func, insert, select, update

from runwire.agents.scope import ApprovalRequest
from runwire.protocol.envelope import utc_now
from runwire.store.models import Run, RunApproval

Verdict = Literal["decided", "resumable", "not_found", "conflict"]
"""How a decision went: stored (other calls still open) / stored and the run is queued to
resume / no such call of this user's / the call was already decided or the run moved on."""


@dataclass(frozen=True, slots=True)
class ApprovalRow:
    """A call's row: what was asked and, once decided, the decision."""

    run_id: str
    thread_id: str
    user_id: str
    agent: str
    tool_call_id: str
    tool_name: str
    tool_args: Mapping[str, Any]
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    approved: bool | None
    reason: str | None
    final_args: Mapping[str, Any] | None


_ROW_COLUMNS = (RunApproval.run_id, Run.thread_id, RunApproval.user_id, RunApproval.agent,
                RunApproval.tool_call_id, RunApproval.tool_name, RunApproval.tool_args,
                RunApproval.created_at, RunApproval.expires_at, RunApproval.decided_at,
                RunApproval.approved, RunApproval.reason, RunApproval.final_args)


def _row(r: Any) -> ApprovalRow:
    return ApprovalRow(r.run_id, r.thread_id, r.user_id, r.agent, r.tool_call_id, r.tool_name,
                       r.tool_args, r.created_at, r.expires_at, r.decided_at, r.approved,
                       r.reason, r.final_args)


@functools.cache
def _statements() -> dict[str, Any]:
    return {
        "pause": update(Run).where(
            Run.id == bindparam("run"), Run.status == "running",
            Run.node_id == bindparam("node"), Run.cancel_requested.is_(False)),
        "insert": insert(RunApproval),
        # Takes the run's row lock; matches only while the run waits (see the docstring).
        "hold": update(Run).where(Run.id == bindparam("run"), Run.user_id == bindparam("user"),
                                  Run.status == "waiting").values(status="waiting"),
        "decide": update(RunApproval).where(
            RunApproval.run_id == bindparam("run"),
            RunApproval.tool_call_id == bindparam("call"),
            RunApproval.user_id == bindparam("user"), RunApproval.decided_at.is_(None)),
        "open": select(func.count()).select_from(RunApproval).where(
            RunApproval.run_id == bindparam("run"), RunApproval.decided_at.is_(None)),
        "requeue": update(Run).where(Run.id == bindparam("run"), Run.status == "waiting")
        .values(status="queued"),
        "one": select(*_ROW_COLUMNS).join(Run, Run.id == RunApproval.run_id).where(
            RunApproval.run_id == bindparam("run"),
            RunApproval.tool_call_id == bindparam("call")),
    }


def pause(conn: Connection, *, run_id: str, user_id: str, agent: str, node_id: str,
          state: str, calls: Sequence[ApprovalRequest], expires_at: datetime) -> bool:
    """``running`` (held by `node_id`, no stop requested) → ``waiting`` with `state`, and a
    row per call. False (nothing written) when the run moved on or a stop was requested."""
    st = _statements()
    moved = conn.execute(st["pause"].values(status="waiting", node_id=None, lease_until=None,
                                            paused_state=state),
                         {"run": run_id, "node": node_id})
    if not moved.rowcount:
        return False
    now = utc_now()
    conn.execute(st["insert"], [
        {"run_id": run_id, "tool_call_id": call.tool_call_id, "user_id": user_id,
         "agent": agent, "tool_name": call.tool_name, "tool_args": dict(call.args),
         "created_at": now, "expires_at": expires_at} for call in calls])
    return True


def get(conn: Connection, run_id: str, tool_call_id: str) -> ApprovalRow | None:
    found = conn.execute(_statements()["one"], {"run": run_id, "call": tool_call_id}).first()
    return None if found is None else _row(found)


def decide(conn: Connection, *, run_id: str, user_id: str, tool_call_id: str, approved: bool,
           reason: str | None, final_args: Mapping[str, Any] | None,
           expired_before: datetime | None = None) -> Verdict:
    """Store the first decision on a call of a waiting run (see the module docstring).

    `expired_before`: decide only if the call expired before then (the timeout sweep).
    """
    st = _statements()
    params = {"run": run_id, "user": user_id, "call": tool_call_id}
    if not conn.execute(st["hold"], params).rowcount:
        return "conflict" if _exists(conn, params) else "not_found"
    statement = st["decide"]
    if expired_before is not None:
        statement = statement.where(RunApproval.expires_at < expired_before)
    decided = conn.execute(statement.values(
        decided_at=utc_now(), approved=approved, reason=reason,
        final_args=dict(final_args) if final_args is not None else None), params)
    if not decided.rowcount:
        return "conflict" if _exists(conn, params) else "not_found"
    if conn.execute(st["open"], {"run": run_id}).scalar_one():
        return "decided"
    conn.execute(st["requeue"], {"run": run_id})
    return "resumable"


def _exists(conn: Connection, params: Mapping[str, str]) -> bool:
    row = get(conn, params["run"], params["call"])
    return row is not None and row.user_id == params["user"]


def decisions(conn: Connection, run_id: str, tool_call_ids: Sequence[str]) -> list[ApprovalRow]:
    """The rows of `tool_call_ids` of a run (the calls of its latest pause)."""
    if not tool_call_ids:
        return []
    rows = conn.execute(select(*_ROW_COLUMNS).join(Run, Run.id == RunApproval.run_id).where(
        RunApproval.run_id == run_id, RunApproval.tool_call_id.in_(list(tool_call_ids))))
    return [_row(r) for r in rows]


def expired(conn: Connection, *, now: datetime | None = None,
            limit: int = 100) -> list[ApprovalRow]:
    """Undecided calls of waiting runs whose time ran out."""
    rows = conn.execute(
        select(*_ROW_COLUMNS).join(Run, Run.id == RunApproval.run_id)
        .where(RunApproval.decided_at.is_(None), RunApproval.expires_at < (now or utc_now()),
               Run.status == "waiting")
        .order_by(RunApproval.expires_at).limit(limit))
    return [_row(r) for r in rows]


def pending(conn: Connection, user_id: str, *, thread_id: str | None = None,
            limit: int = 500) -> list[ApprovalRow]:
    """The user's undecided calls of waiting runs, oldest first."""
    query = (select(*_ROW_COLUMNS).join(Run, Run.id == RunApproval.run_id)
             .where(RunApproval.user_id == user_id, RunApproval.decided_at.is_(None),
                    Run.status == "waiting"))
    if thread_id is not None:
        query = query.where(Run.thread_id == thread_id)
    rows = conn.execute(query.order_by(RunApproval.created_at).limit(limit))
    return [_row(r) for r in rows]


def waiting_count(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(Run)
                            .where(Run.status == "waiting")).scalar() or 0)
