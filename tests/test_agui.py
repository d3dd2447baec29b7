"""``POST /ag-ui`` (SPEC 8): driven by the official AG-UI client (npm ``@ag-ui/client``,
tests/agui/run.mjs), which verifies the event sequence and builds its message list from
it; the mapping itself table-tested against the official Python event models."""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
from ag_ui.core import Event
from pydantic import TypeAdapter

from runwire.api.agui_map import AgUiMapper

from .conftest import ServerHandle, missing_service
from .helpers import api, client

AGUI_DIR = Path(__file__).parent / "agui"
EVENT = TypeAdapter(Event)


async def official_client(server: ServerHandle, text: str, *, user: str = "alice",
                          scope: str = "", thread_id: str | None = None,
                          resume: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Run `text` through @ag-ui/client's HttpAgent; its JSON report."""
    node = shutil.which("node")
    if node is None or not (AGUI_DIR / "node_modules" / "@ag-ui" / "client").is_dir():
        missing_service("node and tests/agui/node_modules (make agui-client) are needed")
    proc = await asyncio.create_subprocess_exec(
        node or "node", str(AGUI_DIR / "run.mjs"), f"{server.base_url}/ag-ui",
        server.token(user, scope=scope), thread_id or f"t-{uuid.uuid4().hex[:12]}",
        uuid.uuid4().hex, text, *([json.dumps(resume)] if resume else []),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    report: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return report


async def test_the_official_client_accepts_a_run_with_a_tool_call(server: ServerHandle) -> None:
    async with client(server) as tab:
        report = await official_client(server, "what is 12*(3+4)?")
        assert report["ok"], report["error"]
        # deltas arrive in as many pieces as the writer's batches made: one per run of them
        events = [e for i, e in enumerate(report["events"])
                  if e != "TEXT_MESSAGE_CONTENT" or report["events"][i - 1] != e]
        assert events == [
            "RUN_STARTED",
            "REASONING_START", "REASONING_MESSAGE_START", "REASONING_MESSAGE_CONTENT",
            "REASONING_MESSAGE_END", "REASONING_END",
            "TOOL_CALL_START", "TOOL_CALL_ARGS", "TOOL_CALL_END", "TOOL_CALL_RESULT",
            "TEXT_MESSAGE_START", "TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_END",
            "RUN_FINISHED"]
        roles = [m["role"] for m in report["messages"]]
        assert roles == ["user", "reasoning", "assistant", "tool", "assistant"]
        call = report["messages"][2]["toolCalls"][0]
        assert call["function"]["name"] == "calculator"
        assert json.loads(call["function"]["arguments"]) == {"expression": "12*(3+4)"}
        assert json.loads(report["messages"][3]["content"])["result"] == 84
        assert "84" in report["messages"][4]["content"] and "84" in report["result"]
        assert report["outcome"] == "success"
        # the same run shows live on the user's WebSocket
        done = await tab.until(lambda f: f["type"] == "agent_completed")
        assert any(f["type"] == "message_created" for f in done)


async def test_a_sub_agent_is_a_step(server_factory: Any) -> None:
    server = server_factory(agents="examples.weather_agents:registry")
    report = await official_client(server, "ask weather: what's the weather in Paris?",
                                   scope="weather:read")
    assert report["ok"], report["error"]
    events = report["events"]
    start, end = events.index("STEP_STARTED"), events.index("STEP_FINISHED")
    inside = events[start:end]
    assert inside.count("TOOL_CALL_START") == 1 and "TEXT_MESSAGE_END" in inside
    assert events.count("STEP_STARTED") == events.count("STEP_FINISHED") == 1
    assert events[-1] == "RUN_FINISHED"


async def test_a_call_waiting_for_approval_is_an_interrupt_and_resume_decides_it(
    server: ServerHandle,
) -> None:
    tid = f"t-{uuid.uuid4().hex[:12]}"
    report = await official_client(server, "notify bob: the build is green", thread_id=tid)
    assert report["ok"], report["error"]
    assert report["events"][-1] == "RUN_FINISHED" and report["outcome"] == "interrupt"
    [interrupt] = report["interrupts"]
    assert interrupt["reason"] == "tool_approval" and interrupt["toolCallId"]
    assert interrupt["id"].endswith("/" + interrupt["toolCallId"]) and interrupt["expiresAt"]
    # the run waits for the decision, like on the WebSocket
    async with api(server) as http:
        run_id = interrupt["id"].split("/")[0]
        assert (await http.get(f"/api/runs/{run_id}")).json()["status"] == "waiting"
    resumed = await official_client(server, "notify bob: the build is green", thread_id=tid,
                                    resume=[{"interruptId": interrupt["id"],
                                             "status": "resolved",
                                             "payload": {"approved": True}}])
    assert resumed["ok"], resumed["error"]
    assert resumed["outcome"] == "success" and resumed["events"][-1] == "RUN_FINISHED"
    assert "TOOL_CALL_START" in resumed["events"] and "TOOL_CALL_RESULT" in resumed["events"]
    tool = [m for m in resumed["messages"] if m["role"] == "tool"]
    assert tool and "error" not in tool[0]["content"]
    again = await official_client(server, "x", thread_id=tid, resume=[
        {"interruptId": interrupt["id"], "status": "resolved"}])
    assert again["runError"] is not None and again["runError"]["code"] == "conflict"
    other = await official_client(server, "x", user="mallory", thread_id=tid, resume=[
        {"interruptId": interrupt["id"], "status": "cancelled"}])
    assert other["runError"] is not None and other["runError"]["code"] == "not_found"


async def test_another_users_thread_is_a_run_error_not_found(server: ServerHandle) -> None:
    async with api(server, "bob") as bob:
        tid = (await bob.post("/api/threads", json={"title": "bob's"})).json()["thread_id"]
    report = await official_client(server, "hello", thread_id=tid)
    assert report["runError"] is not None and report["runError"]["code"] == "not_found"
    assert report["events"][-1] == "RUN_ERROR"
    async with api(server, "bob") as bob:
        page = (await bob.get(f"/api/threads/{tid}/messages")).json()
        assert page["items"] == []  # nothing was written into bob's thread


async def test_a_new_thread_id_becomes_the_users_thread_and_is_reused(
    server: ServerHandle,
) -> None:
    tid = f"t-{uuid.uuid4().hex[:12]}"
    assert (await official_client(server, "first", thread_id=tid))["ok"]
    assert (await official_client(server, "second", thread_id=tid))["ok"]
    async with api(server) as http:
        items = (await http.get(f"/api/threads/{tid}/messages")).json()["items"]
        assert [(m["role"], m["content"]) for m in items if m["role"] == "user"] == [
            ("user", "first"), ("user", "second")]


async def test_unusable_input_is_a_run_error_and_a_non_input_a_422(
    server: ServerHandle,
) -> None:
    base = {"threadId": "t1", "runId": "r1", "state": {}, "tools": [], "context": [],
            "forwardedProps": {}}
    async with api(server) as http:
        for body in ({**base, "messages": []},
                     {**base, "messages": [{"id": "a", "role": "assistant", "content": "x"}]},
                     {**base, "threadId": "bad id!", "messages": [
                         {"id": "m", "role": "user", "content": "hi"}]}):
            async with http.stream("POST", "/ag-ui", json=body) as resp:
                assert resp.status_code == 200
                events = [json.loads(line[len("data: "):]) async for line in resp.aiter_lines()
                          if line.startswith("data: ")]
            assert [e["type"] for e in events] == ["RUN_STARTED", "RUN_ERROR"], body
            assert events[-1]["code"] == "validation_error"
        for bad in ({"messages": "nope"}, {**base}, []):
            resp = await http.post("/ag-ui", json=bad)
            assert resp.status_code == 422, bad
            assert resp.headers["content-type"].startswith("application/problem+json")
        assert (await http.post("/ag-ui", json=base, headers={"Authorization": "Bearer x"})
                ).status_code == 401
        assert (await http.get("/api/threads")).json()["items"] == []  # nothing stored


# ---- the mapping, with data --------------------------------------------------------------


def frame(type: str, **payload: Any) -> dict[str, Any]:
    return {"type": type, "payload": payload}


def mapped(*frames: dict[str, Any]) -> list[dict[str, Any]]:
    mapper = AgUiMapper("T", "R")
    events = mapper.started()
    for f in frames:
        events += mapper.feed(f)
    out = []
    for e in events:  # every event is valid for the official models
        data = json.loads(e.model_dump_json(by_alias=True))
        EVENT.validate_python(data)
        out.append(data)
    return out


def test_nested_sub_agents_open_and_close_steps_in_order() -> None:
    got = mapped(
        frame("agent_started", agent_name="boss"),
        frame("tool_executing", agent_name="boss", tool_name="a", tool_args={}, tool_call_id="1"),
        frame("partial_result", agent_name="a", message_id="ma", delta="x"),
        frame("tool_executing", agent_name="b", tool_name="t", tool_args={"k": 1},
              tool_call_id="2"),
        frame("tool_completed", agent_name="b", tool_name="t", tool_call_id="2", result=1),
        frame("agent_response", agent_name="a", message_id="ma", content="x"),
        frame("tool_completed", agent_name="boss", tool_name="a", tool_call_id="1", result="x"),
        frame("agent_completed", status="completed", result="done", usage={"input_tokens": 3}),
    )
    kinds = [(e["type"], e.get("stepName") or e.get("messageId") or e.get("toolCallId"))
             for e in got]
    assert kinds == [
        ("RUN_STARTED", None),
        ("TOOL_CALL_START", "1"), ("TOOL_CALL_ARGS", "1"), ("TOOL_CALL_END", "1"),
        ("STEP_STARTED", "a"), ("TEXT_MESSAGE_START", "ma"), ("TEXT_MESSAGE_CONTENT", "ma"),
        ("TEXT_MESSAGE_END", "ma"), ("STEP_STARTED", "b"),
        ("TOOL_CALL_START", "2"), ("TOOL_CALL_ARGS", "2"), ("TOOL_CALL_END", "2"),
        ("TOOL_CALL_RESULT", "2-result"), ("STEP_FINISHED", "b"),
        ("STEP_FINISHED", "a"), ("TOOL_CALL_RESULT", "1-result"),
        ("RUN_FINISHED", None)]
    assert got[-1]["outcome"] == {"type": "success"} and got[-1]["result"] == "done"
    assert got[-1]["usage"] == [{"inputTokens": 3}]


def test_errors_cancellation_and_approvals_end_the_run_once() -> None:
    error = mapped(frame("partial_result", agent_name="supervisor", message_id="m", delta="a"),
                   frame("agent_error", code="timeout", message="too slow", retryable=True),
                   frame("agent_completed", status="completed"))
    assert [e["type"] for e in error] == ["RUN_STARTED", "TEXT_MESSAGE_START",
                                         "TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_END", "RUN_ERROR"]
    assert error[-1]["code"] == "timeout"
    cancelled = mapped(frame("agent_completed", status="cancelled", result=""))
    assert cancelled[-1]["outcome"] == {"type": "cancelled"}
    waiting = mapped(frame("approval_required", agent_name="supervisor", tool_call_id="c1",
                           tool_name="send_notification", tool_args={"to": "bo"},
                           expires_at="2026-12-03T00:00:00Z"))
    outcome = waiting[-1]["outcome"]
    assert outcome["type"] == "interrupt"
    assert outcome["interrupts"][0]["toolCallId"] == "c1"
    assert outcome["interrupts"][0]["id"] == "/c1"  # "<run_id>/<tool_call_id>" (no run_id here)
    failed = mapped(frame("tool_completed", agent_name="supervisor", tool_name="x",
                          tool_call_id="9", error="boom"))
    assert failed[-1]["content"] == "error: boom"


@pytest.mark.parametrize("kind", ["message_created", "agent_progress", "agent_started"])
def test_events_without_an_ag_ui_counterpart_are_left_out(kind: str) -> None:
    assert [e["type"] for e in mapped(frame(kind, agent_name="supervisor"))] == ["RUN_STARTED"]
