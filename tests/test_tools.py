"""The built-in tools and the tool dispatcher (permissions, timeouts, events)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
from pydantic_ai import RunContext
from pydantic_ai.models.test import TestModel
from pydantic_ai.usage import RunUsage

from runwire.agents.dispatcher import ToolCall, ToolDispatcher, ToolErrored, ToolSucceeded
from runwire.agents.registry import AgentRegistry, ToolSpec
from runwire.agents.scope import RunScope, SearchHit
from runwire.agents.tools import ToolError, calculator, current_time, search_threads, snippet
from runwire.errors import StorageUnavailable
from runwire.ids import MessageId, RunId, ThreadId, UserId
from runwire.protocol.codes import RunEventType


class RecordingSink:
    def __init__(self) -> None:
        self.events: list[tuple[RunEventType, dict[str, Any]]] = []

    async def emit(self, type: RunEventType, payload: Mapping[str, Any]) -> None:
        self.events.append((type, dict(payload)))


class RecordingSearch:
    def __init__(self, hits: list[SearchHit] | None = None) -> None:
        self.calls: list[tuple[str, str, int]] = []
        self.hits = hits or []

    async def __call__(self, user_id: UserId, query: str, *, limit: int) -> list[SearchHit]:
        self.calls.append((user_id, query, limit))
        return self.hits


def make_scope(*, sink: RecordingSink | None = None, search: RecordingSearch | None = None,
               scopes: frozenset[str] = frozenset()) -> RunScope:
    return RunScope(
        user_id=UserId("alice"), thread_id=ThreadId("t-1"), run_id=RunId("r-1"),
        agent_name="supervisor", user_message="hi", user_message_id=MessageId("m-user"),
        assistant_message_id=MessageId("m-answer"), events=sink or RecordingSink(),
        search=search or RecordingSearch(), scopes=scopes)


# ---- calculator -------------------------------------------------------------------------

@pytest.mark.parametrize(("expression", "expected"), [
    ("12*(3+4)", 84), ("2**10", 1024), ("7/2", 3.5), ("7//2", 3), ("-3 + +2", -1),
    ("10 % 4", 2), ("6/3", 2), ("0.1 + 0.2", 0.3), ("2**-1", 0.5), ("-(2**3)", -8),
    ("(((1)))", 1), ("1.5e3 - 500", 1000),
])
async def test_calculator_evaluates_arithmetic_exactly(expression: str, expected: float) -> None:
    result = await calculator(expression)
    assert result == {"expression": expression, "result": expected}
    assert type(result["result"]) is type(expected)


async def test_calculator_keeps_big_integers_exact() -> None:
    result = await calculator("2**64 + 1")
    assert result["result"] == 18446744073709551617


@pytest.mark.parametrize(("expression", "message"), [
    ("().__class__", "attribute access"),
    ("(1).real", "attribute access"),
    ("x + 1", "names are not allowed"),
    ("__import__('os').system('true')", "function calls are not allowed"),
    ("abs(-1)", "function calls are not allowed"),
    ("'a' * 3", "only numbers"),
    ("[1, 2]", "List is not allowed"),
    ("lambda: 1", "lambdas are not allowed"),
    ("1 < 2", "comparisons are not allowed"),
    ("True + 1", "only numbers"),
    ("1j * 2", "only numbers"),
])
async def test_calculator_refuses_anything_but_arithmetic(expression: str, message: str) -> None:
    with pytest.raises(ToolError, match=message):
        await calculator(expression)


@pytest.mark.parametrize(("expression", "message"), [
    ("9**9**9", "exponents are limited"),
    ("10**101", "too large"),
    ("2**1000", "too large"),
    ("1" * 120, "number is too large"),
    ("1e999", "number is too large"),
    ("1e99 * 1e99", "result is too large"),
    ("(10**99) * (10**99)", "result is too large"),
])
async def test_calculator_refuses_huge_numbers_before_computing_them(
        expression: str, message: str) -> None:
    with pytest.raises(ToolError, match=message):
        await calculator(expression)


async def test_calculator_refuses_input_longer_than_500_characters() -> None:
    with pytest.raises(ToolError, match="longer than 500 characters"):
        await calculator("1+" * 250 + "1")


async def test_calculator_refuses_deep_nesting() -> None:
    with pytest.raises(ToolError, match="nested more than"):
        await calculator("-" * 60 + "1")
    with pytest.raises(ToolError, match="nested more than"):
        await calculator("(1+" * 60 + "1" + ")" * 60)


@pytest.mark.parametrize("expression", ["1/0", "1//0", "1%0", "0**-1", "1.0/0"])
async def test_calculator_reports_division_by_zero(expression: str) -> None:
    with pytest.raises(ToolError, match="division by zero"):
        await calculator(expression)


@pytest.mark.parametrize("expression", ["1 +", "", "   ", "2 ** ** 3"])
async def test_calculator_reports_malformed_expressions(expression: str) -> None:
    with pytest.raises(ToolError, match=r"not a valid arithmetic expression|empty"):
        await calculator(expression)


# ---- current_time -----------------------------------------------------------------------

async def test_current_time_in_a_valid_zone_reports_that_zones_offset() -> None:
    result = await current_time("Asia/Tokyo")
    assert result["timezone"] == "Asia/Tokyo"
    assert result["utc_offset"] == "+09:00"  # Japan has no DST
    assert result["iso"].endswith("+09:00")
    assert result["date"] == result["iso"][:10]


async def test_current_time_defaults_to_utc_and_accepts_city_names() -> None:
    assert (await current_time())["timezone"] == "UTC"
    assert (await current_time("utc"))["utc_offset"] == "+00:00"
    assert (await current_time("tokyo"))["timezone"] == "Asia/Tokyo"


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "Atlantis", "../../etc/passwd",
                                  "/etc/localtime", ""])
async def test_current_time_rejects_unknown_zones_with_a_clear_error(zone: str) -> None:
    with pytest.raises(ToolError, match="time zone"):
        await current_time(zone)


# ---- search_threads ---------------------------------------------------------------------

def tool_context(scope: RunScope) -> RunContext[RunScope]:
    return RunContext(deps=scope, model=TestModel(), usage=RunUsage())


async def test_search_threads_searches_only_the_run_owners_messages() -> None:
    hit = SearchHit(ThreadId("t-9"), "Budget", MessageId("m-9"), "user", "the Q3 budget is tight")
    search = RecordingSearch([hit])
    hits = await search_threads(tool_context(make_scope(search=search)), "  budget ")
    assert search.calls == [("alice", "budget", 5)]
    assert hits == [{"thread_id": "t-9", "title": "Budget", "message_id": "m-9", "role": "user",
                     "snippet": "the Q3 budget is tight"}]


async def test_search_threads_rejects_an_empty_query_without_searching() -> None:
    search = RecordingSearch()
    with pytest.raises(ToolError, match="empty"):
        await search_threads(tool_context(make_scope(search=search)), "   ")
    assert search.calls == []


def test_snippet_is_cut_around_the_match() -> None:
    text = "a " * 200 + "NEEDLE here" + " b" * 200
    cut = snippet(text, "needle", width=60)
    assert "NEEDLE" in cut
    assert cut.startswith("…") and cut.endswith("…")
    assert len(cut) <= 62


# ---- dispatcher -------------------------------------------------------------------------

async def _echo(value: str) -> str:
    return value


def dispatcher_for(spec: ToolSpec, *, sink: RecordingSink,
                   scopes: frozenset[str] = frozenset()) -> ToolDispatcher:
    registry = AgentRegistry()
    registry.add_tool(spec)
    return ToolDispatcher(registry=registry, scope=make_scope(sink=sink, scopes=scopes),
                          agent_name="supervisor", default_timeout=5.0)


async def test_dispatcher_emits_executing_then_completed_with_the_result() -> None:
    sink = RecordingSink()
    dispatcher = dispatcher_for(ToolSpec("echo", _echo, "echo"), sink=sink)
    outcome = await dispatcher.dispatch(ToolCall("echo", {"value": "x"}, "c-1"),
                                        lambda: _echo("x"))
    assert outcome == ToolSucceeded("x")
    assert [t for t, _ in sink.events] == ["tool_executing", "tool_completed"]
    assert sink.events[0][1] == {"agent_name": "supervisor", "tool_name": "echo",
                                 "tool_args": {"value": "x"}, "tool_call_id": "c-1"}
    completed = sink.events[1][1]
    assert completed["result"] == "x" and "error" not in completed
    assert isinstance(completed["duration_ms"], int) and completed["duration_ms"] >= 0


async def test_dispatcher_denies_a_tool_whose_scopes_are_not_granted_without_running_it() -> None:
    sink = RecordingSink()
    ran: list[bool] = []

    async def invoke() -> str:
        ran.append(True)
        return "secret"

    spec = ToolSpec("echo", _echo, "echo", required_scopes=frozenset({"admin", "ops"}))
    dispatcher = dispatcher_for(spec, sink=sink, scopes=frozenset({"ops"}))
    outcome = await dispatcher.dispatch(ToolCall("echo", {}, "c-1"), invoke)
    assert isinstance(outcome, ToolErrored) and outcome.kind == "denied"
    assert "admin" in outcome.message and "ops" not in outcome.message
    assert ran == []
    assert [t for t, _ in sink.events] == ["tool_executing", "tool_completed"]
    assert sink.events[1][1]["error"] == outcome.message


async def test_dispatcher_allows_a_tool_when_every_required_scope_is_granted() -> None:
    sink = RecordingSink()
    spec = ToolSpec("echo", _echo, "echo", required_scopes=frozenset({"admin"}))
    dispatcher = dispatcher_for(spec, sink=sink, scopes=frozenset({"admin", "other"}))
    assert await dispatcher.dispatch(ToolCall("echo", {}, "c"), lambda: _echo("ok")) == \
        ToolSucceeded("ok")


async def test_dispatcher_reports_a_timeout_as_a_tool_error() -> None:
    sink = RecordingSink()
    never = asyncio.Event()

    async def hang() -> None:
        await never.wait()

    dispatcher = dispatcher_for(ToolSpec("echo", _echo, "echo", timeout=0.01), sink=sink)
    outcome = await dispatcher.dispatch(ToolCall("echo", {}, "c"), hang)
    assert outcome == ToolErrored("timeout", "echo timed out after 0.01 s")
    assert sink.events[-1][1]["error"] == "echo timed out after 0.01 s"


async def test_dispatcher_reports_a_crashing_tool_without_leaking_its_message() -> None:
    sink = RecordingSink()

    async def crash() -> None:
        raise RuntimeError("password=hunter2")

    dispatcher = dispatcher_for(ToolSpec("echo", _echo, "echo"), sink=sink)
    outcome = await dispatcher.dispatch(ToolCall("echo", {}, "c"), crash)
    assert outcome == ToolErrored("failed", "echo failed unexpectedly (RuntimeError)")
    assert "hunter2" not in str(sink.events)


async def test_dispatcher_reports_an_unknown_tool() -> None:
    sink = RecordingSink()
    dispatcher = dispatcher_for(ToolSpec("echo", _echo, "echo"), sink=sink)
    outcome = await dispatcher.dispatch(ToolCall("nope", {}, "c"), lambda: _echo("x"))
    assert isinstance(outcome, ToolErrored) and outcome.kind == "unknown_tool"
    assert [t for t, _ in sink.events] == ["tool_executing", "tool_completed"]


async def test_dispatcher_lets_runwire_errors_end_the_run_after_reporting_the_call() -> None:
    sink = RecordingSink()

    async def storage_down() -> None:
        raise StorageUnavailable("db down")

    dispatcher = dispatcher_for(ToolSpec("echo", _echo, "echo"), sink=sink)
    with pytest.raises(StorageUnavailable):
        await dispatcher.dispatch(ToolCall("echo", {}, "c"), storage_down)
    assert sink.events[-1][0] == "tool_completed"
    assert sink.events[-1][1]["error"] == "db down"


async def test_dispatcher_tells_a_tools_own_timeout_from_the_call_deadline() -> None:
    sink = RecordingSink()

    async def upstream_timeout() -> None:
        raise TimeoutError

    dispatcher = dispatcher_for(ToolSpec("echo", _echo, "echo", timeout=5), sink=sink)
    outcome = await dispatcher.dispatch(ToolCall("echo", {}, "c"), upstream_timeout)
    assert outcome == ToolErrored("failed", "echo failed: a request it made timed out")
