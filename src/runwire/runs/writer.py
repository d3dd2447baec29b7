"""The node's event writer: one group commit for the events of every run (DESIGN.md,
"Group commit").

Runs hand their events to their :class:`~runwire.runs.emitter.RunEmitter`, which only
buffers. This writer takes what all runs have pending and commits it in one transaction
as soon as the previous commit has finished: an idle node commits each event at once
(latency: one commit), a busy one batches more per commit (throughput grows with load).
There is no timer.

Inside the transaction, in this order: fencing of the runs that need it (one query for the
batch), each run's transition (a conditional update such as its end, see
:mod:`runwire.runs.lifecycle`), seqs for every thread (on PostgreSQL one ``UPDATE …
RETURNING`` for all of them), every row in one multi-row INSERT. Consecutive deltas of one
answer are merged first. After the commit the envelopes are published — in seq order per
thread, batches in commit order, in one Redis round trip — and only then are the waiting
callers told.

Failures fail exactly the runs they concern:
- a run that lost its lease (fencing) or whose thread is gone is left out of the batch
  and fails (raised by its next ``emit``); a refused transition fails only its commit;
- a database outage fails the batch: its events go back to their runs and the writer
  retries with backoff, each run for up to its ``retry_for`` seconds, then that run fails
  with StorageUnavailable;
- an unexpected error (a bug) is retried once per run alone, so one run's bad event never
  fails the others' — and is never retried for seconds.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from runwire.bus.base import Bus
from runwire.errors import LeaseLost, NotFound, StorageUnavailable
from runwire.protocol.envelope import Envelope, utc_now
from runwire.store import eventlog, runqueue
from runwire.store.db import Database
from runwire.store.eventlog import NewEvent

if TYPE_CHECKING:
    from runwire.runs.emitter import RunEmitter

log = logging.getLogger(__name__)

Transition = Callable[[Connection], bool]
"""A conditional write in the batch's transaction; False: the run moved on (it wrote
nothing), and the run's events of this batch are left out."""

GATHER = 0.002
"""Longest a batch waits for runs that are still adding to it (see EventWriter._gather)."""
QUIET_TURNS = 4
"""Turns of the loop without a new item that end the wait (a run's next event is a few
turns away: pydantic-ai's stream passes each through several tasks and checkpoints)."""

Delta = tuple[str, str, str]  # (agent_name, message_id, delta) of a partial_result


@dataclass(eq=False)
class Commit:
    """A caller waiting for everything its run emitted so far, plus `events`, to commit.

    `transition` runs in the same transaction before the events are inserted; when it
    returns False the commit fails with `rejected`.
    """

    events: Sequence[NewEvent]
    transition: Transition | None
    rejected: Exception | None
    retry_for: float | None
    future: asyncio.Future[None]


Item = Delta | NewEvent | Commit


@dataclass(eq=False)
class _RunBatch:
    """One run's share of a batch."""

    emitter: RunEmitter
    items: list[Item]
    events: list[NewEvent] = field(default_factory=list)
    commits: list[Commit] = field(default_factory=list)
    envelopes: list[Envelope] = field(default_factory=list)
    error: Exception | None = None  # fails the run
    refused: Commit | None = None  # a transition refused: fails that commit only


def merge(emitter: RunEmitter, items: Sequence[Item]) -> tuple[list[NewEvent], list[Commit]]:
    """The events of `items` in order, each run of deltas of one answer merged into one
    ``partial_result``, and the commits among them."""
    events: list[NewEvent] = []
    commits: list[Commit] = []
    key: tuple[str, str] | None = None
    parts: list[str] = []

    def close_deltas() -> None:
        if key is not None:
            events.append(NewEvent("partial_result", {
                "agent_name": key[0], "message_id": key[1], "delta": "".join(parts)},
                emitter.run_id))
            parts.clear()

    for item in items:
        if isinstance(item, tuple):
            if key != (item[0], item[1]):
                close_deltas()
                key = (item[0], item[1])
            parts.append(item[2])
            continue
        close_deltas()
        key = None
        if isinstance(item, Commit):
            commits.append(item)
            events.extend(item.events)
        else:
            events.append(item)
    close_deltas()
    return events, commits


class EventWriter:
    """Commits and publishes the events of every run of this node.

    Args:
        max_pending: items buffered across all runs before ``emit`` waits (back-pressure:
            a full writer slows the producing runs, it never drops).
        observe: called after each commit with the batch's events and its seconds.
        in_transaction: called inside each batch's transaction with the envelopes it
            inserts (the webhook outbox records its rows there: same transaction).
    """

    def __init__(self, *, db: Database, bus: Bus, node_id: str, max_pending: int = 20_000,
                 observe: Callable[[Sequence[NewEvent], float], None] | None = None,
                 in_transaction: Callable[[Connection, list[Envelope]], object] | None = None,
                 ) -> None:
        self._db = db
        self._bus = bus
        self._node = node_id
        self._max_pending = max_pending
        self._observe = observe
        self._in_transaction = in_transaction
        self._dirty: dict[RunEmitter, None] = {}  # runs with pending items, in arrival order
        self.pending = 0  # items buffered across runs
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._published: asyncio.Queue[tuple[list[Envelope], Callable[[], None]] | None] = (
            asyncio.Queue())
        self._tasks: list[asyncio.Task[None]] = []
        self.batches = 0  # committed transactions (tests, metrics)
        self._closing = False

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._write_forever(), name="event-writer"),
                       asyncio.create_task(self._publish_forever(), name="event-publisher")]

    # ---- what emitters call ----------------------------------------------------------------

    def notify(self, emitter: RunEmitter, added: int = 1) -> None:
        """`emitter` has `added` new items."""
        self.pending += added
        self._dirty[emitter] = None
        self._wake.set()
        if self.pending >= self._max_pending:
            self._room.clear()

    async def room(self) -> None:
        """Wait until the writer has room (only waits while it is over `max_pending`)."""
        if not self._room.is_set():
            await self._room.wait()

    # ---- the loop ----------------------------------------------------------------------------

    async def _write_forever(self) -> None:
        delay = 0.05
        while True:
            if not self._closing:
                await self._wake.wait()
                await self._gather()
            self._wake.clear()
            batch = self._take()
            if not batch:
                if self._closing and not self._dirty:
                    self._published.put_nowait(None)  # the publisher ends after the rest
                    return
                continue
            try:
                await self._commit(batch)
            except StorageUnavailable as exc:
                self._requeue(batch, exc)
                await asyncio.sleep(delay * (0.5 + random.random()))  # backoff with jitter
                delay = min(delay * 2, 2.0)
                self._wake.set()
                continue
            except Exception:
                log.exception("event batch failed; retrying each run alone")
                for one in batch:
                    try:
                        await self._commit([one])
                    except Exception as exc:
                        log.error("events of run %s failed: %r", one.emitter.run_id, exc)
                        one.error = exc
                        self._done([one])
                continue
            delay = 0.05

    async def _gather(self) -> None:
        """Let the runs that are producing right now add to this batch: yield to the loop
        while each turn brought new items, for at most `GATHER` seconds. A lone event
        (nothing else running) is committed after one turn of the loop; a model streaming
        a burst of deltas, or many streams at once, fill one commit instead of one each."""
        deadline = time.monotonic() + GATHER
        seen, quiet = self.pending, 0
        while quiet < QUIET_TURNS and not self._closing and time.monotonic() < deadline:
            await asyncio.sleep(0)
            quiet = quiet + 1 if self.pending == seen else 0
            seen = self.pending

    def _take(self) -> list[_RunBatch]:
        batch: list[_RunBatch] = []
        dirty, self._dirty = self._dirty, {}
        for emitter in dirty:
            items = emitter.take()
            self.pending -= len(items)
            if emitter.closed:  # its end already committed; nobody waits for the rest
                for item in items:
                    if isinstance(item, Commit):
                        item.future.cancel()
                continue
            if not items:
                continue
            run = _RunBatch(emitter, items)
            run.events, run.commits = merge(emitter, items)
            batch.append(run)
        if self.pending < self._max_pending:
            self._room.set()
        return batch

    async def _commit(self, batch: list[_RunBatch]) -> None:
        began = time.monotonic()
        for run in batch:
            run.error = run.refused = None
            run.envelopes = []
        await self._db.transaction(lambda conn: self._write(conn, batch))
        self.batches += 1
        if self._observe is not None:
            self._observe([e for run in batch if run.error is None and run.refused is None
                           for e in run.events], time.monotonic() - began)
        for run in batch:
            run.emitter.failing_since = None
        self._done(batch)

    def _write(self, conn: Connection, batch: list[_RunBatch]) -> None:
        """The batch's transaction (runs in the database's thread on SQLite)."""
        fenced = [run.emitter.run_id for run in batch if run.emitter.fenced]
        held = runqueue.owned(conn, fenced, self._node) if fenced else set()
        threads: dict[str, list[_RunBatch]] = {}
        for run in batch:
            emitter = run.emitter
            if emitter.fenced and emitter.run_id not in held:
                run.error = LeaseLost(emitter.run_id)
                continue
            for commit in run.commits:
                if commit.transition is not None and not commit.transition(conn):
                    run.refused = commit
                    break
            if run.refused is None and run.events:
                threads.setdefault(emitter.thread_id, []).append(run)
        now = utc_now()
        rows: list[dict[str, Any]] = []
        counts = {thread_id: sum(len(run.events) for run in runs)
                  for thread_id, runs in threads.items()}
        lasts = eventlog.allocate_many(conn, counts, now)
        for thread_id, runs in threads.items():
            last = lasts.get(thread_id)
            if last is None:
                for run in runs:
                    run.error = NotFound(f"thread {thread_id} not found")
                continue
            seq = last - counts[thread_id] + 1
            for run in runs:
                run.envelopes = eventlog.encode_events(run.emitter.user_id, thread_id, seq,
                                                       run.events, now, rows)
                seq += len(run.events)
        eventlog.insert_rows(conn, rows)
        if self._in_transaction is not None:
            self._in_transaction(conn, [env for run in batch for env in run.envelopes])

    def _requeue(self, batch: list[_RunBatch], exc: StorageUnavailable) -> None:
        """A failed commit: each run's items go back in front of what it emitted since,
        unless the run has been failing for longer than it may wait."""
        now = time.monotonic()
        failed: list[_RunBatch] = []
        for run in batch:
            emitter = run.emitter
            if emitter.failing_since is None:
                emitter.failing_since = now
            patience = max([emitter.retry_for, *(c.retry_for or 0.0 for c in run.commits)])
            if emitter.closed or now - emitter.failing_since >= patience:
                run.error = exc
                failed.append(run)
            else:
                emitter.give_back(run.items)
                self.notify(emitter, len(run.items))
        if failed:
            self._done(failed)

    # ---- publishing --------------------------------------------------------------------------

    async def publish(self, envelopes: list[Envelope]) -> None:
        """Publish envelopes committed by another transaction (a message's acceptance, a
        claim) in line with the writer's batches, so a thread's events reach the bus in
        seq order; returns once they are published."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.publish_soon(envelopes, lambda: done.set_result(None))
        await done

    def publish_soon(self, envelopes: list[Envelope], then: Callable[[], None]) -> None:
        """Like :meth:`publish` without waiting: `then` is called once they are published."""
        if not envelopes:
            then()
            return
        if not self._tasks:  # not running (start-up recovery, shutdown): publish directly
            task = asyncio.create_task(self._send(envelopes))
            task.add_done_callback(lambda _: then())
            return
        self._published.put_nowait((envelopes, then))

    def _done(self, batch: list[_RunBatch]) -> None:
        """Hand a settled batch to the publisher (its envelopes, then its waiters)."""
        envelopes = [env for run in batch for env in run.envelopes]
        self._published.put_nowait((envelopes, lambda: self._settle_all(batch)))

    async def _publish_forever(self) -> None:
        """Publish committed envelopes in commit order, then resolve their waiters."""
        while True:
            item = await self._published.get()
            if item is None:
                return
            envelopes, settle = item
            await self._send(envelopes)
            settle()

    async def _send(self, envelopes: list[Envelope]) -> None:
        try:
            await self._bus.publish_many(envelopes)
        except Exception:
            log.warning("bus publish failed; clients repair from the log", exc_info=True)

    def _settle_all(self, batch: list[_RunBatch]) -> None:
        for run in batch:
            if run.error is not None:
                run.emitter.fail(run.error)
            for commit in run.commits:
                if commit.future.done():
                    continue
                if run.error is not None:
                    commit.future.set_exception(run.error)
                elif run.refused is not None:
                    commit.future.set_exception(commit.rejected or LeaseLost(run.emitter.run_id))
                else:
                    commit.future.set_result(None)

    async def aclose(self, timeout: float = 5.0) -> None:
        """Commit and publish what is pending (for up to `timeout` s), then stop."""
        if not self._tasks:
            return
        self._closing = True
        self._wake.set()
        writer, publisher = self._tasks
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(asyncio.gather(writer, publisher))
        except TimeoutError:
            log.warning("event writer stopped with events still pending")
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
