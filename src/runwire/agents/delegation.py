"""Sub-agents: an agent's delegates are offered to it as tools of the same name.

Calling one runs the sub-agent inside the same run and RunScope (same user, scopes and
emitter), one level deeper: its thinking, tool calls, ``partial_result`` deltas (under its
own assistant message id) and a final ``agent_response`` carry **its own** ``agent_name``.
It never emits ``agent_started`` or a terminal event: its work ends with the
``tool_completed`` of the call that delegated to it, whose result is its answer. Token
usage is added to the run's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Final

from pydantic_ai import RunContext
from pydantic_ai.usage import RunUsage

from runwire.agents.registry import AgentRegistry, AgentSpec, ToolSpec
from runwire.agents.scope import RunScope
from runwire.ids import MessageId, new_id

MAX_DEPTH: Final = 3
DELEGATION_TIMEOUT: Final = 300.0  # the run's own execution timeout still applies

RunSubAgent = Callable[[AgentSpec, RunScope, str, RunUsage], Awaitable[str]]


class DelegationTooDeep(Exception):
    """Sub-agents delegating to sub-agents past :data:`MAX_DEPTH`."""


def sub_scope(scope: RunScope, agent: str, request: str) -> RunScope:
    """The scope of a delegated sub-agent: same run, user and sink; its own answer id."""
    if scope.depth + 1 > MAX_DEPTH:
        raise DelegationTooDeep(f"delegation deeper than {MAX_DEPTH} levels")
    return dataclasses.replace(scope, agent_name=agent, user_message=request, history=(),
                               assistant_message_id=MessageId(new_id()), depth=scope.depth + 1)


def delegation_tool(spec: AgentSpec, run: RunSubAgent) -> ToolSpec:
    """The tool through which a parent agent delegates to `spec`."""

    async def delegate(ctx: RunContext[RunScope], request: str) -> str:
        return await run(spec, ctx.deps, request, ctx.usage)

    return ToolSpec(
        name=spec.name, function=delegate, timeout=DELEGATION_TIMEOUT,
        description=f"Delegate to the {spec.name} agent ({spec.description}). Pass the "
                    "request in plain words; it answers in text.")


def register_delegation_tools(registry: AgentRegistry, run: RunSubAgent) -> None:
    """Add a delegation tool for every agent some agent delegates to (at start-up)."""
    delegates = {name for agent in registry.agents() for name in agent.delegates}
    for name in sorted(delegates):
        registry.add_tool(delegation_tool(registry.get_agent(name), run), replace=True)
