"""Real providers through one path, against a local fake OpenAI-compatible server:
streaming, tool calls, cancellation closing the provider stream, stalls, HTTP errors."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

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
