"""`runwire serve --workers N`: N processes on one port sharing PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from runwire.client import RunwireClient

from .conftest import missing_service
from .nodes import Node
from .pg import PG_HOST, fresh_database, pg_available
from .redis_server import REDIS_URL, redis_available, unique_prefix
from .test_cli import run_cli

QUESTION = "what is 12*(3+4)?"


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found |= {int(c) for c in (task / "children").read_text().split()}
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"


def test_workers_without_redis_stop_with_one_line(tmp_path: Path) -> None:
    result = run_cli("serve", "--workers", "2", "--port", "0",
                     env={"RUNWIRE_DATA_DIR": str(tmp_path)})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--workers 2 needs RUNWIRE_REDIS_URL" in lines[0], lines


def test_workers_on_sqlite_stop_with_one_line(tmp_path: Path) -> None:
    result = run_cli("serve", "--workers", "3", "--port", "0", env={
        "RUNWIRE_DATA_DIR": str(tmp_path), "RUNWIRE_REDIS_URL": REDIS_URL,
        "RUNWIRE_JWT_SECRET": uuid.uuid4().hex * 2})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--workers 3 needs PostgreSQL" in lines[0], lines


def test_workers_must_be_positive(tmp_path: Path) -> None:
    result = run_cli("serve", "--workers", "0", env={"RUNWIRE_DATA_DIR": str(tmp_path)})
    assert result.returncode != 0 and "--workers" in result.stderr


async def one_tab_per_worker(node: Node, stack: AsyncExitStack) -> dict[str, RunwireClient]:
    """A connected tab on each of the two workers, by node id (kept open by `stack`).

    The kernel spreads connections over the workers that listen (SO_REUSEPORT hashes the
    client's port; a worker listens once started): connect until one tab sits on each
    worker, for a bounded time."""
    tabs: dict[str, RunwireClient] = {}
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(60):
            while len(tabs) < 2:
                async with AsyncExitStack() as attempt:
                    tab = await attempt.enter_async_context(
                        RunwireClient.connect(node.ws_url, node.token()))
                    worker = tab.established["payload"]["node_id"]
                    if worker not in tabs:
                        tabs[worker] = tab
                        stack.push_async_exit(attempt.pop_all())
    return tabs


async def both_workers_subscribed(node: Node, user: str = "alice") -> None:
    """Wait until Redis counts both workers on the user's channel. A worker subscribes
    when its first tab of the user connects, but under load its SUBSCRIBE can be
    deferred (the bus resubscribes later, see bus/redis.py); a run started meanwhile
    would reach the other worker's tab only from its first event after that."""
    import redis.asyncio as aioredis

    channel = f"{node.env['RUNWIRE_REDIS_PREFIX']}u:{user}"
    client = aioredis.from_url(REDIS_URL, decode_responses=True)
    try:
        async with asyncio.timeout(20):
            while True:
                if dict(await client.pubsub_numsub(channel)).get(channel, 0) >= 2:
                    return
                await asyncio.sleep(0.02)  # ok-sleep: polling another process's state
    finally:
        await client.aclose()


@pytest.fixture
async def two_workers(tmp_path: Path) -> AsyncIterator[Node]:
    if not await pg_available():
        missing_service(f"PostgreSQL is not reachable at {PG_HOST}")
    if not redis_available():
        missing_service(f"Redis is not reachable at {REDIS_URL}")
    async with fresh_database() as url:
        node = Node(tmp_path / "workers", args=("--workers", "2"), database_url=url,
                    redis_url=REDIS_URL, redis_prefix=unique_prefix(),
                    jwt_secret=uuid.uuid4().hex * 2, node_id="wk",
                    builtin_delta_delay=0.01, shutdown_grace=2.0,
                    # the tests open many short tabs in a row; a killed worker's presence
                    # slots only age out (SPEC 5), so the default of 3 would refuse some
                    max_connections_per_user=50)
        await node.start()
        try:
            yield node
        finally:
            node.kill()


@pytest.mark.postgres
@pytest.mark.redis
async def test_tabs_on_two_workers_see_each_others_runs_live(two_workers: Node) -> None:
    node = two_workers
    async with AsyncExitStack() as stack:
        tabs = await one_tab_per_worker(node, stack)
        assert sorted(tabs) == ["wk-w0", "wk-w1"], f"tabs only on {sorted(tabs)}"
        # connection_established is written after the tab's bus subscription is made.
        asker, watcher = tabs["wk-w0"], tabs["wk-w1"]
        await both_workers_subscribed(node)
        ack, asked = await asker.ask(QUESTION)
        thread_id = ack["payload"]["thread_id"]
        seen = await watcher.until(lambda f: f["type"] == "agent_completed"
                                   and f.get("thread_id") == thread_id, timeout=20)
    mine = [(f["seq"], f["type"]) for f in asked if f.get("thread_id") == thread_id and "seq" in f]
    theirs = [(f["seq"], f["type"]) for f in seen if f.get("thread_id") == thread_id
              and "seq" in f]
    assert theirs == mine and ("partial_result" in {t for _, t in theirs})
    assert any(f["type"] == "thread_created" for f in seen)


@pytest.mark.postgres
@pytest.mark.redis
async def test_sigterm_drains_every_worker_and_a_crashed_worker_is_replaced(
    two_workers: Node,
) -> None:
    node = two_workers
    assert node.proc is not None
    async with AsyncExitStack() as stack:  # both workers started (a start-up death stops all)
        assert len(await one_tab_per_worker(node, stack)) == 2
    workers = _children(node.proc.pid)
    assert len(workers) == 2
    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    # Replaced: the supervisor starts a new worker (node id wk-w<i>r1) on the same port.
    async def replaced() -> set[int]:
        async with asyncio.timeout(60):
            while True:
                now = _children(node.proc.pid)  # type: ignore[union-attr]
                if len(now) == 2 and victim not in now:
                    return now
                await asyncio.sleep(0.05)  # ok-sleep: polling another process's children

    workers = await replaced()
    # Every connect is served meanwhile (by the surviving worker); the replacement takes
    # connections once it has started.
    seen: set[str] = set()
    async with asyncio.timeout(60):
        while not any(n.endswith("r1") for n in seen):
            async with RunwireClient.connect(node.ws_url, node.token()) as tab:
                seen.add(tab.established["payload"]["node_id"])
    assert seen & {"wk-w0r1", "wk-w1r1"} and len(seen) <= 3, seen
    node.signal(signal.SIGTERM)
    assert node.wait(30) == 0
    assert not any(_alive(pid) for pid in workers)


@pytest.mark.postgres
@pytest.mark.redis
async def test_a_worker_that_cannot_start_stops_the_supervisor_with_its_code(
    tmp_path: Path,
) -> None:
    """The database does not exist: each worker's start-up fails, the supervisor stops the
    rest and exits non-zero (no restart loop)."""
    if not await pg_available():
        missing_service(f"PostgreSQL is not reachable at {PG_HOST}")
    if not redis_available():
        missing_service(f"Redis is not reachable at {REDIS_URL}")
    base = PG_HOST.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    result = await asyncio.to_thread(run_cli, "serve", "--workers", "2", "--port", "0", env={
        "RUNWIRE_DATA_DIR": str(tmp_path), "RUNWIRE_REDIS_URL": REDIS_URL,
        "RUNWIRE_REDIS_PREFIX": unique_prefix(), "RUNWIRE_JWT_SECRET": uuid.uuid4().hex * 2,
        "RUNWIRE_DATABASE_URL": f"{base}/runwire_missing_{uuid.uuid4().hex[:8]}"})
    assert result.returncode != 0
    assert "failed to start" in result.stderr and "restarting" not in result.stderr


def test_workers_on_a_port_in_use_stop_with_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "--workers", "2", "--port", str(port), env={
            "RUNWIRE_DATA_DIR": str(tmp_path), "RUNWIRE_REDIS_URL": REDIS_URL,
            "RUNWIRE_JWT_SECRET": uuid.uuid4().hex * 2,
            "RUNWIRE_DATABASE_URL": "postgresql+asyncpg://nobody@127.0.0.1:1/none"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot bind 127.0.0.1:{port}" in lines[0], lines
