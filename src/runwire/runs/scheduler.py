"""This node's share of the run queue (the ``runs`` table, see store/runqueue.py).

The scheduler claims queued runs from the database up to ``capacity`` (woken at once when
this node accepts a message, and polling for runs queued on other nodes), executes each
in its own task, renews the leases of the runs it holds, and ends the runs of dead nodes
whose leases expired. It owns its tasks: each is awaited or cancelled (:meth:`drain`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from sqlalchemy.exc import IntegrityError

from runwire import logs
from runwire.errors import StorageUnavailable
from runwire.runs.emitter import RunEmitter
from runwire.runs.lifecycle import Admission, RunLifecycle
from runwire.store.runqueue import RunRecord

log = logging.getLogger(__name__)

CancelReason = Literal["stopped", "interrupted", "deleted", "shutdown", "lease_lost"]


@dataclass(eq=False)
class RunTicket:
    """A run this node executes, from its claim to its end."""

    run_id: str
    thread_id: str
    user_id: str
    emitter: RunEmitter
    agent: str = "supervisor"
    message_id: str = ""
    cancel_reason: CancelReason | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    received_at: float = 0.0  # time.monotonic() when the user message arrived (if here)
    run: RunRecord | None = field(default=None, repr=False)
    # Done once the run's agent_started is published: its execution waits for it.
    gate: asyncio.Future[None] | None = field(default=None, repr=False)
    # Set when the run starts storing its end: from then on nothing cancels it (its own
    # conditional end decides; a cancel there would only skip publishing what committed).
    ending: bool = False


class RunScheduler:
    """Claims, executes and guards this node's runs.

    Args:
        capacity: max runs executing at once on this node (`max_concurrent_agents`).
        ticket_for: builds the ticket of a claimed run.
        execute: runs one ticket to its end (stores its terminal event itself).
        on_expired: ends (or requeues) a run whose lease expired.
        on_tick: called after each claim round (queue positions).
        on_sweep: called by each sweep of the sweeper (approval timeouts).
        may_have_queued: False when no run is known to be queued: a freed slot then
            waits for the next poll instead of a claim round that would find nothing.
        lease: run lease; renewed every third of it.
        poll_interval: how often to look for runs queued on other nodes.
    """

    def __init__(
        self,
        *,
        lifecycle: RunLifecycle,
        capacity: int,
        ticket_for: Callable[[RunRecord], RunTicket],
        execute: Callable[[RunTicket], Awaitable[None]],
        on_expired: Callable[[RunRecord], Awaitable[None]],
        on_tick: Callable[[], Awaitable[None]],
        on_sweep: Callable[[], Awaitable[object]] | None = None,
        may_have_queued: Callable[[], bool] | None = None,
        lease: float,
        poll_interval: float = 0.5,
    ) -> None:
        self._lifecycle = lifecycle
        self.capacity = capacity
        self._ticket_for = ticket_for
        self._execute = execute
        self._on_expired = on_expired
        self._on_tick = on_tick
        self._on_sweep = on_sweep
        self._may_have_queued = may_have_queued or (lambda: True)
        self._lease = timedelta(seconds=lease)
        self._lease_seconds = lease
        self._poll = poll_interval
        self._running: dict[str, RunTicket] = {}
        self._wakeup = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self.accepting = True
        self.claimer_ok = True
        self.last_claim_at = 0.0  # time.monotonic() when the last claim round began

    @property
    def running(self) -> int:
        return len(self._running)

    def get(self, run_id: str) -> RunTicket | None:
        return self._running.get(run_id)

    def has_user(self, user_id: str) -> bool:
        """True while the user has a run executing on this node."""
        return any(t.user_id == user_id for t in self._running.values())

    def of_thread(self, thread_id: str) -> list[RunTicket]:
        return [t for t in self._running.values() if t.thread_id == thread_id]

    def wake(self) -> None:
        """Claim now (a run was queued or a slot freed)."""
        self._wakeup.set()

    def start(self) -> None:
        lease = self._lease_seconds
        loops = {"claimer": self._claim_forever(),
                 "leases": self._every(lease / 3, self.renew_once, "lease renewal"),
                 "sweeper": self._every(lease / 2, self.sweep_once, "expired-run sweep")}
        for name, loop in loops.items():
            self._loops.append(asyncio.create_task(loop, name=f"runs-{name}"))

    # ---- claiming ----------------------------------------------------------------------

    def admission(self) -> Admission | None:
        """A claim round for the transaction that queues a run (see
        :meth:`RunLifecycle.accept`), or None when this node has no free slot."""
        free = self.capacity - len(self._running)
        if not self.accepting or free <= 0:
            return None
        self.last_claim_at = time.monotonic()
        return Admission(free, self._lease, self._start)

    async def claim_once(self) -> int:
        free = self.capacity - len(self._running)
        if not self.accepting:
            return 0
        self.last_claim_at = time.monotonic()
        if free <= 0:
            return 0
        try:
            runs = await self._lifecycle.claim(limit=free, lease=self._lease, start=self._start)
        except IntegrityError:  # another node won a thread: try again at once
            self.wake()
            return 0
        self.claimer_ok = True
        return len(runs)

    async def _claim_forever(self) -> None:
        while self.accepting:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll):
                    await self._wakeup.wait()
            self._wakeup.clear()
            try:
                await self.claim_once()
                await self._on_tick()
            except StorageUnavailable:
                self.claimer_ok = False
            except Exception:
                self.claimer_ok = False
                log.exception("run claimer failed; retrying")

    def _start(self, run: RunRecord, gate: asyncio.Future[None] | None = None) -> None:
        ticket = self._ticket_for(run)
        ticket.run = run
        ticket.gate = gate
        self._running[ticket.run_id] = ticket
        ctx = logs.fresh_context(user_id=ticket.user_id, thread_id=ticket.thread_id,
                                 run_id=ticket.run_id)
        ticket.task = asyncio.create_task(self._run(ticket), name=f"run-{ticket.run_id}",
                                          context=ctx)

    async def _run(self, ticket: RunTicket) -> None:
        try:
            await self._execute(ticket)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("run task failed")
        finally:
            self._running.pop(ticket.run_id, None)
            if self._may_have_queued():  # else the poll finds what other nodes queue
                self.wake()

    # ---- cancelling --------------------------------------------------------------------

    def cancel_local(self, run_id: str, reason: CancelReason) -> bool:
        """Cancel a run executing on this node; its execute() stores how it ended."""
        ticket = self._running.get(run_id)
        if (ticket is None or ticket.cancel_reason is not None or ticket.task is None
                or ticket.ending):
            return False
        ticket.cancel_reason = reason
        ticket.task.cancel()
        return True

    # ---- leases and dead nodes ---------------------------------------------------------

    async def renew_once(self) -> None:
        ids = list(self._running)
        if not ids:
            return
        held = await self._lifecycle.renew(ids, self._lease)
        for run_id in ids:
            ticket = self._running.get(run_id)
            if ticket is None or ticket.ending:
                continue  # it ended (or is storing its end) while the renewal ran
            if run_id not in held:
                log.warning("lease of run %s lost; stopping it", run_id)
                self.cancel_local(run_id, "lease_lost")
            elif held[run_id]:
                self.cancel_local(run_id, "stopped")

    async def sweep_once(self) -> int:
        expired = await self._lifecycle.expired()
        for run in expired:
            if run.id not in self._running:
                await self._on_expired(run)
        if self._on_sweep is not None:
            await self._on_sweep()
        return len(expired)

    @staticmethod
    async def _every(interval: float, step: Callable[[], Awaitable[object]], what: str) -> None:
        """Run `step` every `interval` s forever; a failure is logged, never fatal."""
        while True:
            await asyncio.sleep(interval)
            try:
                await step()
            except StorageUnavailable:
                log.warning("%s skipped: database unavailable", what)
            except Exception:
                log.exception("%s failed", what)

    # ---- shutdown ----------------------------------------------------------------------

    async def drain(self, grace: float) -> None:
        """Stop claiming, wait up to `grace` s for running runs, cancel the rest."""
        self.accepting = False
        self.wake()
        tasks = [t.task for t in self._running.values() if t.task is not None]
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=grace)
            for ticket in list(self._running.values()):
                if ticket.task in pending:
                    self.cancel_local(ticket.run_id, "shutdown")
            if pending:
                await asyncio.wait(pending)
        for loop in self._loops:
            loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
