"""The agent side of human approval (SPEC 7), on pydantic-ai's deferred tools.

A supervisor's agent runs with ``output_type=[str, DeferredToolRequests]``: when the model
calls a tool that ``requires_approval`` (see :mod:`runwire.agents.toolset`), pydantic-ai
runs the turn's other calls and ends the agent run with ``DeferredToolRequests``; the run
then pauses (:func:`pending_calls`). Resuming is a new agent run on the stored messages
with ``DeferredToolResults`` (:func:`deferred_results`): ``ToolApproved`` with the
approved — possibly edited — arguments, or ``ToolDenied`` whose message
(``denied: <reason>``) the model receives as the call's result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic_ai import DeferredToolRequests, DeferredToolResults, ToolApproved, ToolDenied

from runwire.agents.dispatcher import ToolCall, ToolDispatcher
from runwire.agents.registry import AgentRegistry
from runwire.agents.scope import ApprovalDecision, ApprovalRequest
from runwire.errors import AgentFailure


def denial_message(reason: str | None) -> str:
    """What the model (and the call's ``tool_completed``) is told of a denied call."""
    return f"denied: {reason.strip()}" if reason and reason.strip() else "denied by the user"


def pending_calls(requests: DeferredToolRequests) -> tuple[ApprovalRequest, ...]:
    """The calls a paused run waits for.

    Raises:
        AgentFailure: a tool deferred its call for external execution, which runwire
            does not offer (only approvals).
    """
    if requests.calls:
        names = ", ".join(sorted({call.tool_name for call in requests.calls}))
        raise AgentFailure("tool_error", f"tools deferred for external execution are not "
                           f"supported: {names}", retryable=False)
    return tuple(ApprovalRequest(call.tool_call_id, call.tool_name, call.args_as_dict())
                 for call in requests.approvals)


async def deferred_results(decisions: Sequence[ApprovalDecision],
                           dispatcher: ToolDispatcher) -> DeferredToolResults:
    """pydantic-ai's results for `decisions`; a denied call is reported here (its
    ``tool_executing`` / ``tool_completed`` with the denial), an approved one when it runs."""
    approvals: dict[str, bool | ToolApproved | ToolDenied] = {}
    for decision in decisions:
        if decision.approved:
            approvals[decision.tool_call_id] = ToolApproved(override_args=dict(decision.args))
        else:
            message = denial_message(decision.reason)
            await dispatcher.denied(ToolCall(decision.tool_name, decision.args,
                                             decision.tool_call_id), message)
            approvals[decision.tool_call_id] = ToolDenied(message)
    return DeferredToolResults(approvals=approvals)


def validate_args(registry: AgentRegistry, tool_name: str,
                  args: dict[str, Any]) -> dict[str, Any]:
    """`args` checked against `tool_name`'s schema exactly like the model's arguments.

    Raises:
        KeyError: no such tool.
        pydantic.ValidationError: the arguments do not fit the schema.
    """
    from pydantic_ai import Tool

    spec = registry.get_tool(tool_name)
    tool = Tool(spec.function, name=spec.name)
    validated: dict[str, Any] = tool.function_schema.validator.validate_python(args)
    return validated
