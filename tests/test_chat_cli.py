"""`runwire chat` and `runwire token --url` as a user runs them: real subprocesses against a
real server on loopback."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from runwire.auth import TokenService
from runwire.settings import load_settings

from .conftest import ServerHandle


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNWIRE_")}
    env.update({"NO_COLOR": "1", "COLUMNS": "100", **extra})
    return env


def chat(*args: str, stdin: str = "", cwd: Path | None = None,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runwire", "chat", *args], input=stdin,
                          capture_output=True, text=True, timeout=60, cwd=cwd,
                          env=env or _env(), check=False)


async def _db_rows(server: ServerHandle, sql: str, **params: Any) -> list[Any]:
    from sqlalchemy import text

    async with server.services.db.read() as session:
        return list((await session.execute(text(sql), params)).all())


def rows(server: ServerHandle, sql: str, **params: Any) -> list[Any]:
    return server.call(lambda: _db_rows(server, sql, **params))


def test_answers_render_as_markdown_the_thread_id_is_printed_and_thread_continues_it(
    server: ServerHandle,
) -> None:
    token = server.token("alice")
    first = chat("--url", server.ws_url, "--token", token, stdin="what is 6*7?\n\n")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "= 42" in first.stdout and "**42**" not in first.stdout  # Markdown, rendered
    match = re.search(r"thread (\S+) — continue it later with `runwire chat --thread \1`",
                      first.stdout)
    assert match, first.stdout
    thread_id = match.group(1)
    second = chat("--url", server.ws_url, "--token", token, "--thread", thread_id,
                  stdin="what is 6*8?\n\n")
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"continuing thread {thread_id}" in second.stdout and "= 48" in second.stdout
    contents = [r[0] for r in rows(server, "SELECT content FROM messages WHERE thread_id = :t "
                                           "AND role = 'user' ORDER BY created_at", t=thread_id)]
    assert contents == ["what is 6*7?", "what is 6*8?"]


def test_ctrl_c_stops_the_run_on_the_server_then_exits(server_factory: Any) -> None:
    server: ServerHandle = server_factory(builtin_delta_delay=0.3)
    seen: list[str] = []
    lines: queue.Queue[str] = queue.Queue()
    with subprocess.Popen(
        [sys.executable, "-m", "runwire", "chat", "--url", server.ws_url,
         "--token", server.token("alice")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=_env()) as proc:
        assert proc.stdout is not None and proc.stdin is not None
        out = proc.stdout
        reader = threading.Thread(target=lambda: [lines.put(line) for line in out], daemon=True)
        reader.start()
        try:
            proc.stdin.write("what time is it in Tokyo?\n")
            proc.stdin.flush()
            deadline = time.monotonic() + 30
            while not any("current_time" in line for line in seen):  # the run is under way
                seen.append(lines.get(timeout=max(0.1, deadline - time.monotonic())))
            proc.send_signal(signal.SIGINT)
            assert proc.wait(30) == 130, "".join(seen)
            reader.join(10)
        finally:
            if proc.poll() is None:
                proc.kill()
    while not lines.empty():
        seen.append(lines.get())
    text = "".join(seen)
    assert "stopping the run on the server" in text and "stopped" in text, text
    statuses = [r[0] for r in rows(server, "SELECT status FROM runs")]
    assert statuses == ["cancelled"], statuses


def test_a_token_made_with_another_data_dir_says_so(server: ServerHandle, tmp_path: Path) -> None:
    other = TokenService(load_settings(data_dir=tmp_path / "elsewhere")).issue("alice")
    result = chat("--url", server.ws_url, "--token", other)
    assert result.returncode == 1
    assert "was the token made with another runwire_data_dir" in result.stdout.lower()


def test_without_a_token_or_secret_it_says_how_and_creates_no_runwire_dir(
    server: ServerHandle, tmp_path: Path,
) -> None:
    result = chat("--url", server.ws_url, cwd=tmp_path)
    assert result.returncode == 2
    assert "RUNWIRE_DATA_DIR" in result.stderr and "--token" in result.stderr
    assert not (tmp_path / ".runwire").exists()
    # Where the server's data dir is, no token is needed: it is made with its secret.
    ok = chat("--url", server.ws_url, "--user", "bob", stdin="\n",
              env=_env(RUNWIRE_DATA_DIR=str(server.settings.data_dir)))
    assert ok.returncode == 0 and "as bob" in ok.stdout, ok.stdout + ok.stderr


def test_it_exits_non_zero_when_it_cannot_connect() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    result = chat("--url", f"ws://127.0.0.1:{port}/ws", "--token", "x.y.z")
    assert result.returncode == 1
    assert f"cannot connect to ws://127.0.0.1:{port}/ws" in result.stdout


def test_token_url_prints_a_login_url(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "runwire", "token", "--user", "alice", "--url",
         "--base", "http://chat.example:9000/"],
        capture_output=True, text=True, timeout=60, env=_env(RUNWIRE_DATA_DIR=str(tmp_path)),
        check=False)
    assert result.returncode == 0, result.stderr
    url = result.stdout.strip()
    assert url.startswith("http://chat.example:9000/#token=")
    verifier = TokenService(load_settings(data_dir=tmp_path))
    assert verifier.verify(url.split("#token=", 1)[1]).user_id == "alice"


def test_a_tool_call_that_needs_approval_asks_yes_no_or_edit(server: ServerHandle) -> None:
    token = server.token("alice")
    approved = chat("--url", server.ws_url, "--token", token,
                    stdin="notify bob: the build is green\ny\n\n")
    assert approved.returncode == 0, approved.stdout + approved.stderr
    assert "supervisor wants to call send_notification with" in approved.stdout
    assert '"to": "bob"' in approved.stdout
    assert "Sent the notification to bob" in approved.stdout
    edited = chat("--url", server.ws_url, "--token", token,
                  stdin='notify bob: hi\ne\n{"to": "carol"}\ne\n'
                        '{"to": "carol", "text": "edited"}\n\n')
    assert edited.returncode == 0, edited.stdout + edited.stderr
    assert "invalid arguments for send_notification" in edited.stdout  # asked again
    assert "Sent the notification to carol: “edited”" in edited.stdout
    denied = chat("--url", server.ws_url, "--token", token, stdin="notify bob: hi\nn\nbusy\n\n")
    assert denied.returncode == 0, denied.stdout + denied.stderr
    assert "did not send the notification to bob: denied: busy" in denied.stdout
