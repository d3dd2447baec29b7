"""The agent runtime: runs one agent for one run, on any model, through one code path.

What :meth:`AgentRuntime.execute` emits to the run's sink (SPEC 2.4), in the model's order:

* ``agent_thinking`` {agent_name, thought} — once per complete thinking/reasoning part;
* ``tool_executing`` / ``tool_completed`` — per tool call, by the run's
  :class:`~runwire.agents.dispatcher.ToolDispatcher`;
* ``partial_result`` {agent_name, message_id, delta} — streamed answer text; the deltas
  joined are exactly the returned :attr:`AgentOutcome.content` (text parts of different
  model responses are separated by a blank line, sent as part of a delta).

It never emits ``agent_started``, ``agent_response``, ``agent_completed`` or
``agent_error``: the run service does, in the transaction that stores the answer.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Sequence
from typing import Any, Final, TypedDict

import httpx
from pydantic_ai import Agent, DeferredToolRequests, DeferredToolResults, RunContext
from pydantic_ai.agent import AgentRunResult
from pydantic_ai.capabilities.instrumentation import Instrumentation
from pydantic_ai.exceptions import (
    AgentRunError,
    ModelAPIError,
    ModelConnectionError,
    ModelHTTPError,
    ModelRateLimitError,
    ModelRequestTimeout,
    ModelServerError,
    ModelUnavailableError,
    UnexpectedModelBehavior,
    UserError,
)
from pydantic_ai.messages import (
    AgentStreamEvent,
    ModelMessage,
    PartDeltaEvent,
    PartEndEvent,
    PartStartEvent,
    TextPart,
    TextPartDelta,
    ThinkingPart,
)
from pydantic_ai.models import Model, infer_model
from pydantic_ai.models.instrumented import InstrumentationSettings
from pydantic_ai.toolsets import FunctionToolset
from pydantic_ai.usage import RunUsage
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from runwire.agents.approval import deferred_results, pending_calls, validate_args
from runwire.agents.builtin import BUILTIN_MODEL_NAME, builtin_model
from runwire.agents.delegation import register_delegation_tools, sub_scope
from runwire.agents.dispatcher import ToolDispatcher, ToolGuards
from runwire.agents.history import dump_messages, load_messages
from runwire.agents.registry import AgentRegistry, AgentSpec
from runwire.agents.scope import AgentOutcome, Resumption, RunScope
from runwire.agents.toolset import dispatching_toolset, function_toolset
from runwire.breaker import BreakerState, CircuitBreaker, CircuitOpen
from runwire.errors import AgentFailure, ModelFailure

log = logging.getLogger(__name__)

_PART_SEPARATOR: Final = "\n\n"
MODEL_RETRIES: Final = 2


class ModelInfo(TypedDict):
    name: str
    demo: bool


class AgentRuntime:
    """Runs agents of `registry` on the model named `model`.

    Args:
        model: ``builtin`` (runwire's offline demo model, resolved here), a pydantic-ai
            model name (``openai-chat:…``, ``openai:…``, ``anthropic:…``), or a ready
            pydantic-ai ``Model`` (tests, embedding). The default is loaded by
            :meth:`prepare` at start-up when it can be, others on first use; a missing
            API key fails runs (as :class:`~runwire.errors.ModelFailure`), not start-up.
        registry: the agents and tools; read, never changed.
        builtin_delta_delay: seconds between the builtin model's answer deltas.
        tool_timeout: seconds a tool call may take unless its spec says otherwise.
    """

    def __init__(self, *, model: str | Model, registry: AgentRegistry,
                 builtin_delta_delay: float, tool_timeout: float = 10.0,
                 rate_limit: Callable[[str, str, str], Awaitable[bool]] | None = None,
                 on_breaker_change: Callable[[str, BreakerState], None] | None = None,
                 instrument: InstrumentationSettings | None = None,
                 on_model_turn: Callable[[str, float], None] | None = None) -> None:
        if isinstance(model, str) and not model.strip():
            raise ValueError("model name is empty")
        self._model = model
        self._registry = registry
        self._builtin_delta_delay = builtin_delta_delay
        self._tool_timeout = tool_timeout
        # Caches filled on first use (only ever from the event loop's thread).
        self._models: dict[str, Model] = {}
        # Provider models own HTTP clients: entered once here, closed by aclose().
        self._open_models = contextlib.AsyncExitStack()
        self._entered: set[str] = set()
        self._toolsets: dict[AgentSpec, FunctionToolset[RunScope]] = {}
        self._agents: dict[tuple[AgentSpec, int, bool],
                           Agent[RunScope, str | DeferredToolRequests]] = {}
        register_delegation_tools(registry, self._run_sub_agent)
        self._guards = ToolGuards(allow=rate_limit, on_breaker_change=on_breaker_change)
        self._on_breaker_change = on_breaker_change
        self._instrument = instrument  # pydantic-ai InstrumentationSettings, or None (off)
        self._on_model_turn = on_model_turn  # metrics: (model name, seconds) per agent turn
        self._breakers: dict[str, CircuitBreaker] = {}

    async def prepare(self) -> None:
        """Load the default model before the first run needs it: importing a provider's SDK
        (openai's takes ~0.4 s of CPU) and pydantic's first use of the message serializer
        would otherwise stall the event loop under the first runs of every worker. Best
        effort: a model that cannot be built (a missing API key) still fails runs, as it
        would have; here it is only logged."""
        if isinstance(self._model, str):
            try:
                await self._open(self._model)
            except ModelFailure as exc:
                log.warning("the default model could not be loaded yet: %s", exc)
        load_messages(dump_messages([]))

    def model_info(self) -> ModelInfo:
        """The default model's name and whether it is the offline demo model (for the UI)."""
        if isinstance(self._model, Model):
            return {"name": self._model.model_name, "demo": False}
        return {"name": self._model, "demo": self._model == BUILTIN_MODEL_NAME}

    def has_agent(self, name: str) -> bool:
        return self._registry.has_agent(name)

    async def execute(self, scope: RunScope) -> AgentOutcome:
        """Run `scope.agent_name` on `scope.user_message` and return the final answer.

        Raises:
            ModelFailure: the model could not be built or the provider failed (retryable for
                429, 5xx, connection errors and timeouts).
            AgentFailure: the agent is not registered (code ``internal``).
            asyncio.CancelledError: propagated untouched; the model stream is closed.
            RunwireError: from the event sink (e.g. storage unavailable), untouched.
        """
        try:
            spec = self._registry.get_agent(scope.agent_name)
        except KeyError:
            raise AgentFailure("internal", f"agent {scope.agent_name!r} is not registered",
                               retryable=False) from None
        resume = scope.resume
        relay, result, dispatcher = await self._run(
            spec, scope, history=scope.history, resume=resume, deferred=scope.depth == 0)
        output = result.output
        if not relay.text and output and not isinstance(output, DeferredToolRequests):
            await relay.text_delta(str(output))  # a model that did not stream its text
        usage = result.usage
        counts = {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
                  "requests": usage.requests, "tool_calls": dispatcher.calls}
        messages = result.all_messages()
        history_len = resume.history_len if resume is not None else len(scope.history)
        if isinstance(output, DeferredToolRequests):
            return AgentOutcome(content=relay.text, usage=counts,
                                pending=pending_calls(output),
                                paused_messages=dump_messages(messages),
                                history_len=history_len)
        return AgentOutcome(content=relay.text, usage=counts,
                            messages=dump_messages(messages[history_len:]))

    def validate_tool_args(self, tool_name: str, args: dict[str, Any]) -> dict[str, Any]:
        """`args` for `tool_name` validated like the model's (edited approvals).

        Raises:
            KeyError: no such tool; pydantic.ValidationError: invalid arguments.
        """
        return validate_args(self._registry, tool_name, args)

    async def _run(self, spec: AgentSpec, scope: RunScope, *,
                   history: Sequence[ModelMessage] = (), usage: RunUsage | None = None,
                   resume: Resumption | None = None, deferred: bool = False,
                   ) -> tuple[StreamRelay, AgentRunResult[str | DeferredToolRequests],
                              ToolDispatcher]:
        """One agent's turn on `scope.user_message`, streaming into the run's sink.

        `deferred`: the turn may end with ``DeferredToolRequests`` (calls waiting for
        approval; the run's supervisor only). `resume`: go on from a pause instead, with
        the user's decisions (the answer streamed so far is kept).

        A provider failure is retried (backoff, at most MODEL_RETRIES times) only while
        nothing of this turn was streamed or executed; the provider's breaker fails the
        turn fast while open.
        """
        name = spec.model or self._model
        model = await self._open(name)
        breaker = self._breaker(name if isinstance(name, str) else model.model_name)
        try:
            breaker.check()
        except CircuitOpen as exc:
            raise ModelFailure(f"the model provider is failing: {exc}", retryable=True) from None
        dispatcher = ToolDispatcher(registry=self._registry, scope=scope, agent_name=spec.name,
                                    default_timeout=self._tool_timeout, guards=self._guards)
        relay = StreamRelay(scope, spec.name, resume.text if resume is not None else "")
        agent = self._agent(spec, model, deferred=deferred)
        prompt: str | None = scope.user_message
        results: DeferredToolResults | None = None
        if resume is not None:
            prompt, history = None, load_messages(resume.messages)
            results = await deferred_results(resume.decisions, dispatcher)

        def untouched_and_retryable(exc: BaseException) -> bool:
            return (isinstance(exc, ModelFailure) and exc.retryable and not relay.emitted
                    and dispatcher.calls == 0)

        began = time.monotonic()
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(untouched_and_retryable),
            wait=wait_exponential_jitter(multiplier=0.2, max=2.0),
            stop=stop_after_attempt(MODEL_RETRIES + 1), reraise=True,
        ):
            with attempt:
                try:
                    result = await agent.run(
                        prompt, message_history=list(history), deferred_tool_results=results,
                        deps=scope, event_stream_handler=relay.handle, usage=usage,
                        toolsets=[dispatching_toolset(self._tools(spec), dispatcher)])
                except (AgentRunError, UserError, httpx.HTTPError, ConnectionError) as exc:
                    failure = model_failure(exc)
                    if failure.retryable:
                        breaker.failure()
                    raise failure from exc
        breaker.success()
        if self._on_model_turn is not None:
            self._on_model_turn(model.model_name, time.monotonic() - began)
        return relay, result, dispatcher

    def _breaker(self, model_name: str) -> CircuitBreaker:
        found = self._breakers.get(model_name)
        if found is None:
            found = self._breakers[model_name] = CircuitBreaker(
                f"model:{model_name}", threshold=5, cooldown=15.0,
                on_change=self._on_breaker_change)
        return found

    async def _run_sub_agent(self, spec: AgentSpec, parent: RunScope, request: str,
                             usage: RunUsage) -> str:
        """A delegated sub-agent's turn (see :mod:`runwire.agents.delegation`)."""
        scope = sub_scope(parent, spec.name, request)
        relay, result, _ = await self._run(spec, scope, usage=usage)
        if not relay.text and result.output:
            await relay.text_delta(str(result.output))
        await scope.events.emit("agent_response", {
            "agent_name": spec.name, "message_id": scope.assistant_message_id,
            "content": relay.text})
        return relay.text

    async def _open(self, model: str | Model) -> Model:
        """The resolved model, its provider's HTTP client held open until aclose()."""
        resolved = self._resolve(model)
        if isinstance(model, str) and model not in self._entered:
            self._entered.add(model)
            await self._open_models.enter_async_context(resolved)
        return resolved

    async def aclose(self) -> None:
        """Close the HTTP clients of the provider models this runtime created."""
        await self._open_models.aclose()
        self._models.clear()
        self._agents.clear()
        self._entered.clear()

    def _resolve(self, model: str | Model) -> Model:
        if isinstance(model, Model):
            return model
        cached = self._models.get(model)
        if cached is not None:
            return cached
        if model == BUILTIN_MODEL_NAME:
            resolved: Model = builtin_model(delta_delay=self._builtin_delta_delay)
        else:
            try:
                resolved = infer_model(model)
            except Exception as exc:
                # Typically a missing API key or an unknown provider prefix (UserError);
                # the first sentence says which.
                reason = str(exc).split(". ")[0]
                raise ModelFailure(f"model {model!r} is not usable: {reason}",
                                   retryable=False) from exc
        self._models[model] = resolved
        return resolved

    def _tools(self, spec: AgentSpec) -> FunctionToolset[RunScope]:
        """The tools `spec` offers (argument schemas built once per agent)."""
        tools = self._toolsets.get(spec)
        if tools is None:
            specs = (*self._registry.tools_for(spec.name),
                     *(self._registry.get_tool(name) for name in spec.delegates))
            tools = self._toolsets[spec] = function_toolset(specs)
        return tools

    def _agent(self, spec: AgentSpec, model: Model, *, deferred: bool
               ) -> Agent[RunScope, str | DeferredToolRequests]:
        """The pydantic-ai agent for `spec` on `model`, built once (an ``Agent`` took
        ~0.2 ms to build, per run); a run passes its tools in with its own dispatcher
        (``run(toolsets=…)``). Keyed by the model object: the cached agent holds it, so its
        id is not reused while the entry lives."""
        key = (spec, id(model), deferred)
        found = self._agents.get(key)
        if found is not None:
            return found
        capabilities = ([Instrumentation(settings=self._instrument)]
                        if self._instrument is not None else [])
        output_type: Any = [str, DeferredToolRequests] if deferred else str
        agent: Agent[RunScope, str | DeferredToolRequests] = Agent(
            model, deps_type=RunScope, output_type=output_type, name=spec.name,
            instructions=spec.instructions, capabilities=capabilities)
        self._agents[key] = agent
        return agent


class StreamRelay:
    """Turns pydantic-ai's stream events into ``partial_result`` and ``agent_thinking``.

    Keeps the text it relayed (:attr:`text`): the run's answer is what its clients saw.
    """

    def __init__(self, scope: RunScope, agent_name: str, text: str = "") -> None:
        self._scope = scope
        self._agent_name = agent_name
        self.emitted = False  # anything (text or thinking) relayed yet
        self._parts: list[str] = [text] if text else []  # a resumed run's answer so far
        self._separate = False

    @property
    def text(self) -> str:
        return "".join(self._parts)

    async def handle(self, ctx: RunContext[RunScope],
                     events: AsyncIterable[AgentStreamEvent]) -> None:
        """pydantic-ai's ``event_stream_handler``: called once per model request / tool step."""
        async for event in events:
            if isinstance(event, PartStartEvent) and isinstance(event.part, TextPart):
                self._separate = bool(self._parts)
                await self.text_delta(event.part.content)
            elif isinstance(event, PartDeltaEvent) and isinstance(event.delta, TextPartDelta):
                await self.text_delta(event.delta.content_delta)
            elif (isinstance(event, PartEndEvent) and isinstance(event.part, ThinkingPart)
                  and event.part.content.strip()):
                # One event per complete thought: token-sized thinking deltas would flood
                # the thread's log.
                self.emitted = True
                await self._scope.events.emit("agent_thinking", {
                    "agent_name": self._agent_name, "thought": event.part.content})

    async def text_delta(self, delta: str) -> None:
        if not delta:
            return
        if self._separate:
            delta, self._separate = _PART_SEPARATOR + delta, False
        self._parts.append(delta)
        self.emitted = True
        await self._scope.events.emit("partial_result", {
            "agent_name": self._agent_name,
            "message_id": self._scope.assistant_message_id,
            "delta": delta,
        })


def model_failure(exc: BaseException) -> ModelFailure:
    """`exc` from a model provider as a :class:`ModelFailure`; retryable where waiting helps."""
    retryable: bool
    message: str
    if isinstance(exc, ModelRateLimitError):
        retryable, message = True, "the model provider is rate limiting requests"
    elif isinstance(exc, ModelUnavailableError | ModelServerError):
        retryable, message = True, "the model provider is unavailable"
    elif isinstance(exc, ModelConnectionError | ModelRequestTimeout | httpx.HTTPError
                    | ConnectionError):
        retryable, message = True, "could not reach the model provider"
    elif isinstance(exc, ModelHTTPError):
        retryable = exc.status_code in (408, 429) or exc.status_code >= 500
        message = f"the model provider answered HTTP {exc.status_code}"
    elif isinstance(exc, ModelAPIError):
        retryable, message = False, "the model provider refused the request"
    elif isinstance(exc, UnexpectedModelBehavior):
        retryable, message = False, f"the model misbehaved: {exc.message}"
    else:
        retryable, message = False, str(exc) or type(exc).__name__
    if isinstance(exc, ModelHTTPError) and "HTTP" not in message:
        message = f"{message} (HTTP {exc.status_code})"
    log.warning("model failure (retryable=%s): %r", retryable, exc)
    return ModelFailure(message[:500], retryable=retryable)

