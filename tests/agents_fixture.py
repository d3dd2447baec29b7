"""A user agents module for tests (`RUNWIRE_AGENTS=tests.agents_fixture:register`)."""

from __future__ import annotations

from dataclasses import replace

from runwire.agents.registry import AgentRegistry, ToolSpec


async def big_output(size: int) -> dict[str, object]:
    """Returns a deterministic text of `size` characters (multi-byte ones included)."""
    pattern = "runwire é€ 😀 "
    text = (pattern * (size // len(pattern) + 1))[:size]
    return {"size": size, "text": text}


async def flaky(note: str = "") -> str:
    """Always fails (for the circuit breaker)."""
    raise RuntimeError("the backend behind this tool is down")


async def limited(note: str = "") -> str:
    return f"ok {note}".strip()


def register(registry: AgentRegistry) -> None:
    registry.add_tool(ToolSpec(name="big_output", function=big_output,
                               description="Return a large deterministic text."))
    registry.add_tool(ToolSpec(name="flaky", function=flaky, description="Always fails."))
    registry.add_tool(ToolSpec(name="limited", function=limited, rate_limit="2/minute",
                               description="Allowed twice a minute per user."))
    supervisor = registry.get_agent("supervisor")
    registry.add_agent(replace(supervisor, tools=(*supervisor.tools, "big_output", "flaky",
                                                  "limited")), replace=True)


def register_notifier(registry: AgentRegistry) -> None:
    """A sub-agent whose only tool needs approval (which a sub-agent cannot ask for)."""
    from runwire.agents.registry import AgentSpec

    registry.add_agent(AgentSpec(name="notifier", description="Sends notifications.",
                                 instructions="Send what you are asked to.",
                                 tools=("send_notification",)))
    supervisor = registry.get_agent("supervisor")
    registry.add_agent(replace(supervisor, delegates=(*supervisor.delegates, "notifier")),
                       replace=True)
