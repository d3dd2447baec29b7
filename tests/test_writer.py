"""The node's event writer (group commit): many runs' events in one transaction, order per
thread, nothing sent before its commit, and failures that fail exactly the runs they
concern.

The writer is held at a known point by holding the database's write lock (SQLite): its
transaction waits for the lock, so everything emitted meanwhile lands in the next batch.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from runwire.app import Services
from runwire.errors import LeaseLost, StorageUnavailable
from runwire.protocol.envelope import Envelope
from runwire.runs.emitter import RunEmitter
from runwire.store.eventlog import NewEvent

from .conftest import ServerHandle
from .helpers import client


async def _threads(server: ServerHandle, n: int) -> list[str]:
    ids = []
    async with client(server) as c:
        for i in range(n):
            ack, _ = await c.ask(f"what is {i}+1?")
            ids.append(ack["payload"]["thread_id"])
    return ids


@contextlib.asynccontextmanager
async def _held(services: Services) -> AsyncIterator[None]:
    """The writer's next transaction waits while this block runs."""
    lock = services.db._write_lock
    assert lock is not None
    async with lock:
        yield


@contextlib.asynccontextmanager
async def _published(services: Services, user: str) -> AsyncIterator[list[Envelope]]:
    seen: list[Envelope] = []
    async with services.bus.subscribe(user, seen.append):
        yield seen


def _emitter(services: Services, thread_id: str, run_id: str, **kw: Any) -> RunEmitter:
    return RunEmitter(writer=services.runs.writer, user_id="alice", thread_id=thread_id,
                      run_id=run_id, **kw)


def _delta(text: str) -> dict[str, str]:
    return {"agent_name": "a", "message_id": "m", "delta": text}


def test_events_of_many_runs_commit_in_one_transaction_in_order_and_after_commit(
    server: ServerHandle,
) -> None:
    """Three runs on three threads emit while the writer is busy: their events are one
    batch (one transaction), deltas of one answer merged, gapless seqs per thread in emit
    order, and nothing reaches the bus before that commit."""
    threads = asyncio.run(_threads(server, 3))
    services = server.services
    writer = services.runs.writer
    batches: list[Sequence[NewEvent]] = []

    async def probe() -> tuple[list[Envelope], list[Envelope], int]:
        observe = writer._observe
        writer._observe = lambda events, seconds: batches.append(events)
        try:
            first = _emitter(services, threads[0], "run-a")
            others = [_emitter(services, t, f"run-{t[:4]}") for t in threads[1:]]
            async with _published(services, "alice") as seen:
                async with _held(services):
                    before = writer.batches
                    await first.emit("agent_thinking", {"agent_name": "a", "thought": "1"})
                    for _ in range(1000):  # the writer takes it and waits for the lock
                        if not writer.pending:
                            break
                        await asyncio.sleep(0)
                    assert writer.pending == 0
                    for em in (first, *others):
                        await em.emit("tool_executing", {"agent_name": "a", "tool_name": "t",
                                                          "tool_args": {}, "tool_call_id": "c"})
                        for part in ("It ", "is ", "2."):
                            await em.emit("partial_result", _delta(part))
                        await em.emit("agent_thinking", {"agent_name": "a", "thought": "2"})
                    early = list(seen)
                await asyncio.gather(*(em.commit() for em in (first, *others)))
                return early, list(seen), writer.batches - before
        finally:
            writer._observe = observe

    early, seen, commits = server.call(probe)
    assert early == []  # nothing sent before its commit
    # the first event alone, then everything else together (commits waiting for what
    # was committed already may follow in a batch of their own, with no events)
    assert [len(b) for b in batches if b] == [1, 9]
    assert commits >= 2
    for thread_id, run_id in zip(threads, ["run-a", *(f"run-{t[:4]}" for t in threads[1:])],
                                 strict=True):
        mine = [e for e in seen if e.run_id == run_id]
        types = [e.type for e in mine]
        expected = ["tool_executing", "partial_result", "agent_thinking"]
        assert types == (["agent_thinking", *expected] if run_id == "run-a" else expected)
        seqs = [e.seq for e in mine]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # gapless, in order
        delta = next(e for e in mine if e.type == "partial_result")
        assert '"delta":"It is 2."' in delta.text
        assert all(e.thread_id == thread_id for e in mine)


def test_a_run_that_lost_its_lease_fails_alone_in_a_shared_batch(server: ServerHandle) -> None:
    """Fencing is per run: in one batch, the events of a run this node does not hold are
    left out (its next emit raises LeaseLost); the other run's events commit."""
    threads = asyncio.run(_threads(server, 2))
    services = server.services

    async def probe() -> tuple[list[str], bool]:
        lost = _emitter(services, threads[0], "run-not-mine")
        lost.fenced = True  # not `running` on this node in the database
        fine = _emitter(services, threads[1], "run-fine")
        async with _published(services, "alice") as seen:
            async with _held(services):
                await lost.emit("agent_thinking", {"agent_name": "a", "thought": "x"})
                await fine.emit("agent_thinking", {"agent_name": "a", "thought": "y"})
            await fine.commit()
        raised = False
        try:
            await lost.emit("agent_thinking", {"agent_name": "a", "thought": "z"})
        except LeaseLost:
            raised = True
        return [e.run_id or "" for e in seen], raised

    runs, raised = server.call(probe)
    assert runs == ["run-fine"]
    assert raised


def test_a_database_outage_is_retried_per_run_for_its_own_patience(
    server: ServerHandle, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While the database is unavailable the writer keeps the events and retries: a run
    that may wait 0.1 s fails with StorageUnavailable (its commit, then its next emit), one
    that may wait a minute commits once the database answers again."""
    threads = asyncio.run(_threads(server, 2))
    services = server.services
    db = services.db
    real = db.transaction
    down = True
    attempts = 0

    async def outage(work: Any) -> Any:  # the database's answer while it is down
        nonlocal attempts
        if down:
            attempts += 1
            raise StorageUnavailable("database unavailable: OperationalError")
        return await real(work)

    monkeypatch.setattr(db, "transaction", outage)

    async def probe() -> list[str]:
        nonlocal down
        impatient = _emitter(services, threads[0], "run-impatient", retry_for=0.1)
        patient = _emitter(services, threads[1], "run-patient", retry_for=60.0)
        async with _published(services, "alice") as seen:
            await impatient.emit("agent_thinking", {"agent_name": "a", "thought": "x"})
            await patient.emit("agent_thinking", {"agent_name": "a", "thought": "y"})
            waiting = asyncio.ensure_future(patient.commit())
            with pytest.raises(StorageUnavailable):
                await asyncio.wait_for(impatient.commit(), 10)
            with pytest.raises(StorageUnavailable):
                await impatient.emit("agent_thinking", {"agent_name": "a", "thought": "z"})
            assert not waiting.done()  # still being retried
            down = False
            await asyncio.wait_for(waiting, 30)
            return [e.run_id or "" for e in seen]

    runs = server.call(probe, timeout=60)
    assert runs == ["run-patient"]
    assert attempts >= 2  # retried, not given up at once


def test_an_unexpected_error_fails_only_its_own_run(server: ServerHandle) -> None:
    """A bug in one run's transition (not a database outage) is not retried for seconds
    and does not fail the other runs of its batch."""
    threads = asyncio.run(_threads(server, 2))
    services = server.services

    def broken(_conn: Any) -> bool:
        raise ValueError("a bug")

    async def probe() -> tuple[str, list[str]]:
        bad = _emitter(services, threads[0], "run-bad")
        good = _emitter(services, threads[1], "run-good")
        async with _published(services, "alice") as seen:
            async with _held(services):
                failing = asyncio.ensure_future(
                    bad.commit([NewEvent("agent_thinking", {"thought": "x"}, "run-bad")], broken))
                await good.emit("agent_thinking", {"agent_name": "a", "thought": "y"})
                committed = asyncio.ensure_future(good.commit())
            await asyncio.wait_for(committed, 10)
            try:
                await asyncio.wait_for(failing, 10)
            except ValueError as exc:
                error = str(exc)
            return error, [e.run_id or "" for e in seen]

    error, runs = server.call(probe)
    assert error == "a bug"
    assert runs == ["run-good"]
