"""Process lifecycle with real `runwire serve` processes: SIGTERM drain, crash recovery."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from runwire.auth import TokenService
from runwire.client import RunwireClient
from runwire.settings import load_settings

QUESTION = "what is 12*(3+4)?"


class Node:
    """A `runwire serve` subprocess on a free loopback port."""

    def __init__(self, data_dir: Path, **env: str) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.env = {**os.environ, "RUNWIRE_DATA_DIR": str(data_dir), **env}
        self.data_dir = data_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws"

    async def start(self) -> Node:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runwire", "serve", "--port", str(self.port)],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        async with httpx.AsyncClient() as http:
            for _ in range(400):
                assert self.proc.poll() is None, self.proc.stderr.read().decode()[-2000:]  # type: ignore[union-attr]
                try:
                    if (await http.get(self.base_url + "/readyz")).status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)  # ok-sleep: waiting for another process to listen
        raise AssertionError("node did not become ready")

    def token(self, user: str = "alice") -> str:
        settings = load_settings(data_dir=self.data_dir)
        return TokenService(settings).issue(user)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[list[Node]]:
    made: list[Node] = []
    yield made
    for node in made:
        node.stop()


def make_node(nodes: list[Node], tmp_path: Path, **env: Any) -> Node:
    node = Node(tmp_path / "data", **{f"RUNWIRE_{k.upper()}": str(v) for k, v in env.items()})
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
    assert node.wait() == 0


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
    async with httpx.AsyncClient(base_url=again.base_url,
                                 headers={"Authorization": f"Bearer {again.token()}"}) as http:
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
