"""A thread's events for one HTTP reader: subscribe, then replay from the log, then live.

The same delivery rules as a WebSocket connection (DESIGN "Subscribe, then replay, then
live"), with the cursor arithmetic of :mod:`runwire.gateway.delivery`:

1. subscribe to the user's bus (live events of the thread are buffered from here on);
2. read the log after ``after_seq`` and yield it (the cursor advances);
3. take the buffered and later live events: the next seq is yielded, a seq already
   yielded is dropped, a higher one is a gap, read from the log before it is yielded.

So a stream never repeats a seq and never skips one the log holds, whatever the timing.
When continuity cannot be proven (``after_seq`` pruned, or ahead of the log) the first
item is ``replay_complete`` with ``complete: false`` (the client reloads over REST).

Bounds and ends: the live buffer holds at most ``buffer`` events; a reader that falls
that far behind gets the stream ended (it reconnects with ``Last-Event-ID``; nothing is
lost). The stream ends when ``until`` says so (a run stream: after its terminal event)
or when the thread is deleted. Leaving the iteration (client gone) drops the bus
subscription in ``finally``; no task is started here.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar

from sse_starlette import EventSourceResponse
from sse_starlette.event import ServerSentEvent

from runwire.bus.base import Bus
from runwire.gateway.delivery import Cursor, Verdict, plan_resume
from runwire.protocol.envelope import Envelope, encode
from runwire.store.reader import ThreadReader

PAGE = 1000
SSE_MEDIA = "text/event-stream"
# The schema of one event (its fields; `data` is the JSON text of the event).
SSE_RESPONSE: dict[int | str, dict[str, Any]] = {200: {
    "description": "Server-sent events",
    "content": {SSE_MEDIA: {"schema": {"type": "object", "properties": {
        "data": {"type": "string"}, "event": {"type": "string"}, "id": {"type": "string"},
        "retry": {"type": "integer"}}}}}}}
T = TypeVar("T")


class StreamOverflow(Exception):
    """The reader fell `buffer` events behind: the stream ends, the client resumes."""


class NodeEventSource(EventSourceResponse):
    """sse-starlette's response, ending when this node drains (`closing` is set).

    Why not the library's own shutdown detection: it is a process-wide task polling
    uvicorn's SIGTERM handler every 0.5 s, which sees only a server in the main thread
    and outlives the app otherwise; runwire owns its shutdown order (streams end after
    the runs had their grace period, with the WebSockets).
    """

    def __init__(self, *args: Any, closing: asyncio.Event, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._closing = closing

    async def _listen_for_exit_signal_with_grace(self) -> None:
        await self._closing.wait()


async def _uncancelled(coro: Coroutine[Any, Any, T]) -> T:
    """Await a database read that a disconnect must not cut in half.

    A client leaving cancels its stream; cancelling an aiosqlite query mid-way
    invalidates the connection, and SQLAlchemy's close of it never finishes (a task left
    pending forever). The read runs to its end instead (milliseconds) and is dropped.
    """
    task = asyncio.ensure_future(coro)
    task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieve it
    return await asyncio.shield(task)


def sse_event(env: Envelope) -> ServerSentEvent:
    """SSE fields (SPEC 8): ``id`` the seq (thread events), ``event`` the type, ``data``
    the envelope JSON (one line: the JSON has no raw newlines)."""
    return ServerSentEvent(data=env.text, event=env.type,
                           id=str(env.seq) if env.seq is not None else None)


async def thread_events(
    *, bus: Bus, reader: ThreadReader, user_id: str, thread_id: str, after_seq: int,
    buffer: int, keep: Callable[[Envelope], bool] = lambda env: True,
    until: Callable[[Envelope], bool] = lambda env: False,
) -> AsyncIterator[Envelope]:
    """The thread's events with seq > `after_seq`, stored then live (module contract).

    Args:
        keep: which events to yield (a run stream keeps its own); the cursor advances
            over the others too, so filtering never looks like a gap.
        until: the stream ends after yielding an event for which this is true.
    Raises:
        NotFound: the thread is missing or another user's (before anything is yielded).
        StreamOverflow: the reader fell `buffer` events behind.
    """
    queue: asyncio.Queue[Envelope | None] = asyncio.Queue()
    state = {"overflow": False}

    def offer(env: Envelope) -> None:
        if env.thread_id == thread_id and env.seq is not None:
            if queue.qsize() >= buffer:
                state["overflow"] = True
                queue.put_nowait(None)
            elif not state["overflow"]:
                queue.put_nowait(env)
        elif env.type == "thread_deleted" and env.thread_id is None \
                and json.loads(env.text)["payload"].get("thread_id") == thread_id:
            queue.put_nowait(None)

    async with bus.subscribe(user_id, offer):
        bounds = await _uncancelled(reader.bounds(user_id, thread_id))
        cursor = Cursor()
        plan = plan_resume(cursor, after_seq, bounds.last, bounds.first)
        if not plan.complete:
            yield Envelope(user_id, "replay_complete", encode("replay_complete", {
                "thread_id": thread_id, "last_seq": bounds.last, "complete": False}))
        cursor.last = plan.start

        async def read(after: int, before: int | None) -> AsyncIterator[Envelope]:
            while True:
                page = await _uncancelled(reader.events(
                    user_id, thread_id, after_seq=after, before_seq=before, limit=PAGE,
                    check_owner=False))
                for env in page:
                    yield env
                if len(page) < PAGE:
                    return
                after = page[-1].seq or after

        async for env in read(cursor.last, None):
            if cursor.fill(env):
                if keep(env):
                    yield env
                if until(env):
                    return
        while True:
            live = await queue.get()
            if live is None:
                if state["overflow"]:
                    raise StreamOverflow(thread_id)
                return  # the thread was deleted
            verdict = cursor.on_live(live, held_cap=buffer)
            if verdict is Verdict.DROP:
                continue
            out: list[Envelope] = [live]
            if verdict is Verdict.REPAIR:
                out = []
                gap = cursor.gap()
                if gap is not None:
                    out = [env async for env in read(*gap) if cursor.fill(env)]
                out += cursor.release()
                cursor.settle()
            for env in out:
                if keep(env):
                    yield env
                if until(env):
                    return
