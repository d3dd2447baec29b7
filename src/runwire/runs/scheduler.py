"""In-process run scheduling: a FIFO queue, a per-node concurrency limit, one active run
per thread.

The scheduler owns the tasks of the runs it started: each one is awaited or cancelled
by it (:meth:`RunScheduler.drain`). It knows nothing of storage or events: it calls
``execute(ticket)`` to run a ticket and ``on_position(ticket, position)`` when a queued
ticket's 1-based queue position changes.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from runwire import logs
from runwire.runs.emitter import RunEmitter

log = logging.getLogger(__name__)

CancelReason = Literal["stopped", "interrupted", "deleted", "shutdown"]
TicketState = Literal["queued", "running", "done"]


@dataclass(eq=False)
class RunTicket:
    """A run this node is responsible for, from queued to done."""

    run_id: str
    thread_id: str
    user_id: str
    emitter: RunEmitter
    agent: str = "supervisor"
    message_id: str = ""
    state: TicketState = "queued"
    position: int | None = None
    cancel_reason: CancelReason | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    enqueued_at: float = 0.0
    received_at: float = 0.0  # time.monotonic() when the user message arrived


class RunScheduler:
    """FIFO queue + ``capacity`` concurrent runs + one running run per thread.

    Args:
        capacity: max runs executing at once on this node (`max_concurrent_agents`).
        execute: runs one ticket to its end (must store its terminal event itself).
        on_position: called when a queued ticket's position changes (not awaited
            in order with anything but its own run's events).
    """

    def __init__(
        self,
        *,
        capacity: int,
        execute: Callable[[RunTicket], Awaitable[None]],
        on_position: Callable[[RunTicket, int], Awaitable[None]],
    ) -> None:
        self.capacity = capacity
        self._execute = execute
        self._on_position = on_position
        self._queue: deque[RunTicket] = deque()
        self._running: dict[str, RunTicket] = {}
        self._busy_threads: set[str] = set()
        self._tickets: dict[str, RunTicket] = {}
        self._side_tasks: set[asyncio.Task[None]] = set()
        self.accepting = True

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def running(self) -> int:
        return len(self._running)

    def has_user(self, user_id: str) -> bool:
        """True while the user has a queued or running run on this node."""
        return any(t.user_id == user_id for t in self._tickets.values())

    def get(self, run_id: str) -> RunTicket | None:
        return self._tickets.get(run_id)

    def of_thread(self, thread_id: str) -> list[RunTicket]:
        """Active tickets of a thread: the running one first, then queued ones in order."""
        return [t for t in self._tickets.values() if t.thread_id == thread_id]

    def submit(self, ticket: RunTicket) -> None:
        """Queue a ticket; it starts as soon as capacity and its thread allow."""
        ticket.enqueued_at = asyncio.get_running_loop().time()
        self._tickets[ticket.run_id] = ticket
        self._queue.append(ticket)
        self._pump()

    def cancel(self, run_id: str, reason: CancelReason) -> TicketState | None:
        """Cancel a queued or running ticket.

        Returns the state it was in, or None if this node doesn't hold it. A queued
        ticket is removed and returned to the caller to end; a running one has its task
        cancelled (its execute() ends it).
        """
        ticket = self._tickets.get(run_id)
        if ticket is None or ticket.state == "done" or ticket.cancel_reason is not None:
            return None
        ticket.cancel_reason = reason
        if ticket.state == "queued":
            self._queue.remove(ticket)
            self._forget(ticket)
            self._pump()
            return "queued"
        if ticket.task is not None:
            ticket.task.cancel()
        return "running"

    def _forget(self, ticket: RunTicket) -> None:
        ticket.state = "done"
        self._tickets.pop(ticket.run_id, None)

    def _pump(self) -> None:
        """Start what can start, then report changed queue positions."""
        if self.accepting:
            for ticket in list(self._queue):
                if len(self._running) >= self.capacity:
                    break
                if ticket.thread_id in self._busy_threads:
                    continue
                self._queue.remove(ticket)
                self._start(ticket)
        for position, ticket in enumerate(self._queue, start=1):
            if ticket.position != position:
                ticket.position = position
                self._spawn(self._on_position(ticket, position), f"run-progress-{ticket.run_id}")

    def _start(self, ticket: RunTicket) -> None:
        ticket.state = "running"
        self._running[ticket.run_id] = ticket
        self._busy_threads.add(ticket.thread_id)
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
            log.exception("run task failed", extra={"run_id": ticket.run_id})
        finally:
            self._running.pop(ticket.run_id, None)
            self._busy_threads.discard(ticket.thread_id)
            self._forget(ticket)
            self._pump()

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        async def guarded() -> None:
            try:
                await coro
            except Exception:
                log.warning("queue progress event failed", exc_info=True)

        task = asyncio.create_task(guarded(), name=name)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    async def drain(self, grace: float) -> None:
        """Stop starting runs, wait up to `grace` s for running ones, cancel the rest."""
        self.accepting = False
        tasks = [t.task for t in self._running.values() if t.task is not None]
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=grace)
            for ticket in list(self._running.values()):
                if ticket.task in pending:
                    ticket.cancel_reason = "shutdown"
                    ticket.task.cancel()
            if pending:
                await asyncio.wait(pending)
        for task in list(self._side_tasks):
            task.cancel()
        if self._side_tasks:
            await asyncio.wait(list(self._side_tasks))
