"""``/api/runs/{run_id}/approvals`` (SPEC 7): decide a tool call waiting for approval, and
list what waits.

``POST`` goes through the same :meth:`RunService.decide` as the ``approve_tool`` frame:
200 with the stored decision; 404 for an unknown run or call, or another user's; 409
``conflict`` when the call was decided already (the first decision wins); 422
``validation_error`` for edited arguments that do not fit the tool (nothing decided).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from runwire.api.deps import Api, User, Writer
from runwire.api.errors import problem_responses
from runwire.api.params import RunId
from runwire.errors import NotFound
from runwire.protocol.frames import ApprovalBody, Id
from runwire.store import approvals

router = APIRouter(prefix="/api", tags=["approvals"],
                   responses=problem_responses(400, 401, 404, 409, 422, 429, 503))


class ApprovalIn(ApprovalBody):
    """`approve_tool`'s payload; `run_id`, when given, must be the path's."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    run_id: Id | None = None


class DecisionOut(BaseModel):
    run_id: str
    tool_call_id: str
    approved: bool
    reason: str | None
    args: dict[str, Any] | None
    resumed: bool


class PendingOut(BaseModel):
    run_id: str
    thread_id: str
    agent_name: str
    tool_call_id: str
    tool_name: str
    tool_args: dict[str, Any]
    created_at: datetime
    expires_at: datetime


@router.post("/runs/{run_id}/approvals", response_model=DecisionOut)
async def decide(api: Api, user: Writer, run_id: RunId, body: ApprovalIn) -> DecisionOut:
    """Approve (optionally with edited `args`) or deny (with an optional `reason`) one
    call; the run resumes, on any node, once every call it waits for is decided."""
    if body.run_id is not None and body.run_id != run_id:
        raise NotFound(f"run {body.run_id} is not run {run_id}")
    decided = await api.runs.decide(user, run_id, ApprovalBody.model_validate(
        body.model_dump(exclude={"run_id"})))
    return DecisionOut(**decided.payload())


@router.get("/runs/{run_id}/approvals", response_model=list[PendingOut])
async def pending_of_run(api: Api, user: User, run_id: RunId) -> list[PendingOut]:
    """The calls of the run that still wait for a decision (empty when none)."""
    await api.reader.run(user.user_id, run_id)  # 404 for another user's run
    rows = await api.runs.lifecycle.pending(user.user_id)
    return [_out(row) for row in rows if row.run_id == run_id]


@router.get("/approvals", response_model=list[PendingOut])
async def pending(api: Api, user: User, thread_id: Id | None = None) -> list[PendingOut]:
    """Every call of the user's runs that waits for a decision, oldest first."""
    return [_out(row) for row in await api.runs.lifecycle.pending(user.user_id,
                                                                  thread_id=thread_id)]


def _out(row: approvals.ApprovalRow) -> PendingOut:
    return PendingOut(run_id=row.run_id, thread_id=row.thread_id, agent_name=row.agent,
                      tool_call_id=row.tool_call_id, tool_name=row.tool_name,
                      tool_args=dict(row.tool_args), created_at=row.created_at,
                      expires_at=row.expires_at)
