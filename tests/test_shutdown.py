"""Process lifecycle with real `runwire serve` processes: SIGTERM drain, crash recovery."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runwire.client import RunwireClient

from .nodes import Node

QUESTION = "what is 12*(3+4)?"


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[list[Node]]:
    made: list[Node] = []
    yield made
    for node in made:
        node.kill()


def make_node(nodes: list[Node], tmp_path: Path, **settings: Any) -> Node:
    node = Node(tmp_path / "data", **settings)
    nodes.append(node)
    return node


async def test_sigterm_lets_the_run_finish_then_closes_with_1001(
    nodes: list[Node], tmp_path: Path
) -> None:
    node = await make_node(nodes, tmp_path, builtin_delta_delay=0.05, shutdown_grace=20).start()
    async with RunwireClient.connect(node.ws_url, node.token()) as c:
        await c.send_message(QUESTION)
        await c.until(lambda f: f["type"] == "partial_result")
        node.signal(signal.SIGTERM)
        frames = await c.until(lambda f: f["type"] in ("agent_completed", "agent_error"))
        assert frames[-1]["type"] == "agent_completed"
        assert frames[-1]["payload"]["status"] == "completed"
        code, _ = await c.wait_closed(timeout=20)
        assert code == 1001
    # uvicorn re-raises the captured SIGTERM after its graceful shutdown
    assert node.wait() in (0, -signal.SIGTERM)


async def test_runs_past_the_grace_period_end_with_a_stored_terminal_event(
    nodes: list[Node], tmp_path: Path
) -> None:
    node = await make_node(nodes, tmp_path, builtin_delta_delay=1.0, shutdown_grace=0.2).start()
    async with RunwireClient.connect(node.ws_url, node.token()) as c:
        await c.send_message(QUESTION)
        seen = await c.until(lambda f: f["type"] == "partial_result", timeout=20)
        thread_id = seen[-1]["thread_id"]
        node.signal(signal.SIGTERM)
        end = (await c.until(lambda f: f["type"] in ("agent_completed", "agent_error")))[-1]
        assert end["type"] == "agent_error" and end["payload"]["retryable"] is True
        assert (await c.wait_closed(timeout=20))[0] == 1001
    node.wait()
    again = await make_node(nodes, tmp_path).start()
    async with again.api() as http:
        log = (await http.get(f"/api/threads/{thread_id}/events")).json()["items"]
        assert log[-1]["type"] == "agent_error"
        assert [e["type"] for e in log].count("agent_error") == 1
        run = (await http.get(f"/api/runs/{end['run_id']}")).json()
        assert run["status"] == "failed"


async def test_restart_after_kill_ends_the_dead_nodes_running_run_with_node_lost(
    nodes: list[Node], tmp_path: Path
) -> None:
    node = await make_node(nodes, tmp_path, builtin_delta_delay=1.0).start()
    async with RunwireClient.connect(node.ws_url, node.token()) as c:
        await c.send_message(QUESTION)
        started = (await c.until(lambda f: f["type"] == "agent_started", timeout=20))[-1]
        node.signal(signal.SIGKILL)
        node.wait()
    again = await make_node(nodes, tmp_path).start()
    async with RunwireClient.connect(again.ws_url, again.token()) as c:
        await c.send("resume", {"thread_id": started["thread_id"], "after_seq": started["seq"]})
        frames = await c.until(lambda f: f["type"] == "replay_complete")
        terminal = [f for f in frames if f["type"] in ("agent_completed", "agent_error")]
        assert len(terminal) == 1
        assert terminal[0]["payload"]["code"] == "node_lost"
        assert terminal[0]["payload"]["retryable"] is True
