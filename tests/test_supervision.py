"""Background tasks are supervised (issue 14, item 8): a failure is logged with its
traceback, counted in runwire_background_task_failures_total, answered to the client
when a client asked, and a loop is started again."""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

import pytest

from runwire import app as app_module
from runwire.protocol.envelope import Envelope
from runwire.tasks import Supervisor

from .conftest import ServerHandle
from .helpers import client, eventually
from .test_metrics import sample, scrape

QUESTION = "what is 12*(3+4)?"


# ---- the supervisor alone ---------------------------------------------------------------

async def test_a_failing_loop_is_logged_counted_and_started_again_with_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    counted: list[str] = []
    tasks = Supervisor(on_failure=counted.append, backoff=(0.01, 0.04))
    loop = asyncio.get_running_loop()
    starts: list[float] = []
    done = asyncio.Event()

    async def flaky() -> None:
        starts.append(loop.time())
        if len(starts) <= 4:
            raise RuntimeError(f"boom {len(starts)}")
        done.set()
        await asyncio.Event().wait()  # then runs until cancelled

    with caplog.at_level(logging.ERROR, logger="runwire.tasks"):
        task = tasks.keep_running("flaky", flaky)
        await asyncio.wait_for(done.wait(), 5)
    assert counted == ["flaky"] * 4 and tasks.failures == {"flaky": 4}
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps[0] >= 0.01 and gaps[2] >= 0.04 and gaps[3] >= 0.04  # doubling, capped
    failed = [r for r in caplog.records if "flaky failed" in r.getMessage()]
    assert len(failed) == 4 and all(r.exc_info for r in failed)
    assert task.get_name() == "flaky" and not task.done()
    await tasks.aclose()
    assert task.cancelled() and len(tasks) == 0


async def test_a_spawned_task_failure_is_counted_and_handed_to_on_error() -> None:
    counted: list[str] = []
    tasks = Supervisor(on_failure=counted.append)
    group: set[asyncio.Task[None]] = set()
    errors: list[BaseException] = []

    async def broken() -> None:
        raise KeyError("x")

    task = tasks.spawn("resume", broken(), name="resume-c1", on_error=errors.append,
                       group=group)
    assert task in group and task.get_name() == "resume-c1"
    await task
    assert counted == ["resume"] and isinstance(errors[0], KeyError)
    assert not group and len(tasks) == 0


async def test_a_loop_that_returns_is_done_and_cancel_is_not_a_failure() -> None:
    counted: list[str] = []
    tasks = Supervisor(on_failure=counted.append)

    async def once() -> None:
        return

    await tasks.keep_running("once", once)
    hang = tasks.spawn("hang", asyncio.Event().wait())  # type: ignore[arg-type]
    await tasks.aclose()
    assert hang.cancelled() and counted == []


async def test_a_guarded_callback_counts_its_failure_instead_of_raising() -> None:
    counted: list[str] = []
    tasks = Supervisor(on_failure=counted.append)

    async def catch_up() -> None:
        raise OSError("injected")

    await tasks.guarded("bus-catch-up", catch_up)()
    assert counted == ["bus-catch-up"]


# ---- against a real server -------------------------------------------------------------

async def failures(server: ServerHandle, task: str) -> float:
    return sample(await scrape(server), "runwire_background_task_failures_total", task=task)


async def test_resume_whose_log_read_raises_answers_error_then_closes_1011(
    server: ServerHandle, caplog: pytest.LogCaptureFixture,
) -> None:
    async with client(server) as c:
        ack, _ = await c.ask(QUESTION)
    thread_id = ack["payload"]["thread_id"]
    reader = server.services.reader

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("injected read failure")

    object.__setattr__(reader, "events", broken)
    try:
        with caplog.at_level(logging.ERROR, logger="runwire.tasks"):
            async with client(server) as c:
                await c.send("resume", {"thread_id": thread_id, "after_seq": 0},
                             request_id="r-9")
                got = await c.until(lambda f: f["type"] in ("error", "replay_complete"))
                assert got[-1]["type"] == "error"
                assert got[-1]["payload"]["code"] == "internal"
                assert got[-1]["payload"]["request_id"] == "r-9"
                code, _ = await c.wait_closed()
                assert code == 1011
    finally:
        del reader.events  # type: ignore[method-assign]
    assert await failures(server, "resume") == 1
    assert any("resume failed" in r.getMessage() and r.exc_info for r in caplog.records)
    # the node serves on: the same resume now replays
    async with client(server) as c:
        await c.send("resume", {"thread_id": thread_id, "after_seq": 0})
        done = await c.until(lambda f: f["type"] == "replay_complete")
        assert done[-1]["payload"]["complete"] is True


async def test_resume_and_stop_handlers_that_raise_answer_internal_and_keep_the_connection(
    server: ServerHandle,
) -> None:
    services = server.services
    async with client(server) as c:
        ack, _ = await c.ask(QUESTION)
        thread_id = ack["payload"]["thread_id"]

        async def broken(*args: Any, **kwargs: Any) -> Any:
            raise ValueError("injected bug")

        object.__setattr__(services.reader, "bounds", broken)
        object.__setattr__(services.runs, "stop", broken)
        try:
            await c.send("resume", {"thread_id": thread_id, "after_seq": 0}, request_id="r-1")
            first = (await c.until(lambda f: f["type"] == "error"))[-1]["payload"]
            await c.send("stop_agent", {"thread_id": thread_id}, request_id="r-2")
            second = (await c.until(lambda f: f["type"] == "error"))[-1]["payload"]
        finally:
            del services.reader.bounds  # type: ignore[method-assign]
            del services.runs.stop  # type: ignore[method-assign]
        assert (first["code"], first["request_id"]) == ("internal", "r-1")
        assert (second["code"], second["request_id"]) == ("internal", "r-2")
        await c.send("ping", request_id="p")
        assert (await c.until(lambda f: f["type"] == "pong"))[-1]["payload"]["request_id"] == "p"
    assert await failures(server, "resume") == 1
    assert await failures(server, "stop_agent") == 1


async def test_a_gap_repair_that_fails_is_counted_and_closes_1011(
    server: ServerHandle,
) -> None:
    async with client(server) as c:
        ack, _ = await c.ask(QUESTION)
        thread_id = ack["payload"]["thread_id"]
        conn = next(x for x in server.services.connections
                    if x.connection_id == c.established["payload"]["connection_id"])
        last = conn.cursors[thread_id].last
        reader = server.services.reader

        async def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("injected read failure")

        async def offer_a_gap() -> None:  # as if the bus had lost seqs last+1..last+2
            conn.offer(Envelope(user_id="alice", type="partial_result", text="{}",
                                thread_id=thread_id, seq=last + 3))

        object.__setattr__(reader, "events", broken)
        try:
            server.call(offer_a_gap)
            code, _ = await c.wait_closed()
        finally:
            del reader.events  # type: ignore[method-assign]
        assert code == 1011
    assert await failures(server, "gap-repair") == 1


async def test_a_failing_node_loop_is_counted_restarted_and_keeps_running(
    server_factory: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(app_module, "HEALTH_INTERVAL", 0.02)
    server = server_factory()
    db = server.services.db
    calls = {"failed": 0, "ok": 0}
    ping = db.ping

    async def flaky_ping() -> bool:
        if calls["failed"] < 2:
            calls["failed"] += 1
            raise RuntimeError("injected health check bug")
        calls["ok"] += 1
        return await ping()

    object.__setattr__(db, "ping", flaky_ping)
    try:
        await eventually(lambda: calls["ok"] >= 3, timeout=10)  # restarted twice, then runs
    finally:
        del db.ping  # type: ignore[method-assign]
    assert await failures(server, "health-monitor") == 2
    assert server.services.tasks.failures == {"health-monitor": 2}
