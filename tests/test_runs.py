"""Runs over real sockets: concurrency and queue positions, multitask strategies,
stop_agent, timeouts."""

from __future__ import annotations

from typing import Any

from .conftest import ServerHandle
from .helpers import Frame, api, client, count_rows

TERMINAL = ("agent_completed", "agent_error")


def by_run(frames: list[Frame]) -> dict[str, list[Frame]]:
    runs: dict[str, list[Frame]] = {}
    for f in frames:
        if f.get("run_id"):
            runs.setdefault(f["run_id"], []).append(f)
    return runs


async def test_twelve_runs_with_ten_slots_two_wait_with_positions_all_finish(
    server_factory: Any,
) -> None:
    server: ServerHandle = server_factory(max_concurrent_agents=10, builtin_delta_delay=0.1)
    async with client(server) as c:
        for n in range(12):
            await c.send_message(f"what is {n}+{n}?")
        frames: list[Frame] = []
        while sum(1 for f in frames if f["type"] in TERMINAL) < 12:
            frames.append(await c.recv(timeout=30))
    running: set[str] = set()
    peak = 0
    for f in frames:
        if f["type"] == "agent_started":
            running.add(f["run_id"])
            peak = max(peak, len(running))
        elif f["type"] in TERMINAL:
            running.discard(f["run_id"])
    assert peak == 10
    runs = by_run(frames)
    waited = {rid: [f["payload"]["queue_position"] for f in evs if f["type"] == "agent_progress"]
              for rid, evs in runs.items()}
    assert sorted(len(p) > 0 for p in waited.values()) == [False] * 10 + [True] * 2, waited
    assert sorted(p[0] for p in waited.values() if p) == [1, 2]
    for evs in runs.values():
        types = [f["type"] for f in evs]
        assert types.index("agent_started") > max(
            (i for i, t in enumerate(types) if t == "agent_progress"), default=-1)
        assert types[-1] == "agent_completed"


async def test_enqueue_runs_the_second_message_after_the_first(server_factory: Any) -> None:
    server = server_factory(builtin_delta_delay=0.05)
    async with client(server) as c:
        await c.send_message("what is 2+2?", message_id="first")
        ack = (await c.until(lambda f: f["type"] == "message_ack"))[-1]
        thread_id = ack["payload"]["thread_id"]
        await c.send_message("what is 3+3?", thread_id=thread_id, message_id="second")
        frames: list[Frame] = []
        while sum(1 for f in frames if f["type"] in TERMINAL) < 2:
            frames.append(await c.recv(timeout=30))
    order = [(f["type"], f.get("run_id")) for f in frames if f["type"] in
             ("agent_started", "agent_completed", "agent_progress")]
    first_end = next(i for i, (t, _) in enumerate(order) if t == "agent_completed")
    starts = [i for i, (t, _) in enumerate(order) if t == "agent_started"]
    assert len(starts) == 2 and starts[1] > first_end
    progress = [f for f in frames if f["type"] == "agent_progress"]
    assert progress and progress[0]["payload"]["queue_position"] == 1


async def test_reject_answers_thread_busy_and_stores_nothing(server_factory: Any) -> None:
    server: ServerHandle = server_factory(builtin_delta_delay=0.2)
    async with client(server) as c:
        await c.send_message("what is 2+2?")
        started = (await c.until(lambda f: f["type"] == "agent_started"))[-1]
        await c.send("user_message", {"content": "again", "thread_id": started["thread_id"],
                                      "settings": {"multitask_strategy": "reject"}},
                     request_id="r")
        err = (await c.until(lambda f: f["type"] == "error"))[-1]
        assert err["payload"]["code"] == "thread_busy" and err["payload"]["request_id"] == "r"
        await c.until(lambda f: f["type"] in TERMINAL, timeout=30)
    assert server.call(lambda: count_rows(server, "runs", "messages")) == [1, 2]


async def test_interrupt_cancels_the_active_run_and_starts_the_new_one(
    server_factory: Any,
) -> None:
    server = server_factory(builtin_delta_delay=0.2)
    async with client(server) as c:
        await c.send_message("what is 2+2?")
        first = (await c.until(lambda f: f["type"] == "partial_result", timeout=30))[-1]
        await c.send_message("what is 5*5?", thread_id=first["thread_id"],
                             settings={"multitask_strategy": "interrupt"})
        frames = []
        while not any(f["type"] == "agent_completed" and f["run_id"] != first["run_id"]
                      for f in frames):
            frames.append(await c.recv(timeout=30))
    ends = {f["run_id"]: f["payload"]["status"] for f in frames if f["type"] == "agent_completed"}
    assert ends[first["run_id"]] == "cancelled"
    assert sorted(ends.values()) == ["cancelled", "completed"]


async def test_stop_agent_mid_stream_cancels_and_keeps_the_partial_answer(
    server_factory: Any,
) -> None:
    server = server_factory(builtin_delta_delay=0.2)
    async with client(server) as c:
        await c.send_message("what is 12*(3+4)?")
        delta = (await c.until(lambda f: f["type"] == "partial_result", timeout=30))[-1]
        await c.send("stop_agent", {"run_id": delta["run_id"]})
        frames = await c.until(lambda f: f["type"] in TERMINAL, timeout=10)
    end = frames[-1]
    assert end["type"] == "agent_completed" and end["payload"]["status"] == "cancelled"
    async with api(server) as http:
        run = (await http.get(f"/api/runs/{delta['run_id']}")).json()
        msgs = (await http.get(f"/api/threads/{delta['thread_id']}/messages")).json()["items"]
    assert run["status"] == "cancelled"
    assert msgs[-1]["role"] == "assistant" and msgs[-1]["content"].startswith(
        delta["payload"]["delta"])
    from .test_metrics import sample, scrape

    assert sample(await scrape(server), "runwire_runs_total", status="cancelled") == 1


async def test_stop_by_thread_cancels_the_active_and_the_queued_run(server_factory: Any) -> None:
    server = server_factory(builtin_delta_delay=0.2)
    async with client(server) as c:
        await c.send_message("what is 2+2?")
        started = (await c.until(lambda f: f["type"] == "agent_started", timeout=30))[-1]
        await c.send_message("what is 3+3?", thread_id=started["thread_id"])
        queued = (await c.until(lambda f: f["type"] == "agent_progress", timeout=30))[-1]
        await c.send("stop_agent", {"thread_id": started["thread_id"]})
        frames: list[Frame] = []
        while sum(1 for f in frames if f["type"] in TERMINAL) < 2:
            frames.append(await c.recv(timeout=10))
    runs = by_run(frames)
    assert runs[queued["run_id"]][-1]["payload"]["status"] == "cancelled"
    assert "agent_started" not in [f["type"] for f in runs[queued["run_id"]]]
    assert runs[started["run_id"]][-1]["payload"]["status"] == "cancelled"


async def test_a_run_over_the_execution_timeout_ends_timed_out(server_factory: Any) -> None:
    server = server_factory(agent_execution_timeout=0.3, builtin_delta_delay=0.2)
    async with client(server) as c:
        ack, frames = await c.ask("what is 12*(3+4)?", timeout=30)
    end = frames[-1]
    assert end["type"] == "agent_error" and end["payload"]["code"] == "timeout"
    assert end["payload"]["retryable"] is True
    async with api(server) as http:
        run = (await http.get(f"/api/runs/{ack['payload']['run_id']}")).json()
    assert run["status"] == "timed_out"
    from .test_metrics import sample, scrape

    assert sample(await scrape(server), "runwire_runs_total", status="timed_out",
                  code="timeout") == 1


def test_a_run_storing_its_end_is_not_cancelled_by_a_racing_lease_renewal(
    server: ServerHandle,
) -> None:
    """A renewal that misses a run which just committed its end must not cancel it: the
    cancel would land between the commit and the publish, and clients would get the
    terminal event only by resume."""
    import asyncio

    from runwire.runs.scheduler import RunTicket

    scheduler = server.services.runs.scheduler

    async def probe() -> None:
        never = asyncio.Event()
        task = asyncio.create_task(never.wait())
        ticket = RunTicket(run_id="run-ending", thread_id="t", user_id="u", emitter=None)  # type: ignore[arg-type]
        ticket.task, ticket.ending = task, True
        scheduler._running[ticket.run_id] = ticket
        try:
            await scheduler.renew_once()  # not `running` in the database: looks lost
            assert ticket.cancel_reason is None and not task.cancelling()
            assert scheduler.cancel_local(ticket.run_id, "stopped") is False
            ticket.ending = False  # the same run before its end: the renewal does stop it
            await scheduler.renew_once()
            assert ticket.cancel_reason == "lease_lost" and task.cancelling()
        finally:
            del scheduler._running[ticket.run_id]
            task.cancel()

    server.call(probe)
