"""The request-scoped tool dispatcher: one per run, for every tool call of that run.

Four small parts, composed by :class:`ToolDispatcher`:

* registry — which tool a name means (:class:`~runwire.agents.registry.AgentRegistry`);
* permissions — :func:`missing_scopes`: a tool's ``required_scopes`` must all be granted
  by the run's token;
* execution — :func:`execute`: one call under the tool's timeout, every expected failure
  turned into a :class:`ToolErrored` the model can read;
* events — :class:`ToolEvents`: ``tool_executing`` before and ``tool_completed`` after
  **every** call, failures, timeouts and denials included.

The dispatcher knows nothing of pydantic-ai: the caller hands it an ``invoke`` callable
that runs the (validated) call; :mod:`runwire.agents.toolset` is that caller.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import pydantic
import pydantic_core
from pydantic_ai.exceptions import ModelRetry, ToolFailed

from runwire.agents.registry import AgentRegistry, ToolSpec
from runwire.agents.scope import EventSink, RunScope
from runwire.agents.tools import ToolError
from runwire.breaker import BreakerState, CircuitBreaker, CircuitOpen
from runwire.errors import RunwireError

log = logging.getLogger(__name__)

ErrorKind = Literal["denied", "unknown_tool", "invalid_arguments", "timeout", "failed",
                    "rate_limited", "unavailable"]
Invoke: TypeAlias = Callable[[], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One call the model asked for; `args` are the model's arguments as given."""

    tool_name: str
    args: Mapping[str, Any]
    tool_call_id: str


@dataclass(frozen=True, slots=True)
class ToolSucceeded:
    value: Any


@dataclass(frozen=True, slots=True)
class ToolErrored:
    """A call that did not produce a result; `message` is what the model is told."""

    kind: ErrorKind
    message: str


ToolOutcome: TypeAlias = ToolSucceeded | ToolErrored


# ---- permissions ------------------------------------------------------------------------

def missing_scopes(spec: ToolSpec, granted: frozenset[str]) -> frozenset[str]:
    """The scopes `spec` requires that `granted` lacks (empty: the call is allowed)."""
    return spec.required_scopes - granted


# ---- execution --------------------------------------------------------------------------

async def execute(invoke: Invoke, *, tool_name: str, timeout: float) -> ToolOutcome:
    """Run one call for at most `timeout` seconds.

    Tool errors (:class:`~runwire.agents.tools.ToolError`, pydantic-ai's ``ToolFailed`` /
    ``ModelRetry``), invalid arguments, the timeout and unexpected exceptions all become a
    :class:`ToolErrored`. Propagated unchanged: ``asyncio.CancelledError`` (the run is being
    cancelled) and :class:`~runwire.errors.RunwireError` (the run itself cannot go on, e.g.
    the database or the lease is lost — not a failure of this call).
    """
    deadline = asyncio.timeout(timeout)
    try:
        async with deadline:
            value = await invoke()
    except TimeoutError:
        if deadline.expired():
            return ToolErrored("timeout", f"{tool_name} timed out after {timeout:g} s")
        return ToolErrored("failed", f"{tool_name} failed: a request it made timed out")
    except (ToolError, ToolFailed, ModelRetry) as exc:
        return ToolErrored("failed", str(exc) or f"{tool_name} failed")
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, err['loc'])) or 'arguments'}: {err['msg']}"
            for err in exc.errors(include_url=False)
        )
        return ToolErrored("invalid_arguments", f"invalid arguments for {tool_name}: {problems}")
    except RunwireError:
        raise
    except Exception as exc:
        # Unexpected: log it with its traceback, tell the model only the exception type
        # (messages of arbitrary exceptions may carry internals).
        log.exception("tool %s crashed", tool_name)
        return ToolErrored("failed", f"{tool_name} failed unexpectedly ({type(exc).__name__})")
    return ToolSucceeded(value)


# ---- events -----------------------------------------------------------------------------

def jsonable(value: Any) -> Any:
    """`value` as JSON data for an event payload (unknown objects become their str)."""
    return pydantic_core.to_jsonable_python(value, fallback=str)


@dataclass(frozen=True, slots=True)
class ToolEvents:
    """Emits the two events of a tool call (SPEC 2.4) on behalf of `agent_name`."""

    sink: EventSink
    agent_name: str

    async def executing(self, call: ToolCall) -> None:
        await self.sink.emit("tool_executing", {
            "agent_name": self.agent_name,
            "tool_name": call.tool_name,
            "tool_args": jsonable(dict(call.args)),
            "tool_call_id": call.tool_call_id,
        })

    async def completed(self, call: ToolCall, outcome: ToolOutcome, *, duration_ms: int) -> None:
        payload: dict[str, Any] = {
            "agent_name": self.agent_name,
            "tool_name": call.tool_name,
            "tool_call_id": call.tool_call_id,
            "duration_ms": duration_ms,
        }
        if isinstance(outcome, ToolSucceeded):
            payload["result"] = jsonable(outcome.value)
        else:
            payload["error"] = outcome.message
        await self.sink.emit("tool_completed", payload)


# ---- the dispatcher ---------------------------------------------------------------------

class ToolGuards:
    """What tool calls share across runs: one circuit breaker per tool, and the per-user
    rate limits tools declare (``ToolSpec.rate_limit``).

    Args:
        allow: ``(user_id, op, limit) -> allowed``; None: declared limits not enforced.
        on_breaker_change: ``(name, state)`` for metrics.
    """

    def __init__(self, *, allow: Callable[[str, str, str], Awaitable[bool]] | None = None,
                 on_breaker_change: Callable[[str, BreakerState], None] | None = None,
                 threshold: int = 5, cooldown: float = 10.0) -> None:
        self._allow = allow
        self._on_change = on_breaker_change
        self._threshold = threshold
        self._cooldown = cooldown
        self._breakers: dict[str, CircuitBreaker] = {}

    def breaker(self, tool: str) -> CircuitBreaker:
        found = self._breakers.get(tool)
        if found is None:
            found = self._breakers[tool] = CircuitBreaker(
                f"tool:{tool}", threshold=self._threshold, cooldown=self._cooldown,
                on_change=self._on_change)
        return found

    async def allow(self, user_id: str, tool: str, limit: str) -> bool:
        return True if self._allow is None else await self._allow(user_id, f"tool:{tool}", limit)


class ToolDispatcher:
    """Dispatches the tool calls of one run (never shared between runs).

    Contract of :meth:`dispatch`: ``tool_executing`` is emitted before anything else
    happens, ``tool_completed`` (with ``result`` or ``error`` and ``duration_ms``) once the
    call is over, for every call; a denied, unknown, invalid, failed or timed-out call
    returns :class:`ToolErrored` and never raises. Exceptions from the event sink, a
    :class:`~runwire.errors.RunwireError` from the tool (emitted as an error first) and
    cancellation propagate.

    Args:
        registry: where tool names are looked up.
        scope: the run; its `scopes` are the granted permissions, its `events` the sink.
        agent_name: the agent the calls are made for (events' ``agent_name``).
        default_timeout: seconds for a tool whose spec sets no timeout.
        clock: monotonic seconds, for ``duration_ms``.
    """

    def __init__(self, *, registry: AgentRegistry, scope: RunScope, agent_name: str,
                 default_timeout: float,
                 clock: Callable[[], float] = time.monotonic,
                 guards: ToolGuards | None = None) -> None:
        self._guards = guards or ToolGuards()
        self._registry = registry
        self._scope = scope
        self._events = ToolEvents(scope.events, agent_name)
        self._default_timeout = default_timeout
        self._clock = clock
        self.calls = 0
        """Calls dispatched so far (each produced a ``tool_executing``)."""

    @property
    def agent_name(self) -> str:
        return self._events.agent_name

    def requires_approval(self, tool_name: str) -> bool:
        """Whether calls of `tool_name` wait for the user's approval (SPEC 7)."""
        try:
            return self._registry.get_tool(tool_name).requires_approval
        except KeyError:
            return False

    async def denied(self, call: ToolCall, reason: str) -> None:
        """Report a call the user denied (``tool_executing`` + ``tool_completed`` with the
        error the model is told), like any refused call; nothing runs."""
        self.calls += 1
        await self._events.executing(call)
        await self._events.completed(call, ToolErrored("denied", reason), duration_ms=0)

    async def dispatch(self, call: ToolCall, invoke: Invoke) -> ToolOutcome:
        """Check, run and report one call; `invoke` runs it once it is allowed."""
        self.calls += 1
        await self._events.executing(call)
        started = self._clock()
        try:
            outcome = await self._run(call, invoke)
        except RunwireError as exc:
            await self._completed(call, ToolErrored("failed", str(exc)), started)
            raise
        await self._completed(call, outcome, started)
        return outcome

    async def _run(self, call: ToolCall, invoke: Invoke) -> ToolOutcome:
        try:
            spec = self._registry.get_tool(call.tool_name)
        except KeyError:
            return ToolErrored("unknown_tool", f"there is no tool named {call.tool_name!r}")
        missing = missing_scopes(spec, self._scope.scopes)
        if missing:
            return ToolErrored(
                "denied",
                f"permission denied: {spec.name} needs the scope(s) "
                f"{', '.join(sorted(missing))}, which this user's token does not grant",
            )
        if spec.rate_limit is not None and not await self._guards.allow(
                self._scope.user_id, spec.name, spec.rate_limit):
            return ToolErrored("rate_limited",
                               f"{spec.name} is rate limited ({spec.rate_limit}); try later")
        breaker = self._guards.breaker(spec.name)
        try:
            breaker.check()
        except CircuitOpen as exc:
            return ToolErrored("unavailable", str(exc))
        timeout = spec.timeout if spec.timeout is not None else self._default_timeout
        outcome = await execute(invoke, tool_name=spec.name, timeout=timeout)
        if isinstance(outcome, ToolErrored) and outcome.kind in ("failed", "timeout"):
            breaker.failure()
        else:
            breaker.success()
        return outcome

    async def _completed(self, call: ToolCall, outcome: ToolOutcome, started: float) -> None:
        duration_ms = max(0, round((self._clock() - started) * 1000))
        if isinstance(outcome, ToolErrored):
            log.info("tool %s call %s: %s (%s)", call.tool_name, call.tool_call_id,
                     outcome.kind, outcome.message)
        await self._events.completed(call, outcome, duration_ms=duration_ms)
