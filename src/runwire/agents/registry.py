"""Which agents and tools exist: the registry, its builtin contents and user modules.

The registry only *describes* agents and tools; it runs nothing and holds no per-run
state, so one instance (built by :func:`default_registry` and owned by the application)
serves every run. Extension points:

* Users add agents and tools from a module named by ``RUNWIRE_AGENTS=pkg.mod:attr``:
  the attribute is a callable that receives runwire's registry (:func:`load_user_registry`).
* Sub-agents are meant to reach a supervisor as tools: a later ``ToolSpec`` whose
  function runs another registered agent fits :meth:`AgentRegistry.tools_for` unchanged.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import os
import re
import sys
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from runwire.agents.tools import calculator, current_time, search_threads, send_notification
from runwire.errors import ConfigError

ToolFunction = Callable[..., Awaitable[Any]]
"""An ``async def`` tool; see :mod:`runwire.agents.tools` for the calling convention."""

# Provider APIs (OpenAI, Anthropic) accept tool names of this shape.
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")

SUPERVISOR: Final = "supervisor"

SUPERVISOR_INSTRUCTIONS: Final = """\
You are runwire's supervisor agent, answering a user in a chat.
Use the tools when they help: `calculator` for any arithmetic (never compute in your head),
`current_time` for the date or time anywhere (IANA zone names such as 'Asia/Tokyo'),
`search_threads` to look through the user's own earlier conversations,
`send_notification` to notify someone (the user approves each notification before it is sent).
If a tool reports an error, explain it briefly and suggest a fix.
Answer concisely in Markdown."""


def _check_name(kind: str, name: str) -> None:
    if not _NAME.match(name):
        raise ConfigError(
            f"{kind} name {name!r} must be 1-64 letters, digits, '_' or '-', not starting "
            "with a digit or '-'"
        )


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool as the registry knows it.

    Attributes:
        name: what the model calls it (unique in a registry).
        function: the ``async def`` that runs it.
        description: what the model is told the tool does.
        required_scopes: token scopes a run needs to call it (all of them).
        timeout: seconds one call may take; None means the runtime's default.
        rate_limit: optional per-user limit in ``limits`` notation, e.g. ``"10/minute"``.
        requires_approval: each call waits for the user's decision (SPEC 7): the run
            pauses durably and resumes, on any node, once the call is approved (possibly
            with edited arguments) or denied. Also set by ``APPROVAL_TOOLS``.
    """

    name: str
    function: ToolFunction
    description: str
    required_scopes: frozenset[str] = frozenset()
    timeout: float | None = None
    rate_limit: str | None = None
    requires_approval: bool = False

    def __post_init__(self) -> None:
        _check_name("tool", self.name)
        if not inspect.iscoroutinefunction(self.function):
            raise ConfigError(f"tool {self.name!r}: the function must be an `async def`")
        if self.timeout is not None and not self.timeout > 0:
            raise ConfigError(f"tool {self.name!r}: timeout must be positive")
        if not isinstance(self.required_scopes, frozenset):
            raise ConfigError(f"tool {self.name!r}: required_scopes must be a frozenset")


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """An agent as the registry knows it.

    Attributes:
        name: registry name (``send_message``'s ``agent``; events' ``agent_name``).
        description: one line about what the agent is for.
        instructions: the system instructions given to the model.
        tools: names of registered tools the agent may call.
        model: a model name overriding the runtime's (``RUNWIRE_MODEL``) for this agent.
        delegates: names of registered agents it may delegate to; each is offered to it
            as a tool of the same name taking one argument, ``request``.
    """

    name: str
    description: str
    instructions: str
    tools: tuple[str, ...] = ()
    model: str | None = None
    delegates: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_name("agent", self.name)
        if len(set(self.tools)) != len(self.tools):
            raise ConfigError(f"agent {self.name!r}: a tool is listed twice")


@dataclass(slots=True)
class AgentRegistry:
    """Agents and tools by name.

    Mutated only while the application starts (builtins, then the user module); read-only
    afterwards. An agent may only name tools that are already registered.
    """

    _tools: dict[str, ToolSpec] = field(default_factory=dict)
    _agents: dict[str, AgentSpec] = field(default_factory=dict)

    def add_tool(self, spec: ToolSpec, *, replace: bool = False) -> ToolSpec:
        """Register `spec` and return it.

        Raises:
            ConfigError: a tool of that name exists and `replace` is false.
        """
        if spec.name in self._tools and not replace:
            raise ConfigError(f"tool {spec.name!r} is already registered")
        self._tools[spec.name] = spec
        return spec

    def add_agent(self, spec: AgentSpec, *, replace: bool = False) -> AgentSpec:
        """Register `spec` and return it.

        Raises:
            ConfigError: the agent exists and `replace` is false, or it names an unknown tool.
        """
        if spec.name in self._agents and not replace:
            raise ConfigError(f"agent {spec.name!r} is already registered")
        unknown = [name for name in spec.tools if name not in self._tools]
        if unknown:
            raise ConfigError(f"agent {spec.name!r} names unknown tools: {', '.join(unknown)}")
        strangers = [name for name in spec.delegates
                     if name not in self._agents or name == spec.name]
        if strangers:
            raise ConfigError(f"agent {spec.name!r} delegates to unknown agents (or itself): "
                              f"{', '.join(strangers)}")
        clash = [name for name in spec.delegates if name in self._tools]
        if clash:
            raise ConfigError(f"agent {spec.name!r}: delegate names clash with tools: "
                              f"{', '.join(clash)}")
        self._agents[spec.name] = spec
        return spec

    def require_approval(self, names: Iterable[str]) -> None:
        """Mark the tools called `names` ``requires_approval`` (``APPROVAL_TOOLS``).

        Raises:
            ConfigError: a name is not a registered tool.
        """
        names = tuple(names)
        unknown = [name for name in names if name not in self._tools]
        if unknown:
            raise ConfigError(f"RUNWIRE_APPROVAL_TOOLS: no tool named {', '.join(unknown)} "
                              f"(registered: {', '.join(self._tools)})")
        for name in names:
            self._tools[name] = dataclasses.replace(self._tools[name], requires_approval=True)

    def get_tool(self, name: str) -> ToolSpec:
        """The tool called `name`. Raises KeyError if there is none."""
        try:
            return self._tools[name]
        except KeyError:
            raise KeyError(f"no tool named {name!r}") from None

    def get_agent(self, name: str) -> AgentSpec:
        """The agent called `name`. Raises KeyError if there is none."""
        try:
            return self._agents[name]
        except KeyError:
            raise KeyError(f"no agent named {name!r}") from None

    def has_agent(self, name: str) -> bool:
        return name in self._agents

    def tools(self) -> tuple[ToolSpec, ...]:
        """All tools, in registration order."""
        return tuple(self._tools.values())

    def agents(self) -> tuple[AgentSpec, ...]:
        """All agents, in registration order."""
        return tuple(self._agents.values())

    def tools_for(self, agent: str) -> tuple[ToolSpec, ...]:
        """The tools agent `agent` may call, in the order its spec lists them."""
        return tuple(self._tools[name] for name in self.get_agent(agent).tools)


def builtin_tools() -> Iterable[ToolSpec]:
    """Fresh specs of the built-in tools (no scopes needed: they only read public facts
    or the caller's own messages; ``send_notification`` acts for the user, so each call
    needs the user's approval)."""
    yield ToolSpec(
        name="calculator", function=calculator,
        description="Evaluate an arithmetic expression exactly: numbers, + - * / // % ** and "
                    "parentheses, e.g. '12*(3+4)'.",
    )
    yield ToolSpec(
        name="current_time", function=current_time,
        description="The current date and time in a time zone given as an IANA name such as "
                    "'Asia/Tokyo' or 'Europe/Paris' (default 'UTC').",
    )
    yield ToolSpec(
        name="search_threads", function=search_threads,
        description="Search the user's own earlier messages in all their chat threads; returns "
                    "matching messages with thread title and a snippet.",
    )
    yield ToolSpec(
        name="send_notification", function=send_notification, requires_approval=True,
        description="Send a short notification `text` to the recipient `to` (a name or an "
                    "address) on the user's behalf. The user approves each call first.",
    )


def default_registry() -> AgentRegistry:
    """A new registry holding the builtin tools and the ``supervisor`` agent."""
    registry = AgentRegistry()
    for spec in builtin_tools():
        registry.add_tool(spec)
    registry.add_agent(AgentSpec(
        name=SUPERVISOR,
        description="Answers the user; calls tools and delegates to sub-agents.",
        instructions=SUPERVISOR_INSTRUCTIONS,
        tools=tuple(spec.name for spec in registry.tools()),
    ))
    return registry


def load_user_registry(spec: str, registry: AgentRegistry) -> None:
    """Let the user module named by `spec` (``"pkg.module:attr"``) extend `registry`.

    ``attr`` (dots allowed) must be a plain callable taking the registry; what it returns
    is ignored. The module is imported from the working directory (put on ``sys.path``
    when it is not there) or any installed package.

    Raises:
        ConfigError: malformed spec, module not importable, attribute missing or not
            callable, or the callable failed (the cause is chained).
    """
    module_name, sep, attr_path = spec.strip().partition(":")
    if not sep or not module_name or not attr_path:
        raise ConfigError(f"RUNWIRE_AGENTS={spec!r} must look like 'package.module:callable'")
    # `python -m runwire` puts the working directory on sys.path but the `runwire` console
    # script does not (its sys.path[0] is the venv's bin/): docs/extending.md promises a
    # module next to where the server starts is found either way.
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
        importlib.invalidate_caches()
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigError(f"RUNWIRE_AGENTS: cannot import {module_name!r}: {exc}") from exc
    for part in attr_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigError(
                f"RUNWIRE_AGENTS: {module_name!r} has no attribute {attr_path!r}") from None
    if not callable(target):
        raise ConfigError(f"RUNWIRE_AGENTS: {spec!r} is not callable")
    if inspect.iscoroutinefunction(target):
        raise ConfigError(f"RUNWIRE_AGENTS: {spec!r} must be a plain function, not async")
    try:
        target(registry)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"RUNWIRE_AGENTS: {spec!r} failed: {exc!r}") from exc
