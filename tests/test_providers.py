"""Real providers through one path, against a local fake OpenAI-compatible server:
streaming, tool calls, cancellation closing the provider stream, stalls, HTTP errors."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import update

from runwire.store.models import Run

from .conftest import ServerHandle
from .fake_openai import FakeOpenAIServer
from .helpers import client

TERMINAL = ("agent_completed", "agent_error")


@pytest.fixture
def fake_openai(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAIServer]:
    server = FakeOpenAIServer().start()
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    yield server
    server.stop()


@pytest.fixture
def provider_server(server_factory: Any, fake_openai: FakeOpenAIServer) -> ServerHandle:
    return server_factory(model="openai-chat:fake-model")  # type: ignore[no-any-return]


async def test_streamed_text_becomes_partial_results_and_usage(
    provider_server: ServerHandle,
) -> None:
    async with client(provider_server) as c:
        assert c.established["payload"]["model"] == {"name": "openai-chat:fake-model",
                                                     "demo": False}
        _, frames = await c.ask("hello there")
    deltas = [f["payload"]["delta"] for f in frames if f["type"] == "partial_result"]
    assert "".join(deltas) == "Hello from the fake model."
    end = frames[-1]
    assert end["type"] == "agent_completed" and end["payload"]["result"] == "Hello from the fake model."
    assert end["payload"]["usage"]["input_tokens"] == 11
    assert end["payload"]["usage"]["output_tokens"] == 7


async def test_tool_call_deltas_run_the_tool_and_the_result_goes_back(
    provider_server: ServerHandle, fake_openai: FakeOpenAIServer,
) -> None:
    async with client(provider_server) as c:
        _, frames = await c.ask("tool: 6*7")
    types = [f["type"] for f in frames]
    assert types.index("tool_executing") < types.index("tool_completed") < types.index("partial_result")
    done = next(f for f in frames if f["type"] == "tool_completed")
    assert done["payload"]["tool_name"] == "calculator"
    assert done["payload"]["result"]["result"] == 42
    assert frames[-1]["payload"]["result"] == "The answer is 42."
    second = fake_openai.fake.requests[-1]["messages"]
    assert any(m.get("role") == "tool" and "42" in str(m.get("content")) for m in second)


async def test_stop_agent_closes_the_provider_stream_quickly(
    provider_server: ServerHandle, fake_openai: FakeOpenAIServer,
) -> None:
    async with client(provider_server) as c:
        await c.send_message("slow")
        delta = (await c.until(lambda f: f["type"] == "partial_result", timeout=20))[-1]
        before = len(fake_openai.fake.disconnected_at)
        sent = time.monotonic()
        await c.send("stop_agent", {"run_id": delta["run_id"]})
        end = (await c.until(lambda f: f["type"] in TERMINAL, timeout=10))[-1]
        assert end["type"] == "agent_completed" and end["payload"]["status"] == "cancelled"
    closed = fake_openai.fake.disconnected_at[before:]
    assert closed, "the provider stream was never closed"
    took = closed[0] - sent
    assert took < 2.0, f"provider stream closed {took * 1000:.0f} ms after stop_agent"


async def test_a_stalled_stream_hits_the_execution_timeout(
    server_factory: Any, fake_openai: FakeOpenAIServer,
) -> None:
    server = server_factory(model="openai-chat:fake-model", agent_execution_timeout=0.5)
    async with client(server) as c:
        _, frames = await c.ask("stall", timeout=20)
    assert frames[-1]["type"] == "agent_error"
    assert frames[-1]["payload"]["code"] == "timeout"


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (429, True), (400, False)])
async def test_http_errors_become_model_error_with_the_right_retryable(
    provider_server: ServerHandle, status: int, retryable: bool,
) -> None:
    async with client(provider_server) as c:
        _, frames = await c.ask(f"fail {status}", timeout=60)
    end = frames[-1]
    assert end["type"] == "agent_error"
    assert end["payload"]["code"] == "model_error"
    assert end["payload"]["retryable"] is retryable


async def test_a_provider_error_before_anything_streamed_is_retried(
    provider_server: ServerHandle, fake_openai: FakeOpenAIServer,
) -> None:
    async with client(provider_server) as c:
        _, frames = await c.ask("fail once", timeout=60)
    assert frames[-1]["type"] == "agent_completed"
    assert frames[-1]["payload"]["result"] == "Hello from the fake model."
    assert sum(1 for r in fake_openai.fake.requests
               if r["messages"][-1].get("content") == "fail once") >= 2


async def test_an_open_provider_breaker_fails_runs_fast_and_retryable(
    provider_server: ServerHandle,
) -> None:
    async with client(provider_server) as c:
        for _ in range(2):  # 3 attempts each: the breaker opens after 5 failures
            _, frames = await c.ask("fail 500", timeout=60)
            assert frames[-1]["payload"]["code"] == "model_error"
        _, frames = await c.ask("hello", timeout=10)
    end = frames[-1]
    assert end["type"] == "agent_error" and end["payload"]["code"] == "model_error"
    assert end["payload"]["retryable"] is True and "failing" in end["payload"]["message"]


# ---- history: earlier runs' tool calls and results go back to the model ------------------

def request_for(fake: FakeOpenAIServer, prompt: str) -> list[dict[str, Any]]:
    """The messages of the first model request of the run started by `prompt`."""
    for body in fake.fake.requests:
        last = body["messages"][-1]
        if last.get("role") == "user" and last.get("content") == prompt:
            return list(body["messages"])
    raise AssertionError(f"no request for {prompt!r}")


def conversation(messages: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    """The messages as (role, what) without the system message: user/assistant texts,
    assistant tool calls as (name, args) lists, tool results by call id."""
    shown: list[tuple[str, Any]] = []
    for m in messages:
        if m["role"] == "system":
            continue
        if m["role"] == "assistant" and m.get("tool_calls"):
            shown.append(("call", [(c["id"], c["function"]["name"],
                                    json.loads(c["function"]["arguments"]))
                                   for c in m["tool_calls"]]))
        elif m["role"] == "tool":
            shown.append(("result", (m["tool_call_id"], json.loads(m["content"]))))
        else:
            shown.append((m["role"], m.get("content")))
    return shown


def assert_calls_paired(shown: list[tuple[str, Any]]) -> None:
    """Every tool call is answered by its result right after it, and no result is alone."""
    for i, (kind, what) in enumerate(shown):
        if kind == "call":
            results = [r for k, r in shown[i + 1:i + 1 + len(what)] if k == "result"]
            assert [r[0] for r in results] == [c[0] for c in what], shown
        if kind == "result":
            before = [w for k, w in shown[:i] if k == "call"]
            assert any(what[0] == c[0] for calls in before for c in calls), shown


async def test_the_next_run_gets_the_earlier_runs_tool_call_and_result_then_its_prompt(
    provider_server: ServerHandle, fake_openai: FakeOpenAIServer,
) -> None:
    async with client(provider_server) as c:
        ack, frames = await c.ask("tool: 6*7")
        assert frames[-1]["payload"]["result"] == "The answer is 42."
        thread = ack["payload"]["thread_id"]
        _, frames = await c.ask("and what was that?", thread_id=thread)
    assert frames[-1]["type"] == "agent_completed"
    sent = request_for(fake_openai, "and what was that?")
    assert sum(1 for m in sent if m["role"] == "system") <= 1  # instructions once
    shown = conversation(sent)
    call_id = shown[1][1][0][0]
    assert shown == [
        ("user", "tool: 6*7"),
        ("call", [(call_id, "calculator", {"expression": "6*7"})]),
        ("result", (call_id, {"expression": "6*7", "result": 42})),
        ("assistant", "The answer is 42."),
        ("user", "and what was that?"),
    ]


async def test_another_users_thread_never_reaches_the_history(
    provider_server: ServerHandle, fake_openai: FakeOpenAIServer,
) -> None:
    async with client(provider_server, "alice") as alice:
        await alice.ask("tool: 6*7")
    async with client(provider_server, "bob") as bob:
        ack, _ = await bob.ask("hello from bob")
        await bob.ask("bob again", thread_id=ack["payload"]["thread_id"])
    shown = conversation(request_for(fake_openai, "bob again"))
    assert shown == [("user", "hello from bob"), ("assistant", "Hello from the fake model."),
                     ("user", "bob again")]


async def test_max_history_size_bounds_history_and_never_splits_a_runs_tool_calls(
    server_factory: Any, fake_openai: FakeOpenAIServer,
) -> None:
    server = server_factory(model="openai-chat:fake-model", max_history_size=3)
    async with client(server) as c:
        ack, _ = await c.ask("tool: 6*7")
        thread = ack["payload"]["thread_id"]
        await c.ask("tool: 2+3", thread_id=thread)
        await c.ask("third", thread_id=thread)
        await c.ask("fourth", thread_id=thread)
    # Before "third": rows a1, u2, a2 — run 1's question is cut off, so run 1 is left out
    # whole; run 2 comes with its call and result.
    third = conversation(request_for(fake_openai, "third"))
    assert [k for k, _ in third] == ["user", "call", "result", "assistant", "user"]
    assert third[0] == ("user", "tool: 2+3") and third[2][1][1]["result"] == 5
    assert "6*7" not in json.dumps(third)
    assert_calls_paired(third)
    # Before "fourth": rows a2, u3, a3 — only run 3 (texts, no tools).
    fourth = conversation(request_for(fake_openai, "fourth"))
    assert fourth == [("user", "third"), ("assistant", "Hello from the fake model."),
                      ("user", "fourth")]


async def test_unreadable_stored_model_messages_fall_back_to_the_texts(
    provider_server: ServerHandle, fake_openai: FakeOpenAIServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with client(provider_server) as c:
        ack, _ = await c.ask("tool: 6*7")

        async def corrupt() -> None:
            async with provider_server.services.db.write() as session:
                await session.execute(update(Run).where(Run.id == ack["payload"]["run_id"])
                                      .values(model_messages='[{"kind": "request", "parts": ['))

        provider_server.call(corrupt)
        with caplog.at_level(logging.WARNING, logger="runwire.agents.history"):
            _, frames = await c.ask("still there?", thread_id=ack["payload"]["thread_id"])
    assert frames[-1]["type"] == "agent_completed"
    assert conversation(request_for(fake_openai, "still there?")) == [
        ("user", "tool: 6*7"), ("assistant", "The answer is 42."), ("user", "still there?")]
    assert any("unreadable" in r.getMessage() and ack["payload"]["run_id"] in r.getMessage()
               for r in caplog.records)


async def test_a_stopped_run_is_history_by_its_partial_text(
    provider_server: ServerHandle, fake_openai: FakeOpenAIServer,
) -> None:
    async with client(provider_server) as c:
        await c.send_message("slow")
        delta = (await c.until(lambda f: f["type"] == "partial_result", timeout=20))[-1]
        await c.send("stop_agent", {"run_id": delta["run_id"]})
        end = (await c.until(lambda f: f["type"] in TERMINAL, timeout=10))[-1]
        assert end["payload"]["status"] == "cancelled"
        _, frames = await c.ask("after the stop", thread_id=delta["thread_id"])
    assert frames[-1]["type"] == "agent_completed"
    shown = conversation(request_for(fake_openai, "after the stop"))
    assert shown[0] == ("user", "slow")
    assert shown[1][0] == "assistant" and str(shown[1][1]).startswith("w0 ")
    assert shown[2:] == [("user", "after the stop")]


async def test_paced_mode_streams_stamped_tokens_through_the_gateway(
    provider_server: ServerHandle,
) -> None:
    """The benchmark's paced provider: 10 tokens at 100/s arrive complete, in order, each
    stamped with a send time at or before its arrival (same clock) and after the request."""
    from .fake_openai import paced_text_ok, paced_tokens

    async with client(provider_server) as c:
        asked = time.time()
        _, frames = await c.ask("paced 10 100")
        received = time.time()
    text = "".join(f["payload"]["delta"] for f in frames if f["type"] == "partial_result")
    assert paced_text_ok(text, 10), text
    stamps = [t for _, t in paced_tokens(text)]
    assert asked <= stamps[0] and stamps == sorted(stamps) and stamps[-1] <= received
    # Paced on an absolute schedule: 9 intervals of 10 ms at least.
    assert stamps[-1] - stamps[0] >= 0.09
    assert not paced_text_ok(text.replace("3@", "4@", 1), 10)
    assert not paced_text_ok(text + "x", 10)
