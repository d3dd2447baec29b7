"""/metrics against real traffic: counters move as users would expect."""

from __future__ import annotations

import re
from typing import Any

import httpx

from runwire.client import RunwireClient

from .conftest import ServerHandle
from .helpers import client, refused

QUESTION = "what is 12*(3+4)?"


def total(text: str, name: str) -> float:
    """The sum of a metric over all its label values."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") or line.startswith(name + " "))


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def scrape(server: ServerHandle, token: str | None = None) -> str:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        r = await http.get("/metrics", headers=headers)
        assert r.status_code == 200
        return r.text


async def test_runs_connections_tools_and_latency_are_counted(server: ServerHandle) -> None:
    node = server.settings.node_id
    async with client(server) as c:
        await c.ask(QUESTION)
        text = await scrape(server)
        assert sample(text, "runwire_connections_open", node=node) == 1
    assert await refused(server, "bad-token") == (4001, "invalid token: DecodeError")
    text = await scrape(server)
    assert sample(text, "runwire_runs_total", node=node, status="completed") == 1
    assert sample(text, "runwire_tool_calls_total", tool="calculator", outcome="ok") == 1
    assert sample(text, "runwire_connections_total", outcome="accepted") == 1
    assert sample(text, "runwire_connections_total", outcome="refused_4001") == 1
    assert sample(text, "runwire_frames_in_total", type="user_message") == 1
    assert sample(text, "runwire_message_to_started_seconds_count") == 1
    assert sample(text, "runwire_event_delivery_seconds_count") >= 8
    assert total(text, "runwire_frames_out_total") >= 10
    assert sample(text, "runwire_frames_out_total", type="agent_completed") == 1
    assert sample(text, "runwire_model_turn_seconds_count", model="builtin") == 1


async def test_rate_limited_frames_are_counted(server_factory: Any) -> None:
    server = server_factory(rate_limit_frames="2/minute")
    async with client(server) as c:
        for _ in range(3):
            await c.send("ping")
        await c.until(lambda f: f["type"] == "error")
    assert sample(await scrape(server), "runwire_rate_limited_total", op="frame") == 1


async def test_metrics_token_protects_the_endpoint(server_factory: Any) -> None:
    server = server_factory(metrics_token="s3cret")
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        assert (await http.get("/metrics")).status_code == 401
    assert "runwire_connections_open" in await scrape(server, "s3cret")


async def test_log_lines_carry_the_ids_and_never_the_token_or_content(
    server: ServerHandle,
) -> None:
    import io
    import json
    import logging

    from runwire import logs

    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    logs.configure("json", "INFO", server.settings.node_id, stream=stream)
    token = server.token("alice")
    try:
        async with RunwireClient.connect(server.ws_url, token) as c:
            ack, _ = await c.ask("what is 12*(3+4)? secret-content-marker")
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    ended = [e for e in lines if e["msg"].startswith("run ended")]
    assert len(ended) == 1
    assert ended[0]["run_id"] == ack["payload"]["run_id"]
    assert ended[0]["thread_id"] == ack["payload"]["thread_id"]
    assert ended[0]["user_id"] == "alice"
    assert ended[0]["node_id"] == server.settings.node_id
    opened = [e for e in lines if e["msg"] == "connection opened"]
    assert opened and opened[0]["connection_id"] == c.established["payload"]["connection_id"]
    text = stream.getvalue()
    assert token not in text and token.split(".")[2] not in text
    assert "secret-content-marker" not in text
