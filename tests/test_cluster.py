"""Several `runwire serve` nodes sharing PostgreSQL and Redis: no sticky sessions, no lost
runs. Each test gets a fresh PostgreSQL database and its own Redis key prefix."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from runwire.client import RunwireClient, RunwireClosed

from .conftest import missing_service
from .nodes import Node
from .pg import PG_HOST, fresh_database, pg_available
from .redis_server import REDIS_URL, redis_available, unique_prefix

pytestmark = [pytest.mark.postgres, pytest.mark.redis]
QUESTION = "what is 12*(3+4)?"


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Callable[..., Node]]:
    """Makes nodes of one deployment (same database, Redis prefix and JWT secret)."""
    if not await pg_available():
        missing_service(f"PostgreSQL is not reachable at {PG_HOST}")
    if not redis_available():
        missing_service(f"Redis is not reachable at {REDIS_URL}")
    made: list[Node] = []
    async with fresh_database() as url:
        shared = {"database_url": url, "redis_url": REDIS_URL, "redis_prefix": unique_prefix(),
                  "jwt_secret": uuid.uuid4().hex * 2, "builtin_delta_delay": 0.0,
                  "run_lease_seconds": 2.0, "shutdown_grace": 1.0}

        def node(name: str, **settings: Any) -> Node:
            n = Node(tmp_path / name, node_id=name, **{**shared, **settings})
            made.append(n)
            return n

        yield node
        for n in made:
            n.kill()


async def test_a_run_on_node_one_streams_to_the_users_tab_on_node_two(
    cluster: Callable[..., Node],
) -> None:
    one, two = await cluster("n1").start(), await cluster("n2").start()
    async with RunwireClient.connect(one.ws_url, one.token()) as tab1, \
            RunwireClient.connect(two.ws_url, two.token()) as tab2:
        await asyncio.sleep(0.1)  # ok-sleep: Redis SUBSCRIBE of the new tab acknowledged
        ack, frames1 = await tab1.ask(QUESTION)
        thread_id = ack["payload"]["thread_id"]
        frames2 = await tab2.until(lambda f: f["type"] == "agent_completed", timeout=20)
        seq1 = [f["seq"] for f in frames1 if f.get("thread_id") == thread_id and "seq" in f]
        seq2 = [f["seq"] for f in frames2 if f.get("thread_id") == thread_id and "seq" in f]
        assert seq2 == seq1 == list(range(1, len(seq1) + 1))
        assert any(f["type"] == "thread_created" for f in frames2)
    import httpx

    from .test_metrics import sample

    async with httpx.AsyncClient() as http:
        text = (await http.get(two.base_url + "/metrics")).text
    assert sample(text, "runwire_bus_lag_seconds_count") >= len(seq2)


async def test_resume_on_the_other_node_after_a_disconnect(cluster: Callable[..., Node]) -> None:
    one, two = await cluster("n1").start(), await cluster("n2").start()
    async with RunwireClient.connect(one.ws_url, one.token()) as c:
        await c.send_message(QUESTION)
        first = await c.until(lambda f: f["type"] == "agent_started", timeout=20)
    thread_id = first[-1]["thread_id"]
    async with RunwireClient.connect(two.ws_url, two.token()) as c:
        await c.send("resume", {"thread_id": thread_id, "after_seq": first[-1]["seq"]})
        rest: list[dict[str, Any]] = []
        while not any(f["type"] == "replay_complete" for f in rest) or \
                not any(f["type"] == "agent_completed" for f in rest):
            rest.append(await c.recv(timeout=20))
    seqs = sorted({f["seq"] for f in first + rest if f.get("thread_id") == thread_id and "seq" in f})
    assert seqs == list(range(1, len(seqs) + 1))
    async with two.api() as http:
        log = (await http.get(f"/api/threads/{thread_id}/events")).json()["items"]
    assert [e["seq"] for e in log] == seqs


async def test_the_connection_limit_holds_across_nodes(cluster: Callable[..., Node]) -> None:
    one = await cluster("n1", max_connections_per_user=2).start()
    two = await cluster("n2", max_connections_per_user=2).start()
    async with RunwireClient.connect(one.ws_url, one.token()), \
            RunwireClient.connect(two.ws_url, two.token()):
        with pytest.raises(RunwireClosed) as refused:
            async with RunwireClient.connect(two.ws_url, two.token()) as c:
                await c.wait_closed()
        assert refused.value.code == 4008
    async with RunwireClient.connect(one.ws_url, one.token()) as again:  # slots freed
        assert again.user_id == "alice"


async def test_a_saturated_node_s_queue_is_served_by_a_node_with_capacity(
    cluster: Callable[..., Node],
) -> None:
    busy = await cluster("busy", max_concurrent_agents=1, builtin_delta_delay=0.15).start()
    free = await cluster("free", max_concurrent_agents=4, builtin_delta_delay=0.15).start()
    async with RunwireClient.connect(busy.ws_url, busy.token()) as c:
        for n in range(4):
            await c.send_message(f"what is {n}+1?")
        ends = []
        while len(ends) < 4:
            frame = await c.recv(timeout=30)
            if frame["type"] in ("agent_completed", "agent_error"):
                ends.append(frame)
    assert all(e["type"] == "agent_completed" for e in ends)
    async with busy.api() as http:
        runs = [(await http.get(f"/api/runs/{e['run_id']}")).json() for e in ends]
    assert {r["status"] for r in runs} == {"completed"}
    assert "free" in {r["node_id"] for r in runs}, "the node with capacity claimed nothing"
    del free


async def test_kill_9_of_the_executing_node_ends_its_runs_once_within_the_lease(
    cluster: Callable[..., Node],
) -> None:
    doomed = await cluster("doomed", builtin_delta_delay=1.0).start()
    async with RunwireClient.connect(doomed.ws_url, doomed.token()) as c:
        run_ids = []
        for n in range(3):
            await c.send_message(f"what is {n}*7?")
        while len(run_ids) < 3:
            frame = await c.recv(timeout=20)
            if frame["type"] == "agent_started":
                run_ids.append(frame["run_id"])
    # Started only now: a node with free slots claims queued runs of any node, and these
    # three must all be executing on the doomed one.
    survivor = await cluster("survivor", max_concurrent_agents=1).start()
    async with RunwireClient.connect(survivor.ws_url, survivor.token()) as watcher:
        await asyncio.sleep(0.1)  # ok-sleep: Redis SUBSCRIBE of the watcher acknowledged
        doomed.signal(signal.SIGKILL)
        doomed.wait()
        loop = asyncio.get_running_loop()
        killed_at = loop.time()
        ends: dict[str, dict[str, Any]] = {}
        while len(ends) < 3:
            frame = await watcher.recv(timeout=20)
            if frame["type"] in ("agent_completed", "agent_error") and frame["run_id"] in run_ids:
                assert frame["run_id"] not in ends, "two terminal events for one run"
                ends[frame["run_id"]] = frame
        took = loop.time() - killed_at
    assert took < 2.0 * 3, f"runs of the dead node ended after {took:.1f}s"
    assert {e["payload"]["code"] for e in ends.values()} == {"node_lost"}
    assert all(e["payload"]["retryable"] for e in ends.values())
    async with survivor.api() as http:
        for run_id, end in ends.items():
            log = (await http.get(f"/api/threads/{end['thread_id']}/events")).json()["items"]
            assert sum(1 for e in log if e.get("run_id") == run_id
                       and e["type"] in ("agent_completed", "agent_error")) == 1


async def test_with_retry_lost_runs_a_dead_node_s_runs_are_retried_elsewhere(
    cluster: Callable[..., Node],
) -> None:
    doomed = await cluster("doomed", builtin_delta_delay=1.0, retry_lost_runs="true").start()
    survivor = await cluster("survivor", retry_lost_runs="true").start()
    async with RunwireClient.connect(survivor.ws_url, survivor.token()) as watcher:
        await asyncio.sleep(0.1)  # ok-sleep: Redis SUBSCRIBE of the watcher acknowledged
        async with RunwireClient.connect(doomed.ws_url, doomed.token()) as c:
            await c.send_message("what is 6*7?")
            started = (await c.until(lambda f: f["type"] == "agent_started", timeout=20))[-1]
        doomed.signal(signal.SIGKILL)
        doomed.wait()
        frames = await watcher.until(lambda f: f["type"] in ("agent_completed", "agent_error")
                                     and f.get("run_id") == started["run_id"], timeout=30)
    end = frames[-1]
    assert end["type"] == "agent_completed" and "42" in end["payload"]["result"]
    assert any(f["type"] == "agent_progress" and f.get("run_id") == started["run_id"]
               for f in frames)
    async with survivor.api() as http:
        run = (await http.get(f"/api/runs/{started['run_id']}")).json()
    assert run["status"] == "completed" and run["node_id"] == "survivor" and run["attempt"] == 2


async def test_rate_limits_are_shared_across_nodes(cluster: Callable[..., Node]) -> None:
    one = await cluster("n1", rate_limit_messages="2/minute").start()
    two = await cluster("n2", rate_limit_messages="2/minute").start()
    async with RunwireClient.connect(one.ws_url, one.token()) as a, \
            RunwireClient.connect(two.ws_url, two.token()) as b:
        ack_a, _ = await a.ask(QUESTION)
        ack_b, _ = await b.ask(QUESTION)
        assert ack_a["type"] == ack_b["type"] == "message_ack"
        await a.send("user_message", {"content": QUESTION}, request_id="third")
        err = (await a.until(lambda f: f["type"] == "error"))[-1]
        assert err["payload"]["code"] == "rate_limited"


async def test_a_run_paused_on_one_node_is_approved_through_the_other(
    cluster: Callable[..., Node],
) -> None:
    """SPEC 7 across nodes: the run pauses on n1 (which then stops), the decision goes
    through n2, and whichever node claims it resumes it: one agent_started, one end."""
    one, two = await cluster("n1").start(), await cluster("n2").start()
    async with RunwireClient.connect(one.ws_url, one.token()) as tab1:
        await tab1.send_message("notify bob: deploy done")
        asked = (await tab1.until(lambda f: f["type"] == "approval_required", timeout=20))[-1]
    run_id, call_id = asked["run_id"], asked["payload"]["tool_call_id"]
    thread_id = asked["thread_id"]
    one.signal(signal.SIGTERM)
    one.wait()  # stopped: nothing of the run is left on n1
    async with RunwireClient.connect(two.ws_url, two.token()) as tab2:
        async with two.api() as http:
            assert (await http.get(f"/api/runs/{run_id}")).json()["status"] == "waiting"
            decided = await http.post(f"/api/runs/{run_id}/approvals",
                                      json={"tool_call_id": call_id, "approved": True})
            assert decided.status_code == 200 and decided.json()["resumed"] is True
        end = (await tab2.until(lambda f: f["type"] in ("agent_completed", "agent_error")
                                and f.get("run_id") == run_id, timeout=20))[-1]
        assert end["type"] == "agent_completed", end
        assert "Sent the notification to **bob**" in end["payload"]["result"]
        async with two.api() as http:
            events = (await http.get(f"/api/threads/{thread_id}/events")).json()["items"]
            run = (await http.get(f"/api/runs/{run_id}")).json()
    types = [e["type"] for e in events if e.get("run_id") == run_id]
    assert types.count("agent_started") == 1
    assert sum(t in ("agent_completed", "agent_error") for t in types) == 1
    assert types.count("approval_resolved") == 1 and types.count("tool_completed") == 1
    assert run["status"] == "completed" and run["node_id"] == "n2"


async def test_approve_and_deny_through_two_nodes_at_once_exactly_one_wins(
    cluster: Callable[..., Node],
) -> None:
    one, two = await cluster("n1").start(), await cluster("n2").start()
    async with RunwireClient.connect(one.ws_url, one.token()) as tab:
        await tab.send_message("notify bob: race")
        asked = (await tab.until(lambda f: f["type"] == "approval_required", timeout=20))[-1]
        run_id, call_id = asked["run_id"], asked["payload"]["tool_call_id"]
        async with one.api() as a, two.api() as b:
            answers = await asyncio.gather(
                a.post(f"/api/runs/{run_id}/approvals",
                       json={"tool_call_id": call_id, "approved": True}),
                b.post(f"/api/runs/{run_id}/approvals",
                       json={"tool_call_id": call_id, "approved": False, "reason": "n2"}))
        assert sorted(r.status_code for r in answers) == [200, 409], [r.text for r in answers]
        winner = next(r for r in answers if r.status_code == 200).json()
        rest = await tab.until(lambda f: f["type"] in ("agent_completed", "agent_error")
                               and f.get("run_id") == run_id, timeout=20)
    resolved = [f for f in rest if f["type"] == "approval_resolved"]
    assert len(resolved) == 1 and resolved[0]["payload"]["approved"] is winner["approved"]
    assert rest[-1]["type"] == "agent_completed"
