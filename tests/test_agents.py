"""The agent runtime on the builtin model and on scripted pydantic-ai models; the registry."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import pytest
from pydantic_ai.exceptions import ModelHTTPError
from pydantic_ai.messages import (
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import (
    AgentInfo,
    DeltaThinkingCalls,
    DeltaThinkingPart,
    DeltaToolCall,
    DeltaToolCalls,
    FunctionModel,
)

from runwire.agents.builtin import HELP_TEXT
from runwire.agents.history import dump_messages, text_history, thread_history
from runwire.agents.registry import (
    AgentRegistry,
    AgentSpec,
    ToolSpec,
    default_registry,
    load_user_registry,
)
from runwire.agents.runtime import AgentRuntime
from runwire.agents.scope import HistoryMessage, RunScope, SearchHit
from runwire.errors import AgentFailure, ConfigError, ModelFailure, StorageUnavailable
from runwire.ids import MessageId, RunId, ThreadId, UserId
from runwire.protocol.codes import RunEventType
from runwire.settings import load_settings
from runwire.store import runqueue

from .conftest import ServerHandle
from .helpers import client

StreamItem = str | DeltaToolCalls | DeltaThinkingCalls


class RecordingSink:
    """Records events; optionally blocks forever on the first `partial_result`."""

    def __init__(self, *, block_on_delta: bool = False, fail_on: RunEventType | None = None
                 ) -> None:
        self.events: list[tuple[RunEventType, dict[str, Any]]] = []
        self.first_delta = asyncio.Event()
        self._block = block_on_delta
        self._fail_on = fail_on

    async def emit(self, type: RunEventType, payload: Mapping[str, Any]) -> None:
        if type == self._fail_on:
            raise StorageUnavailable("event log unavailable")
        self.events.append((type, dict(payload)))
        if type == "partial_result" and self._block:
            self.first_delta.set()
            await asyncio.Event().wait()

    def types(self) -> list[RunEventType]:
        return [t for t, _ in self.events]

    def of(self, type: RunEventType) -> list[dict[str, Any]]:
        return [p for t, p in self.events if t == type]

    def deltas(self) -> str:
        return "".join(p["delta"] for p in self.of("partial_result"))


class RecordingSearch:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int]] = []

    async def __call__(self, user_id: UserId, query: str, *, limit: int) -> list[SearchHit]:
        self.calls.append((user_id, query, limit))
        return [SearchHit(ThreadId("t-old"), "Planning", MessageId("m-old"), "user",
                          f"notes about the {query}")]


def make_scope(message: str, *, sink: RecordingSink, search: RecordingSearch | None = None,
               scopes: frozenset[str] = frozenset(), agent: str = "supervisor",
               history: Sequence[ModelMessage] = ()) -> RunScope:
    return RunScope(
        user_id=UserId("alice"), thread_id=ThreadId("t-1"), run_id=RunId("r-1"),
        agent_name=agent, user_message=message, user_message_id=MessageId("m-user"),
        assistant_message_id=MessageId("m-answer"), events=sink,
        search=search or RecordingSearch(), scopes=scopes, history=history)


def builtin_runtime(registry: AgentRegistry | None = None, *,
                    tool_timeout: float = 10.0) -> AgentRuntime:
    return AgentRuntime(model="builtin", registry=registry or default_registry(),
                        builtin_delta_delay=0, tool_timeout=tool_timeout)


def scripted(tool_name: str, args: Mapping[str, Any], answer: str = "done") -> FunctionModel:
    """A model that calls `tool_name` once, then answers `answer`."""

    async def stream(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[StreamItem]:
        if any(isinstance(m, ModelResponse) and m.tool_calls for m in messages):
            yield answer
            return
        call: DeltaToolCalls = {0: DeltaToolCall(tool_name, json.dumps(args), tool_call_id="c1")}
        yield call

    return FunctionModel(stream_function=stream)


# ---- the builtin model through the runtime ----------------------------------------------

async def test_arithmetic_question_runs_thinking_then_calculator_then_streamed_answer() -> None:
    sink = RecordingSink()
    outcome = await builtin_runtime().execute(make_scope("what is 12*(3+4)?", sink=sink))

    types = sink.types()
    assert types[:3] == ["agent_thinking", "tool_executing", "tool_completed"]
    assert set(types[3:]) == {"partial_result"} and len(types[3:]) >= 3
    executing, completed = sink.of("tool_executing")[0], sink.of("tool_completed")[0]
    assert executing["tool_name"] == "calculator"
    assert executing["tool_args"] == {"expression": "12*(3+4)"}
    assert completed["tool_call_id"] == executing["tool_call_id"]
    assert completed["result"] == {"expression": "12*(3+4)", "result": 84}
    assert isinstance(completed["duration_ms"], int)
    assert all(p["message_id"] == "m-answer" and p["agent_name"] == "supervisor"
               for p in sink.of("partial_result"))
    assert "84" in outcome.content
    assert outcome.content == sink.deltas()
    assert outcome.usage["tool_calls"] == 1 and outcome.usage["requests"] == 2


async def test_words_after_an_expression_dont_reach_the_calculator() -> None:
    sink = RecordingSink()
    outcome = await builtin_runtime().execute(make_scope("what is 6*7 (sent offline)", sink=sink))
    assert sink.of("tool_executing")[0]["tool_args"] == {"expression": "6*7"}
    assert sink.of("tool_completed")[0]["result"] == {"expression": "6*7", "result": 42}
    assert "**42**" in outcome.content


async def test_runtime_never_emits_the_run_services_lifecycle_events() -> None:
    sink = RecordingSink()
    await builtin_runtime().execute(make_scope("what is 2+2?", sink=sink))
    assert not {"agent_started", "agent_response", "agent_completed", "agent_error"} & set(
        sink.types())


async def test_denied_tool_is_reported_as_an_error_and_the_run_still_answers() -> None:
    registry = default_registry()
    registry.add_tool(replace(registry.get_tool("calculator"),
                              required_scopes=frozenset({"math"})), replace=True)
    sink = RecordingSink()
    outcome = await builtin_runtime(registry).execute(make_scope("what is 2+2?", sink=sink))

    assert sink.types()[:3] == ["agent_thinking", "tool_executing", "tool_completed"]
    completed = sink.of("tool_completed")[0]
    assert "result" not in completed
    assert "permission denied" in completed["error"] and "math" in completed["error"]
    assert "permission denied" in outcome.content
    assert outcome.content == sink.deltas()


async def test_granted_scope_lets_the_same_tool_run() -> None:
    registry = default_registry()
    registry.add_tool(replace(registry.get_tool("calculator"),
                              required_scopes=frozenset({"math"})), replace=True)
    sink = RecordingSink()
    outcome = await builtin_runtime(registry).execute(
        make_scope("what is 2+2?", sink=sink, scopes=frozenset({"math"})))
    assert sink.of("tool_completed")[0]["result"]["result"] == 4
    assert "**4**" in outcome.content


async def test_unknown_timezone_is_a_tool_error_and_the_answer_explains_it() -> None:
    sink = RecordingSink()
    outcome = await builtin_runtime().execute(
        make_scope("what time is it in Atlantis?", sink=sink))
    completed = sink.of("tool_completed")[0]
    assert completed["tool_name"] == "current_time"
    assert "unknown time zone 'Atlantis'" in completed["error"]
    assert "unknown time zone" in outcome.content
    assert outcome.content == sink.deltas()


async def test_time_question_maps_the_city_to_its_iana_zone() -> None:
    sink = RecordingSink()
    outcome = await builtin_runtime().execute(
        make_scope("what time is it in Tokyo?", sink=sink))
    assert sink.of("tool_executing")[0]["tool_args"] == {"timezone": "Asia/Tokyo"}
    assert "Asia/Tokyo (UTC+09:00)" in outcome.content


async def test_builtin_search_uses_the_scopes_user_and_the_query_from_the_message() -> None:
    search = RecordingSearch()
    sink = RecordingSink()
    outcome = await builtin_runtime().execute(
        make_scope("find budget in my threads", sink=sink, search=search))
    assert search.calls == [("alice", "budget", 5)]
    assert sink.of("tool_completed")[0]["result"][0]["thread_id"] == "t-old"
    assert "Planning" in outcome.content


async def test_search_threads_refuses_a_user_id_the_model_invents() -> None:
    search = RecordingSearch()
    sink = RecordingSink()
    runtime = AgentRuntime(
        model=scripted("search_threads", {"query": "budget", "user_id": "mallory"}),
        registry=default_registry(), builtin_delta_delay=0)
    outcome = await runtime.execute(make_scope("anything", sink=sink, search=search))
    assert sink.types()[:2] == ["tool_executing", "tool_completed"]
    error = sink.of("tool_completed")[0]["error"]
    assert "invalid arguments for search_threads" in error and "user_id" in error
    assert search.calls == []
    assert outcome.content == "done"


async def test_message_without_a_tool_request_gets_the_demo_help_and_no_tool_call() -> None:
    sink = RecordingSink()
    outcome = await builtin_runtime().execute(make_scope("hello there", sink=sink))
    assert outcome.content == HELP_TEXT == sink.deltas()
    assert "offline demo model" in outcome.content
    assert "tool_executing" not in sink.types()
    assert sink.types()[0] == "agent_thinking"


async def test_builtin_model_follows_up_a_time_question_from_the_history() -> None:
    sink = RecordingSink()
    history = text_history([HistoryMessage("user", "what time is it in Tokyo?"),
                            HistoryMessage("assistant", "It is **09:00** in Asia/Tokyo.")])
    await builtin_runtime().execute(make_scope("and in Paris?", sink=sink, history=history))
    assert sink.of("tool_executing")[0]["tool_args"] == {"timezone": "Europe/Paris"}


# ---- the one path for every model (scripted pydantic-ai models) -------------------------

async def test_history_reaches_the_model_as_requests_and_responses() -> None:
    seen: list[list[ModelMessage]] = []

    async def stream(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str]:
        seen.append(messages)
        yield "ok"

    history = text_history([HistoryMessage("assistant", "orphaned answer"),
                            HistoryMessage("user", "hi"), HistoryMessage("assistant", "hello!")])
    runtime = AgentRuntime(model=FunctionModel(stream_function=stream),
                           registry=default_registry(), builtin_delta_delay=0)
    await runtime.execute(make_scope("again", sink=RecordingSink(), history=history))

    first, second, current = seen[0]
    assert isinstance(first, ModelRequest) and isinstance(first.parts[0], UserPromptPart)
    assert first.parts[0].content == "hi"
    assert isinstance(second, ModelResponse) and isinstance(second.parts[0], TextPart)
    assert second.parts[0].content == "hello!"
    assert isinstance(current, ModelRequest)
    assert [p.content for p in current.parts if isinstance(p, UserPromptPart)] == ["again"]


async def test_an_outcome_holds_the_runs_own_model_messages_with_its_tool_call_and_result(
) -> None:
    runtime = AgentRuntime(model=scripted("calculator", {"expression": "6*7"}, "It is 42."),
                           registry=default_registry(), builtin_delta_delay=0)
    history = text_history([HistoryMessage("user", "hi"), HistoryMessage("assistant", "hello!")])
    outcome = await runtime.execute(make_scope("what is 6*7?", sink=RecordingSink(),
                                               history=history))
    assert outcome.messages is not None
    stored = ModelMessagesTypeAdapter.validate_json(outcome.messages)
    # Only this run: its prompt once (not the history), the call, the result, the answer.
    prompts = [p.content for m in stored if isinstance(m, ModelRequest)
               for p in m.parts if isinstance(p, UserPromptPart)]
    assert prompts == ["what is 6*7?"]
    calls = [p for m in stored if isinstance(m, ModelResponse) for p in m.parts
             if isinstance(p, ToolCallPart)]
    returns = [p for m in stored if isinstance(m, ModelRequest) for p in m.parts
               if isinstance(p, ToolReturnPart)]
    assert [(c.tool_name, c.args_as_dict()) for c in calls] == [
        ("calculator", {"expression": "6*7"})]
    assert [(r.tool_call_id, r.content["result"]) for r in returns] == [(calls[0].tool_call_id, 42)]
    assert isinstance(stored[-1], ModelResponse) and stored[-1].text == "It is 42."


def _run_rows(run_id: str, question: str, answer: str) -> list[HistoryMessage]:
    return [HistoryMessage("user", question, run_id), HistoryMessage("assistant", answer, run_id)]


def _stored_tool_run(question: str, call_id: str) -> str:
    return dump_messages([
        ModelRequest(parts=[UserPromptPart(question)]),
        ModelResponse(parts=[ToolCallPart("calculator", {"expression": "1+1"}, call_id)]),
        ModelRequest(parts=[ToolReturnPart("calculator", {"result": 2}, call_id)]),
        ModelResponse(parts=[TextPart("It is 2.")]),
    ])


def test_thread_history_replaces_runs_by_their_stored_messages_and_drops_cut_off_runs() -> None:
    rows = [HistoryMessage("assistant", "answer of a cut-off run", "r0"),
            *_run_rows("r1", "first", "It is 2."), *_run_rows("r2", "second", "partial")]
    history = thread_history(rows, {"r0": _stored_tool_run("zero", "c0"),
                                    "r1": _stored_tool_run("first", "c1")})
    kinds = [(type(m).__name__, [type(p).__name__ for p in m.parts]) for m in history]
    assert kinds == [
        ("ModelRequest", ["UserPromptPart"]), ("ModelResponse", ["ToolCallPart"]),
        ("ModelRequest", ["ToolReturnPart"]), ("ModelResponse", ["TextPart"]),
        ("ModelRequest", ["UserPromptPart"]), ("ModelResponse", ["TextPart"]),  # r2: texts
    ]
    assert "zero" not in dump_messages(history)
    assert isinstance(history[4], ModelRequest) and history[4].parts[0].content == "second"


def test_thread_history_cuts_long_earlier_tool_results_and_keeps_short_ones() -> None:
    big = dump_messages([
        ModelRequest(parts=[UserPromptPart("read it")]),
        ModelResponse(parts=[ToolCallPart("fetch", {}, "c1"), ToolCallPart("calculator", {}, "c2")]),
        ModelRequest(parts=[ToolReturnPart("fetch", "x" * 50_000, "c1"),
                            ToolReturnPart("calculator", {"result": 2}, "c2")]),
        ModelResponse(parts=[TextPart("done")]),
    ])
    history = thread_history(_run_rows("r1", "read it", "done"), {"r1": big})
    returns = [p for m in history if isinstance(m, ModelRequest) for p in m.parts
               if isinstance(p, ToolReturnPart)]
    assert [p.tool_call_id for p in returns] == ["c1", "c2"]
    assert len(returns[0].model_response_str()) < 8_100
    assert returns[0].model_response_str().endswith("[42000 characters cut]")
    assert returns[1].content == {"result": 2}


def test_thread_history_falls_back_to_texts_for_unreadable_stored_messages(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="runwire.agents.history"):
        history = thread_history(_run_rows("r1", "first", "It is 2."), {"r1": '[{"kind": 3'})
    assert [(type(m).__name__, [getattr(p, "content", None) for p in m.parts])
            for m in history] == [("ModelRequest", ["first"]), ("ModelResponse", ["It is 2."])]
    assert "r1" in caplog.text and "unreadable" in caplog.text


async def test_the_builtin_model_answers_a_follow_up_over_a_stored_tool_run(
    server: ServerHandle,
) -> None:
    async with client(server) as c:
        ack, frames = await c.ask("what time is it in Tokyo?")
        assert [f["payload"]["tool_name"] for f in frames if f["type"] == "tool_completed"] == [
            "current_time"]
        _, frames = await c.ask("and in Paris?", thread_id=ack["payload"]["thread_id"])
    calls = [f["payload"] for f in frames if f["type"] == "tool_executing"]
    assert [(p["tool_name"], p["tool_args"]) for p in calls] == [
        ("current_time", {"timezone": "Europe/Paris"})]
    assert "Paris" in frames[-1]["payload"]["result"]
    assert "Tokyo" not in frames[-1]["payload"]["result"]

    async def stored() -> str | None:
        found = await server.services.db.query(
            lambda c: runqueue.model_messages(c, "alice", [ack["payload"]["run_id"]]))
        return found.get(ack["payload"]["run_id"])

    data = server.call(stored)
    assert data is not None and "current_time" in data and "Asia/Tokyo" in data


async def test_streamed_reasoning_becomes_one_agent_thinking_per_thought() -> None:
    async def stream(messages: list[ModelMessage], info: AgentInfo
                     ) -> AsyncIterator[StreamItem]:
        for piece in ("Let me ", "think ", "about it."):
            delta: DeltaThinkingCalls = {0: DeltaThinkingPart(content=piece)}
            yield delta
        yield "Answer."

    sink = RecordingSink()
    runtime = AgentRuntime(model=FunctionModel(stream_function=stream),
                           registry=default_registry(), builtin_delta_delay=0)
    outcome = await runtime.execute(make_scope("q", sink=sink))
    assert sink.of("agent_thinking") == [{"agent_name": "supervisor",
                                          "thought": "Let me think about it."}]
    assert outcome.content == "Answer."


async def test_text_before_and_after_a_tool_call_is_one_answer_equal_to_the_deltas() -> None:
    async def stream(messages: list[ModelMessage], info: AgentInfo
                     ) -> AsyncIterator[StreamItem]:
        if any(isinstance(m, ModelResponse) and m.tool_calls for m in messages):
            yield "It is "
            yield "4."
            return
        yield "Let me compute."
        call: DeltaToolCalls = {1: DeltaToolCall("calculator", '{"expression": "2+2"}',
                                                 tool_call_id="c1")}
        yield call

    sink = RecordingSink()
    runtime = AgentRuntime(model=FunctionModel(stream_function=stream),
                           registry=default_registry(), builtin_delta_delay=0)
    outcome = await runtime.execute(make_scope("q", sink=sink))
    assert outcome.content == "Let me compute.\n\nIt is 4."
    assert outcome.content == sink.deltas()
    assert sink.types().index("tool_completed") < sink.types().index("partial_result", 1)


async def test_invalid_tool_arguments_are_reported_through_the_dispatcher() -> None:
    sink = RecordingSink()
    runtime = AgentRuntime(model=scripted("calculator", {"expr": "1+1"}),
                           registry=default_registry(), builtin_delta_delay=0)
    outcome = await runtime.execute(make_scope("q", sink=sink))
    assert sink.types()[:2] == ["tool_executing", "tool_completed"]
    assert sink.of("tool_executing")[0]["tool_args"] == {"expr": "1+1"}
    assert "invalid arguments for calculator" in sink.of("tool_completed")[0]["error"]
    assert outcome.content == "done"


async def test_a_tool_over_its_timeout_is_reported_and_the_run_finishes() -> None:
    never = asyncio.Event()

    async def slow() -> str:
        await never.wait()
        return "late"

    registry = default_registry()
    registry.add_tool(ToolSpec("slow", slow, "never finishes", timeout=0.01))
    registry.add_agent(AgentSpec("waiter", "waits", "wait", tools=("slow",)))
    sink = RecordingSink()
    runtime = AgentRuntime(model=scripted("slow", {}), registry=registry, builtin_delta_delay=0)
    outcome = await runtime.execute(make_scope("q", sink=sink, agent="waiter"))
    completed = sink.of("tool_completed")[0]
    assert completed["agent_name"] == "waiter"
    assert completed["error"] == "slow timed out after 0.01 s"
    assert outcome.content == "done"


@pytest.mark.parametrize(("status", "retryable"), [(429, True), (503, True), (500, True),
                                                    (400, False), (401, False)])
async def test_provider_http_errors_become_model_failures(status: int, retryable: bool) -> None:
    async def stream(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str]:
        raise ModelHTTPError(status, "fake-model", body={"error": "nope"})
        yield "unreachable"

    runtime = AgentRuntime(model=FunctionModel(stream_function=stream),
                           registry=default_registry(), builtin_delta_delay=0)
    with pytest.raises(ModelFailure) as caught:
        await runtime.execute(make_scope("q", sink=RecordingSink()))
    assert caught.value.code == "model_error"
    assert caught.value.retryable is retryable
    assert str(status) in caught.value.message


async def test_provider_without_api_key_constructs_lazily_and_fails_only_the_run(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    runtime = AgentRuntime(model="openai-chat:gpt-4o-mini", registry=default_registry(),
                           builtin_delta_delay=0)
    assert runtime.model_info() == {"name": "openai-chat:gpt-4o-mini", "demo": False}
    with caplog.at_level(logging.WARNING, logger="runwire.agents.runtime"):
        await runtime.prepare()  # start-up goes on, with a warning that says why
    assert any("OPENAI_API_KEY" in r.getMessage() for r in caplog.records)
    with pytest.raises(ModelFailure) as caught:
        await runtime.execute(make_scope("q", sink=RecordingSink()))
    assert caught.value.retryable is False
    assert "OPENAI_API_KEY" in caught.value.message


async def test_cancelling_a_run_propagates_and_closes_the_model_stream() -> None:
    closed = asyncio.Event()

    async def stream(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str]:
        try:
            for word in ("one ", "two ", "three"):
                yield word
        finally:
            closed.set()

    sink = RecordingSink(block_on_delta=True)
    runtime = AgentRuntime(model=FunctionModel(stream_function=stream),
                           registry=default_registry(), builtin_delta_delay=0)
    task = asyncio.create_task(runtime.execute(make_scope("q", sink=sink)))
    await sink.first_delta.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert closed.is_set()


async def test_event_sink_failures_propagate_unchanged() -> None:
    sink = RecordingSink(fail_on="partial_result")
    with pytest.raises(StorageUnavailable):
        await builtin_runtime().execute(make_scope("hello", sink=sink))


async def test_unknown_agent_is_an_internal_failure() -> None:
    with pytest.raises(AgentFailure) as caught:
        await builtin_runtime().execute(make_scope("q", sink=RecordingSink(), agent="ghost"))
    assert caught.value.code == "internal" and caught.value.retryable is False


def test_model_info_labels_only_the_builtin_model_as_demo() -> None:
    assert builtin_runtime().model_info() == {"name": "builtin", "demo": True}
    assert builtin_runtime().has_agent("supervisor")
    assert not builtin_runtime().has_agent("ghost")


# ---- registry ---------------------------------------------------------------------------

def test_default_registry_is_fresh_and_holds_builtin_tools_and_the_supervisor() -> None:
    first, second = default_registry(), default_registry()
    assert first is not second
    builtins = ["calculator", "current_time", "search_threads", "send_notification"]
    assert [t.name for t in first.tools()] == builtins
    assert first.get_agent("supervisor").tools == tuple(builtins)
    assert [t.name for t in first.tools() if t.requires_approval] == ["send_notification"]
    first.add_tool(ToolSpec("extra", _extra, "extra"))
    assert [t.name for t in second.tools()] == builtins


def test_approval_tools_marks_registered_tools_and_refuses_unknown_names() -> None:
    registry = default_registry()
    registry.require_approval(["calculator"])
    assert registry.get_tool("calculator").requires_approval
    assert not registry.get_tool("current_time").requires_approval
    with pytest.raises(ConfigError, match="RUNWIRE_APPROVAL_TOOLS: no tool named nope"):
        registry.require_approval(["nope"])
    with pytest.raises(ConfigError, match="RUNWIRE_APPROVAL_TOOLS"):
        load_settings(approval_tools="calculator, 9bad")
    assert load_settings(approval_tools="calculator, current_time").approval_tools == (
        "calculator", "current_time")


async def _extra() -> str:
    return "extra"


def _sync() -> str:
    return "sync"


def test_registry_refuses_duplicates_unknown_tools_and_sync_functions() -> None:
    registry = default_registry()
    with pytest.raises(ConfigError, match="already registered"):
        registry.add_tool(ToolSpec("calculator", _extra, "dup"))
    with pytest.raises(ConfigError, match="unknown tools: nope"):
        registry.add_agent(AgentSpec("helper", "h", "i", tools=("nope",)))
    with pytest.raises(ConfigError, match="async def"):
        ToolSpec("sync", _sync, "not async")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="name"):
        ToolSpec("bad name!", _extra, "spaces")
    with pytest.raises(KeyError):
        registry.get_agent("ghost")


def register_extra(registry: AgentRegistry) -> None:
    """A user module's registry hook (used through load_user_registry)."""
    registry.add_tool(ToolSpec("extra", _extra, "an extra tool"))
    registry.add_agent(AgentSpec("helper", "helps", "be helpful", tools=("extra",)))


def test_load_user_registry_calls_the_named_callable_with_runwires_registry() -> None:
    registry = default_registry()
    load_user_registry("tests.test_agents:register_extra", registry)
    assert registry.get_agent("helper").tools == ("extra",)
    assert registry.has_agent("supervisor")


@pytest.mark.parametrize(("spec", "message"), [
    ("no_colon_here", "must look like"),
    ("runwire.does_not_exist:hook", "cannot import"),
    ("runwire.ids:no_such_hook", "no attribute"),
    ("runwire.agents.registry:SUPERVISOR", "not callable"),
    ("tests.test_agents:_extra", "not async"),
    ("tests.test_agents:test_default_registry_is_fresh_and_holds_builtin_tools_and_the_supervisor",
     "failed"),
])
def test_load_user_registry_rejects_bad_specs_with_a_config_error(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_user_registry(spec, default_registry())
