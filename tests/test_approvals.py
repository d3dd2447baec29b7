"""Human approval of tool calls (SPEC 7) against a real server: pause, decide over the
WebSocket and REST, resume (same run, one agent_started, one terminal event), deny,
timeout, stop while waiting, restart while waiting, races."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from runwire.client import RunwireClient

from .conftest import ServerHandle
from .helpers import Frame, api, client, count_rows

TERMINAL = ("agent_completed", "agent_error")


def of_run(frames: list[Frame], run_id: str) -> list[Frame]:
    return [f for f in frames if f.get("run_id") == run_id]


async def pause(c: RunwireClient, content: str = "notify bob: the build is green",
                **extra: Any) -> tuple[str, str, list[Frame]]:
    """Send `content` and collect frames until its run asks for approval; returns (run_id,
    thread_id, frames)."""
    message_id = await c.send_message(content, **extra)
    frames = await c.until(lambda f: f["type"] in ("approval_required", *TERMINAL, "error"))
    ack = next(f for f in frames if f["type"] == "message_ack"
               and f["payload"]["message_id"] == message_id)
    assert frames[-1]["type"] == "approval_required", frames[-1]
    return ack["payload"]["run_id"], ack["payload"]["thread_id"], frames


async def until_end(c: RunwireClient, run_id: str, timeout: float = 15.0) -> list[Frame]:
    return await c.until(lambda f: f["type"] in TERMINAL and f.get("run_id") == run_id,
                         timeout=timeout)


async def run_status(server: ServerHandle, run_id: str, user: str = "alice") -> str:
    async with api(server, user) as http:
        got = await http.get(f"/api/runs/{run_id}")
    assert got.status_code == 200, got.text
    status: str = got.json()["status"]
    return status


async def test_approve_runs_the_tool_and_the_answer_uses_its_result(server: ServerHandle) -> None:
    async with client(server) as c:
        run_id, _, before = await pause(c)
        asked = before[-1]
        assert asked["run_id"] == run_id and isinstance(asked["seq"], int)
        payload = asked["payload"]
        assert payload["tool_name"] == "send_notification"
        assert payload["tool_args"] == {"to": "bob", "text": "the build is green"}
        assert payload["agent_name"] == "supervisor" and payload["expires_at"].endswith("Z")
        # Nothing ran yet: no tool events for the call, and the run holds no slot.
        assert not [f for f in before if f["type"].startswith("tool_")]
        assert await run_status(server, run_id) == "waiting"
        assert server.services.runs.scheduler.running == 0
        await c.send("approve_tool", {"run_id": run_id, "tool_call_id": payload["tool_call_id"],
                                      "approved": True})
        after = await until_end(c, run_id)
    resolved = next(f for f in after if f["type"] == "approval_resolved")
    assert resolved["payload"] == {"tool_call_id": payload["tool_call_id"], "approved": True,
                                   "reason": None, "args": payload["tool_args"]}
    executing = next(f for f in after if f["type"] == "tool_executing")
    assert executing["payload"]["tool_args"] == payload["tool_args"]
    assert executing["payload"]["tool_call_id"] == payload["tool_call_id"]
    completed = next(f for f in after if f["type"] == "tool_completed")
    assert completed["payload"]["result"] == {"sent": True, "to": "bob",
                                              "text": "the build is green"}
    end = after[-1]
    assert end["type"] == "agent_completed" and end["payload"]["status"] == "completed"
    assert "Sent the notification to **bob**" in end["payload"]["result"]
    everything = of_run(before + after, run_id)
    assert [f["type"] for f in everything].count("agent_started") == 1
    assert sum(f["type"] in TERMINAL for f in everything) == 1
    seqs = [f["seq"] for f in everything]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert await run_status(server, run_id) == "completed"


async def test_rest_approval_with_edited_args(server: ServerHandle) -> None:
    async with client(server) as c:
        run_id, _, before = await pause(c)
        call_id = before[-1]["payload"]["tool_call_id"]
        async with api(server) as http:
            listed = await http.get(f"/api/runs/{run_id}/approvals")
            assert [p["tool_call_id"] for p in listed.json()] == [call_id]
            bad = await http.post(f"/api/runs/{run_id}/approvals", json={
                "tool_call_id": call_id, "approved": True, "args": {"to": "carol"}})
            assert bad.status_code == 422 and bad.json()["code"] == "validation_error"
            assert "text" in bad.json()["detail"]
            assert await run_status(server, run_id) == "waiting"  # nothing decided
            edited = {"to": "carol", "text": "edited by the user"}
            ok = await http.post(f"/api/runs/{run_id}/approvals", json={
                "tool_call_id": call_id, "approved": True, "args": edited})
            assert ok.status_code == 200, ok.text
            assert ok.json() == {"run_id": run_id, "tool_call_id": call_id, "approved": True,
                                 "reason": None, "args": edited, "resumed": True}
            again = await http.post(f"/api/runs/{run_id}/approvals", json={
                "tool_call_id": call_id, "approved": False})
            assert again.status_code == 409 and again.json()["code"] == "conflict"
        after = await until_end(c, run_id)
    executing = next(f for f in after if f["type"] == "tool_executing")
    assert executing["payload"]["tool_args"] == edited
    end = after[-1]
    assert end["type"] == "agent_completed"
    assert "Sent the notification to **carol**: “edited by the user”" in end["payload"]["result"]


async def test_deny_tells_the_model_which_answers(server: ServerHandle) -> None:
    async with client(server) as c:
        run_id, _, before = await pause(c)
        call_id = before[-1]["payload"]["tool_call_id"]
        await c.send("approve_tool", {"run_id": run_id, "tool_call_id": call_id,
                                      "approved": False, "reason": "not now"})
        after = await until_end(c, run_id)
        # A second decision on the same call: conflict.
        await c.send("approve_tool", {"run_id": run_id, "tool_call_id": call_id,
                                      "approved": True}, request_id="again")
        error = (await c.until(lambda f: f["type"] == "error"))[-1]
    assert error["payload"]["code"] == "conflict" and error["payload"]["request_id"] == "again"
    resolved = next(f for f in after if f["type"] == "approval_resolved")
    assert resolved["payload"]["approved"] is False
    assert resolved["payload"]["reason"] == "not now"
    completed = next(f for f in after if f["type"] == "tool_completed")
    assert completed["payload"]["error"] == "denied: not now"
    end = after[-1]
    assert end["type"] == "agent_completed" and end["payload"]["status"] == "completed"
    assert "did not send the notification to **bob**: denied: not now" in end["payload"]["result"]


async def test_unknown_or_foreign_calls_are_not_found(server: ServerHandle) -> None:
    async with client(server) as c:
        run_id, _, before = await pause(c)
        call_id = before[-1]["payload"]["tool_call_id"]
        async with client(server, "mallory") as m:
            await m.send("approve_tool", {"run_id": run_id, "tool_call_id": call_id,
                                          "approved": True}, request_id="steal")
            error = (await m.until(lambda f: f["type"] == "error"))[-1]
        assert error["payload"]["code"] == "not_found"
        async with api(server, "mallory") as http:
            got = await http.post(f"/api/runs/{run_id}/approvals",
                                  json={"tool_call_id": call_id, "approved": True})
            assert got.status_code == 404
            assert (await http.get(f"/api/runs/{run_id}/approvals")).status_code == 404
        await c.send("approve_tool", {"run_id": run_id, "tool_call_id": "call_nope",
                                      "approved": True}, request_id="nope")
        error = (await c.until(lambda f: f["type"] == "error"))[-1]
        assert error["payload"]["code"] == "not_found"
        await c.send("approve_tool", {"run_id": run_id, "tool_call_id": call_id,
                                      "approved": "yes"}, request_id="bad")
        error = (await c.until(lambda f: f["type"] == "error"))[-1]
        assert error["payload"]["code"] == "validation_error"
        assert await run_status(server, run_id) == "waiting"


async def test_stop_while_waiting_cancels(server: ServerHandle) -> None:
    async with client(server) as c:
        run_id, thread_id, before = await pause(c)
        call_id = before[-1]["payload"]["tool_call_id"]
        await c.send("stop_agent", {"run_id": run_id})
        after = await until_end(c, run_id)
        end = after[-1]
        assert end["type"] == "agent_completed" and end["payload"]["status"] == "cancelled"
        assert await run_status(server, run_id) == "cancelled"
        async with api(server) as http:
            late = await http.post(f"/api/runs/{run_id}/approvals",
                                   json={"tool_call_id": call_id, "approved": True})
            assert late.status_code == 409
            assert (await http.get("/api/approvals")).json() == []
        # The thread is free again.
        _, frames = await c.ask("what is 2+3?", thread_id=thread_id)
        assert frames[-1]["type"] == "agent_completed"


async def test_a_waiting_run_holds_its_thread_and_interrupt_cancels_it(
        server: ServerHandle) -> None:
    async with client(server) as c:
        run_id, thread_id, before = await pause(c)
        call_id = before[-1]["payload"]["tool_call_id"]
        # enqueue (default): the next message waits behind the waiting run
        second_id = await c.send_message("what is 6*7?", thread_id=thread_id)
        acks = await c.until(lambda f: f["type"] == "message_ack"
                             and f["payload"]["message_id"] == second_id)
        second_run = acks[-1]["payload"]["run_id"]
        assert await run_status(server, second_run) == "queued"
        await c.send("approve_tool", {"run_id": run_id, "tool_call_id": call_id,
                                      "approved": True})
        first = await until_end(c, run_id)
        second = await until_end(c, second_run)
        assert first[-1]["payload"]["status"] == "completed"
        assert second[-1]["type"] == "agent_completed" and "42" in second[-1]["payload"]["result"]
        # interrupt: a new message cancels the waiting run
        run_id, _, _ = await pause(c, thread_id=thread_id)
        await c.send_message("what is 1+1?", thread_id=thread_id,
                             settings={"multitask_strategy": "interrupt"})
        ended = await until_end(c, run_id)
        assert ended[-1]["payload"]["status"] == "cancelled"


async def test_timeout_denies_once_and_the_execution_timeout_stops_while_waiting(
        server_factory: Any) -> None:
    # It waits longer (1.5 s) than the run may execute (1 s): the run still completes, and
    # its duration counts only its execution.
    server = server_factory(approval_timeout=1.5, agent_execution_timeout=1.0,
                            run_lease_seconds=1.0)
    async with client(server) as c:
        run_id, _, before = await pause(c)
        after = await until_end(c, run_id)
    waited = (datetime.fromisoformat(after[-1]["timestamp"].replace("Z", "+00:00"))
              - datetime.fromisoformat(before[-1]["timestamp"].replace("Z", "+00:00")))
    assert waited.total_seconds() >= 1.5
    assert after[-1]["payload"]["status"] == "completed"
    assert after[-1]["payload"]["duration_ms"] < 1000
    resolved = [f for f in after if f["type"] == "approval_resolved"]
    assert len(resolved) == 1
    assert resolved[0]["payload"]["approved"] is False
    assert resolved[0]["payload"]["reason"] == "timed out"
    completed = next(f for f in after if f["type"] == "tool_completed")
    assert completed["payload"]["error"] == "denied: timed out"
    assert after[-1]["type"] == "agent_completed"
    async with api(server) as http:
        metrics = (await http.get("/metrics")).text
    decisions = [line for line in metrics.splitlines()
                 if line.startswith("runwire_approval_decisions_total{")]
    assert len(decisions) == 1 and 'outcome="timed_out"' in decisions[0]
    assert decisions[0].endswith(" 1.0")
    assert "runwire_approval_latency_seconds_count" in metrics
    assert "runwire_runs_waiting" in metrics


async def test_concurrent_approve_and_deny_exactly_one_wins(server: ServerHandle) -> None:
    async with client(server) as c, client(server) as other:
        run_id, _, before = await pause(c)
        call_id = before[-1]["payload"]["tool_call_id"]
        decision = {"run_id": run_id, "tool_call_id": call_id}
        async with api(server) as http:
            rest, _, _ = await asyncio.gather(
                http.post(f"/api/runs/{run_id}/approvals",
                          json={"tool_call_id": call_id, "approved": False, "reason": "rest"}),
                c.send("approve_tool", {**decision, "approved": True}, request_id="ws1"),
                other.send("approve_tool", {**decision, "approved": False, "reason": "ws2"},
                           request_id="ws2"))
        after = await until_end(c, run_id)
        # Every connection of the user sees the (one) decision.
        seen = await other.until(lambda f: f["type"] in TERMINAL and f.get("run_id") == run_id)
    resolved = [f for f in after if f["type"] == "approval_resolved"]
    assert len(resolved) == 1
    assert [f["payload"] for f in seen if f["type"] == "approval_resolved"] == \
        [resolved[0]["payload"]]
    conflicts = [f for f in after + seen if f["type"] == "error"
                 and f["payload"]["code"] == "conflict"]
    losers = len(conflicts) + (rest.status_code == 409)
    assert losers == 2, (rest.status_code, conflicts)
    assert rest.status_code in (200, 409)
    assert sum(f["type"] in TERMINAL for f in of_run(after, run_id)) == 1


async def test_restart_while_waiting_then_approve(server_factory: Any) -> None:
    first = server_factory()
    async with client(first) as c:
        run_id, thread_id, before = await pause(c)
    call_id = before[-1]["payload"]["tool_call_id"]
    second = server_factory(replacing=first)
    assert await run_status(second, run_id) == "waiting"  # the restart did not end it
    async with client(second) as c:
        await c.send("approve_tool", {"run_id": run_id, "tool_call_id": call_id,
                                      "approved": True})
        after = await until_end(c, run_id)
        assert after[-1]["type"] == "agent_completed"
        assert "Sent the notification to **bob**" in after[-1]["payload"]["result"]
        async with api(second) as http:
            events = (await http.get(f"/api/threads/{thread_id}/events")).json()["items"]
    types = [e["type"] for e in events if e.get("run_id") == run_id]
    assert types.count("agent_started") == 1
    assert sum(t in TERMINAL for t in types) == 1
    assert types.index("approval_required") < types.index("approval_resolved") \
        < types.index("tool_executing") < types.index("tool_completed")
    assert await count_rows(second, "run_approvals") == [1]


async def test_fake_provider_several_calls_resume_when_all_are_decided(
        server_factory: Any, monkeypatch: Any) -> None:
    from .fake_openai import FakeOpenAIServer

    fake = FakeOpenAIServer().start()
    try:
        monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
        server = server_factory(model="openai-chat:fake-model")
        async with client(server) as c:
            message_id = await c.send_message("multi")
            frames = await c.until(lambda f: f["type"] == "approval_required"
                                   and f["payload"]["tool_args"]["to"] == "bob")
            ack = next(f for f in frames if f["type"] == "message_ack"
                       and f["payload"]["message_id"] == message_id)
            run_id = ack["payload"]["run_id"]
            asked = [f for f in frames if f["type"] == "approval_required"]
            assert [f["payload"]["tool_args"]["to"] for f in asked] == ["ann", "bob"]
            # The call that needs no approval ran in the same turn.
            done = [f for f in frames if f["type"] == "tool_completed"]
            assert [(f["payload"]["tool_name"], f["payload"]["result"]["result"])
                    for f in done] == [("calculator", 5)]
            ann, bob = (f["payload"]["tool_call_id"] for f in asked)
            async with api(server) as http:
                first = await http.post(f"/api/runs/{run_id}/approvals",
                                        json={"tool_call_id": ann, "approved": True})
                assert first.status_code == 200 and first.json()["resumed"] is False
                assert await run_status(server, run_id) == "waiting"
                requests_before = len(fake.fake.requests)
                second = await http.post(f"/api/runs/{run_id}/approvals", json={
                    "tool_call_id": bob, "approved": False, "reason": "not bob"})
                assert second.status_code == 200 and second.json()["resumed"] is True
            after = await until_end(c, run_id)
        end = after[-1]
        assert end["type"] == "agent_completed", end
        result = end["payload"]["result"]
        assert result.startswith("Results: ") and "denied: not bob" in result
        assert '"to":"ann"' in result.replace(" ", "") and "5" in result
        assert [f["type"] for f in of_run(frames + after, run_id)].count("agent_started") == 1
        # The resumed request carries the three calls and their results.
        assert len(fake.fake.requests) == requests_before + 1
        messages = fake.fake.requests[-1]["messages"]
        assistant = next(m for m in messages if m.get("tool_calls"))
        ids = [call["id"] for call in assistant["tool_calls"]]
        assert ann in ids and bob in ids and len(ids) == 3
        results = {m["tool_call_id"]: m["content"] for m in messages if m["role"] == "tool"}
        assert set(results) == set(ids)
        assert "sent" in results[ann] and results[bob] == "denied: not bob"
        assert end["payload"]["usage"]["requests"] == 2
    finally:
        fake.stop()


async def test_approval_tools_setting_makes_a_registered_tool_wait(server_factory: Any) -> None:
    server = server_factory(agents="tests.agents_fixture:register", approval_tools="limited")
    async with client(server) as c:
        run_id, _, before = await pause(c, '/tool limited {"note": "x"}')
        asked = before[-1]["payload"]
        assert (asked["tool_name"], asked["tool_args"]) == ("limited", {"note": "x"})
        await c.send("approve_tool", {"run_id": run_id, "tool_call_id": asked["tool_call_id"],
                                      "approved": True})
        after = await until_end(c, run_id)
    completed = next(f for f in after if f["type"] == "tool_completed")
    assert completed["payload"]["result"] == "ok x"
    assert after[-1]["type"] == "agent_completed"


async def test_a_sub_agent_cannot_pause_the_run_its_call_fails(server_factory: Any) -> None:
    server = server_factory(agents="tests.agents_fixture:register_notifier")
    async with client(server) as c:
        _, frames = await c.ask("ask notifier: notify bob: hi")
    assert not [f for f in frames if f["type"] == "approval_required"]
    failed = next(f for f in frames if f["type"] == "tool_completed"
                  and f["payload"]["tool_name"] == "send_notification")
    assert failed["payload"]["agent_name"] == "notifier"
    assert "needs the user's approval" in failed["payload"]["error"]
    assert frames[-1]["type"] == "agent_completed"
