"""The thread service: REST thread changes go through it, announce to every tab, delete
cancels runs first; the HTTP edge gets its services as lifespan state (no import cycle)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from .conftest import ServerHandle
from .helpers import api, client, eventually

LONG = "Explain the theory of relativity in great detail please"


async def test_deleting_a_thread_cancels_its_running_run_first(server_factory: Any) -> None:
    # paced so that the run could not end by itself within the wait below
    server: ServerHandle = server_factory(builtin_delta_delay=1.0)
    async with client(server) as tab, api(server) as http:
        await tab.send_message(LONG)
        started = (await tab.until(lambda f: f["type"] == "agent_started"))[-1]
        tid = started["thread_id"]
        assert server.services.runs.scheduler.running == 1
        assert (await http.delete(f"/api/threads/{tid}")).status_code == 204
        assert (await tab.until(lambda f: f["type"] == "thread_deleted"))[-1]["payload"] == {
            "thread_id": tid}
        await eventually(lambda: server.services.runs.scheduler.running == 0, timeout=3)
        assert (await http.get(f"/api/threads/{tid}")).status_code == 404


async def test_another_user_cannot_delete_or_rename_and_nothing_is_cancelled(
    server_factory: Any,
) -> None:
    server: ServerHandle = server_factory(builtin_delta_delay=0.05)
    async with client(server) as tab, api(server, "mallory") as other:
        await tab.send_message(LONG)
        tid = (await tab.until(lambda f: f["type"] == "agent_started"))[-1]["thread_id"]
        assert (await other.delete(f"/api/threads/{tid}")).status_code == 404
        assert (await other.patch(f"/api/threads/{tid}", json={"title": "x"})).status_code == 404
        assert server.services.runs.scheduler.running == 1  # still running
        done = (await tab.until(lambda f: f["type"] in ("agent_completed", "agent_error"),
                                timeout=60))[-1]
        assert done["type"] == "agent_completed"
        assert done["payload"]["status"] == "completed"


async def test_a_thread_created_by_rest_or_by_a_first_message_is_announced_once(
    server: ServerHandle,
) -> None:
    async with client(server) as tab, api(server) as http:
        made = (await http.post("/api/threads", json={"title": "by rest"})).json()
        ack, frames = await tab.ask("hello there")
        created = [f["payload"] for f in frames if f["type"] == "thread_created"]
        by_message = ack["payload"]["thread_id"]
        assert created == [{"thread_id": made["thread_id"], "title": "by rest"},
                           {"thread_id": by_message, "title": "hello there"}]


def test_the_api_package_does_not_import_the_application_module() -> None:
    code = ("import sys, runwire.api.routes, runwire.api.deps; "
            "print('runwire.app' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
