"""docs/extending.md as a user follows it: a module in the directory `runwire serve` starts
from, named by RUNWIRE_AGENTS, run with the installed `runwire` command (not `python -m`,
which would put the working directory on sys.path by itself)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import jwt

from runwire.client import RunwireClient

MODULE = '''
from dataclasses import replace
from runwire.agents.registry import ToolSpec


async def shout(text: str) -> str:
    """`text` in capitals."""
    return text.upper() + "!"


def registry(reg):
    reg.add_tool(ToolSpec(name="shout", function=shout, description="Shouts the text."))
    supervisor = reg.get_agent("supervisor")
    reg.add_agent(replace(supervisor, tools=(*supervisor.tools, "shout")), replace=True)
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            if httpx.get(url + "/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)  # ok-sleep: waiting for another process to listen
    raise AssertionError(f"server did not become ready:\n{log.read_text()[-3000:]}")


async def test_runwire_agents_imports_a_module_from_the_working_directory(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "myagents.py").write_text(MODULE)
    runwire = Path(sys.executable).parent / "runwire"  # the console script users run
    assert runwire.exists()
    port = _free_port()
    data = project / "data"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSAFEPATH")}
    env.update({"RUNWIRE_DATA_DIR": str(data), "RUNWIRE_AGENTS": "myagents:registry",
                "RUNWIRE_BUILTIN_DELTA_DELAY": "0"})
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(runwire), "serve", "--port", str(port)], cwd=project,
                                env=env, stdout=subprocess.DEVNULL, stderr=out)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_ready(proc, base, log)
        secret = (data / "jwt_secret").read_text().strip()
        now = int(time.time())
        token = jwt.encode({"sub": "alice", "iat": now, "exp": now + 600}, secret,
                           algorithm="HS256")
        async with RunwireClient.connect(f"ws://127.0.0.1:{port}/ws", token) as client:
            _, frames = await client.ask('/tool shout {"text": "hello"}')
        done = [f for f in frames if f["type"] == "tool_completed"]
        assert done and done[0]["payload"]["result"] == "HELLO!", frames
    finally:
        proc.terminate()
        proc.wait(30)
    assert "No module named" not in log.read_text()
