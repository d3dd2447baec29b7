"""pydantic-ai's side of the dispatcher: a toolset that sends every call through it.

pydantic-ai validates a call's arguments before handing it to a toolset and answers an
invalid call with a retry prompt of its own, which would skip ``tool_executing`` /
``tool_completed``. So :class:`DispatchingToolset` lists the tools with a pass-through
validator and validates inside the dispatched call: an invalid call is reported like any
other failed call. A :class:`~runwire.agents.dispatcher.ToolErrored` outcome is raised as
pydantic-ai's ``ToolFailed``, which the model receives as that call's error result (no
retry budget used, the run goes on).

A tool that ``requires_approval`` (SPEC 7) is not dispatched until the user approved the
call: its first call raises pydantic-ai's ``ApprovalRequired`` (the run then ends its turn
with ``DeferredToolRequests`` and pauses), and the approved call — pydantic-ai passes it
in again with ``ctx.tool_call_approved`` and the approved (possibly edited) arguments —
goes through the dispatcher like any other, so its ``tool_executing`` / ``tool_completed``
are emitted only when it actually runs. A call with invalid arguments is not put to the
user: it fails at once like any invalid call. A sub-agent cannot pause its supervisor's
run, so there such a call fails with an error saying so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from pydantic import ValidationError
from pydantic_ai import RunContext, Tool
from pydantic_ai.exceptions import ApprovalRequired, ToolFailed
from pydantic_ai.toolsets import AbstractToolset, FunctionToolset, WrapperToolset
from pydantic_ai.toolsets.abstract import ToolsetTool
from pydantic_core import SchemaValidator, core_schema

from runwire.agents.dispatcher import ToolCall, ToolDispatcher, ToolErrored
from runwire.agents.registry import ToolSpec
from runwire.agents.scope import RunScope
from runwire.agents.tools import ToolError

# Any JSON object; the real validation happens in the dispatched call.
_PASS_THROUGH: Final = SchemaValidator(core_schema.dict_schema(
    keys_schema=core_schema.str_schema(), values_schema=core_schema.any_schema()))


@dataclass(kw_only=True)
class _DispatchedTool(ToolsetTool[RunScope]):
    inner: ToolsetTool[RunScope]


@dataclass
class DispatchingToolset(WrapperToolset[RunScope]):
    """Routes each call of the wrapped toolset through `dispatcher`.

    Per-tool ``args_validator_func`` hooks of the wrapped tools are not run (runwire's
    :class:`~runwire.agents.registry.ToolSpec` has none).
    """

    dispatcher: ToolDispatcher

    async def get_tools(self, ctx: RunContext[RunScope]) -> dict[str, ToolsetTool[RunScope]]:
        tools = await self.wrapped.get_tools(ctx)
        return {
            name: _DispatchedTool(
                toolset=self, tool_def=tool.tool_def, max_retries=tool.max_retries,
                args_validator=_PASS_THROUGH, inner=tool,
            )
            for name, tool in tools.items()
        }

    async def call_tool(self, name: str, tool_args: dict[str, Any], ctx: RunContext[RunScope],
                        tool: ToolsetTool[RunScope]) -> Any:
        inner = tool.inner if isinstance(tool, _DispatchedTool) else tool
        needs_approval = (self.dispatcher.requires_approval(name)
                          and not ctx.tool_call_approved)
        if needs_approval and ctx.deps.depth == 0:
            try:
                inner.args_validator.validate_python(tool_args, context=ctx.validation_context)
            except ValidationError:
                pass  # invalid: fails below like any invalid call, nothing to approve
            else:
                raise ApprovalRequired

        async def invoke() -> Any:
            validated = inner.args_validator.validate_python(
                tool_args, context=ctx.validation_context)
            if needs_approval:  # valid, but a sub-agent's: it cannot pause the run
                raise ToolError(f"{name} needs the user's approval, which only the "
                                "supervisor agent can ask for; ask the user to request it "
                                "directly")
            return await self.wrapped.call_tool(name, validated, ctx, inner)

        call = ToolCall(tool_name=name, args=tool_args, tool_call_id=ctx.tool_call_id or "")
        outcome = await self.dispatcher.dispatch(call, invoke)
        if isinstance(outcome, ToolErrored):
            raise ToolFailed(outcome.message)
        return outcome.value


def function_toolset(specs: tuple[ToolSpec, ...]) -> FunctionToolset[RunScope]:
    """`specs` as a pydantic-ai toolset (argument schemas built once; share it freely)."""
    return FunctionToolset([
        Tool(spec.function, name=spec.name, description=spec.description, max_retries=1)
        for spec in specs
    ])


def dispatching_toolset(tools: FunctionToolset[RunScope],
                        dispatcher: ToolDispatcher) -> AbstractToolset[RunScope]:
    """`tools` offered to the model, every call going through `dispatcher` (one run's)."""
    return DispatchingToolset(wrapped=tools, dispatcher=dispatcher)
