"""Sub-agents and user agent modules over real sockets (the examples/ module)."""

from __future__ import annotations

from typing import Any

from .conftest import ServerHandle
from .helpers import Frame

EXAMPLE = "examples.weather_agents:registry"
TERMINAL = ("agent_completed", "agent_error")


async def ask(server: ServerHandle, text: str, scope: str = "") -> list[Frame]:
    from runwire.client import RunwireClient

    async with RunwireClient.connect(server.ws_url, server.token("alice", scope=scope)) as c:
        _, frames = await c.ask(text)
    return [f for f in frames if f.get("run_id")]


async def test_the_example_module_loads_and_its_sub_agent_answers_in_order(
    server_factory: Any,
) -> None:
    server = server_factory(agents=EXAMPLE)
    events = await ask(server, "ask weather: what's the weather in Paris?", scope="weather:read")
    steps = [(f["type"], f["payload"].get("agent_name"), f["payload"].get("tool_name"))
             for f in events if f["type"] not in ("partial_result", "agent_thinking")]
    assert steps == [
        ("agent_started", "supervisor", None),
        ("tool_executing", "supervisor", "weather"),
        ("tool_executing", "weather", "get_weather"),
        ("tool_completed", "weather", "get_weather"),
        ("agent_response", "weather", None),
        ("tool_completed", "supervisor", "weather"),
        ("agent_response", "supervisor", None),
        ("agent_completed", None, None),
    ]
    weather_call = next(f for f in events if f["type"] == "tool_completed"
                        and f["payload"]["tool_name"] == "get_weather")
    assert weather_call["payload"]["result"] == {"city": "Paris", "sky": "light rain",
                                                 "celsius": 12}
    deltas = {f["payload"]["agent_name"] for f in events if f["type"] == "partial_result"}
    assert deltas == {"weather", "supervisor"}
    sub_answer = next(f for f in events if f["type"] == "agent_response"
                      and f["payload"]["agent_name"] == "weather")
    delegated = next(f for f in events if f["type"] == "tool_completed"
                     and f["payload"]["tool_name"] == "weather")
    assert delegated["payload"]["result"] == sub_answer["payload"]["content"]
    assert "12" in events[-1]["payload"]["result"]
    assert sum(f["type"] == "agent_started" for f in events) == 1
    assert sum(f["type"] in TERMINAL for f in events) == 1


async def test_a_tool_needing_a_scope_the_token_lacks_is_denied_and_reported(
    server_factory: Any,
) -> None:
    server = server_factory(agents=EXAMPLE)
    events = await ask(server, "ask weather: Paris")  # no weather:read scope
    denied = next(f for f in events if f["type"] == "tool_completed"
                  and f["payload"]["tool_name"] == "get_weather")
    assert "permission denied" in denied["payload"]["error"]
    assert "weather:read" in denied["payload"]["error"]
    assert events[-1]["type"] == "agent_completed"
    allowed = await ask(server, "ask weather: Paris", scope="weather:read")
    ok = next(f for f in allowed if f["type"] == "tool_completed"
              and f["payload"]["tool_name"] == "get_weather")
    assert ok["payload"].get("error") is None and ok["payload"]["result"]["sky"] == "light rain"


async def tool_result(server: ServerHandle, command: str) -> dict[str, Any]:
    events = await ask(server, command)
    done = next(f for f in events if f["type"] == "tool_completed")
    assert events[-1]["type"] == "agent_completed"  # a failing tool never fails the run
    return dict(done["payload"])


async def test_a_tool_declaring_a_rate_limit_refuses_the_extra_call(server_factory: Any) -> None:
    server = server_factory(agents="tests.agents_fixture:register")
    for _ in range(2):
        assert (await tool_result(server, "/tool limited {}")).get("error") is None
    refused = await tool_result(server, "/tool limited {}")
    assert "rate limited" in refused["error"]


async def test_a_failing_tool_opens_its_breaker_and_is_then_refused_fast(
    server_factory: Any,
) -> None:
    server = server_factory(agents="tests.agents_fixture:register")
    for _ in range(5):
        failed = await tool_result(server, "/tool flaky {}")
        assert "RuntimeError" in failed["error"]
    refused = await tool_result(server, "/tool flaky {}")
    assert "is failing; retry in" in refused["error"]
    from .test_metrics import sample, scrape

    assert sample(await scrape(server), "runwire_breaker_open", breaker="tool:flaky") == 1
