"""Supervised background tasks: every task named, every failure logged and counted.

Two kinds (STYLE "Structured concurrency": a background failure is surfaced when it
happens, never only at shutdown):

- :meth:`Supervisor.keep_running` — a loop of the node (health watch, presence refresh,
  idle sweep, event retention...). When it raises, the failure is logged with its
  traceback, counted in ``runwire_background_task_failures_total{task}`` and the loop is
  started again after a backoff (0.5 s doubling to 30 s, back to 0.5 s once it has run
  for a minute). None is fatal: each guards a convenience (a gauge, a cleanup) whose
  absence for a while is better than a node that stops serving.
- :meth:`Supervisor.guarded` — work another component awaits from its own task (the
  bus's catch-up after a Redis outage): failures logged and counted, never raised.
- :meth:`Supervisor.spawn` — one piece of work (a frame's handler, a gap repair). Its
  failure is logged and counted the same way, then handed to ``on_error`` (which answers
  the client); it is not retried: the client decides.

:meth:`Supervisor.aclose` cancels and awaits everything still running.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)

OnFailure = Callable[[str], None]


class Supervisor:
    """Owns a node's background tasks.

    Args:
        on_failure: called with the task's kind for every failure (the metric).
        backoff: first and longest delay before a failed loop starts again (seconds).
        healthy_after: a loop that ran this long before failing restarts at the first
            delay again.
    """

    def __init__(self, *, on_failure: OnFailure, backoff: tuple[float, float] = (0.5, 30.0),
                 healthy_after: float = 60.0) -> None:
        self._on_failure = on_failure
        self._backoff = backoff
        self._healthy_after = healthy_after
        self._tasks: set[asyncio.Task[Any]] = set()
        self.failures: dict[str, int] = {}

    def __len__(self) -> int:
        """Tasks still running."""
        return len(self._tasks)

    def failed(self, kind: str, exc: BaseException) -> None:
        """Log and count one failure of a task of `kind`."""
        log.error("background task %s failed", kind, exc_info=exc)
        self.failures[kind] = self.failures.get(kind, 0) + 1
        self._on_failure(kind)

    def spawn(self, kind: str, coro: Coroutine[Any, Any, None], *, name: str | None = None,
              on_error: Callable[[BaseException], None] | None = None,
              group: set[asyncio.Task[None]] | None = None) -> asyncio.Task[None]:
        """Run `coro` once as a task named `name` (default `kind`).

        Args:
            on_error: called after a failure was logged and counted (not on cancel).
            group: a set the task belongs to while it runs (its owner's, to cancel or
                await it).
        """

        async def guarded() -> None:
            try:
                await coro
            except Exception as exc:
                self.failed(kind, exc)
                if on_error is not None:
                    on_error(exc)

        task = asyncio.create_task(guarded(), name=name or kind)
        # Cancelled before its first step, `guarded` never awaits `coro`: close it so it
        # isn't reported as never awaited (a no-op once it ran).
        task.add_done_callback(lambda _: coro.close())
        self._track(task, group)
        return task

    def keep_running(self, kind: str, loop: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        """Run ``loop()`` until cancelled, starting it again (with backoff) when it
        raises; a loop that returns is done."""

        async def supervised() -> None:
            clock = asyncio.get_running_loop()
            delay = self._backoff[0]
            while True:
                started = clock.time()
                try:
                    await loop()
                    return
                except Exception as exc:
                    self.failed(kind, exc)
                if clock.time() - started >= self._healthy_after:
                    delay = self._backoff[0]
                log.warning("restarting %s in %.1f s", kind, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._backoff[1])

        task = asyncio.create_task(supervised(), name=kind)
        self._track(task, None)
        return task

    def guarded(self, kind: str, fn: Callable[[], Awaitable[None]]
                ) -> Callable[[], Awaitable[None]]:
        """`fn` for a caller that awaits it from its own task (a callback such as the
        bus's ``on_reconnect``): a failure is logged and counted here, not raised."""

        async def call() -> None:
            try:
                await fn()
            except Exception as exc:
                self.failed(kind, exc)

        return call

    def _track(self, task: asyncio.Task[None], group: set[asyncio.Task[None]] | None) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if group is not None:
            group.add(task)
            task.add_done_callback(group.discard)

    async def aclose(self) -> None:
        """Cancel every task still running and wait for them to end."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
