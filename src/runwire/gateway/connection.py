"""One client connection: its outbound queue, writer and per-thread delivery cursor.

Delivery rules (SPEC 2.4, DESIGN "Connections"):
    - Each thread event is sent at most once per connection; live events of a thread go
      out in seq order without gaps from the first one this connection received.
    - A live event above ``last + 1`` is held while the gap is read from the log
      (repair), then sent in order. A ``resume`` holds live events the same way while
      it replays the seqs this connection lacks, then flushes them, dropping what was sent.
    - Outbound frames wait in two lanes: a small priority lane (`pong`, `error`,
      `message_ack`) that may overtake, and the ordered lane (thread events,
      `replay_complete`, other frames, `chunk` runs). Overflowing the ordered lane with
      live events closes the connection with 4009 (the client resumes; nothing is lost).
      Replays wait for room instead of overflowing.
    - Nothing grows without bound: held events are capped at ``held_size`` per thread
      (past it only the highest seq is kept and the rest re-read from the log, see
      ``delivery.py``); the priority lane at ``priority_size``: the reader stops reading
      the socket while it is full (the client's own frames wait in TCP), and should
      frames answered by background handlers still push it to twice that, the
      connection is closed with 4009.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, runtime_checkable

from runwire.gateway.delivery import Cursor, Verdict, plan_resume
from runwire.protocol.codes import CloseCode, ErrorCode
from runwire.protocol.envelope import Envelope, encode, utf8_safe
from runwire.tasks import Supervisor

log = logging.getLogger(__name__)

Send = Callable[[list[str | bytes]], Awaitable[None]]
Close = Callable[[int, str], Awaitable[None]]
ReadEvents = Callable[[str, int, int | None], Awaitable[list[Envelope]]]
READ_PAGE = 1000  # events per log read (the reader's default limit)
BATCH = 64  # frames per socket write at most (a chunked event's chunks stay together)
BATCH_BYTES = 256 * 1024  # and no more events once this many characters are in a batch


FRAME_SINK: Final = "runwire.frames"  # ASGI scope extension: the server's FrameSink


@runtime_checkable
class FrameSink(Protocol):
    """What runwire's uvicorn protocol offers the gateway (``runwire.server``): many
    frames per socket write, and prepared frames when no extension was negotiated."""

    @property
    def raw_frames(self) -> bool: ...

    async def send_batch(self, frames: list[str | bytes]) -> None: ...


@dataclass(slots=True)
class Stats:
    frames_out: int = 0
    events_dropped_dup: int = 0
    repairs: int = 0


@dataclass(eq=False)
class Connection:
    """State and writer of one WebSocket connection.

    Args:
        send: writes a batch of frames on the socket, in order, at once: text, or (only
            when `prepared`) bytes of a ready WebSocket frame (``Envelope.framed``).
        prepared: the socket negotiated no extension, so prepared frames may be written.
        on_sent: after each batch, ``(control frames, events)`` sent (the metrics).
        close: sends the close frame.
        read_events: ``(thread_id, after_seq, before_seq)`` → stored events in seq order.
        tasks: runs the connection's repairs (named, failures logged and counted).
    """

    connection_id: str
    user_id: str
    scopes: frozenset[str]
    send: Send
    close: Close
    read_events: ReadEvents
    tasks: Supervisor
    queue_size: int = 1000
    held_size: int = 1000
    priority_size: int = 100
    chunk_size: int = 65536
    send_timeout: float = 10.0
    prepared: bool = False
    on_sent: Callable[[int, list[Envelope]], None] | None = None
    cursors: dict[str, Cursor] = field(default_factory=dict)
    stats: Stats = field(default_factory=Stats)
    close_code: int | None = None
    last_activity: float = field(default_factory=lambda: asyncio.get_running_loop().time())
    _priority: deque[str] = field(default_factory=deque)
    _ordered: deque[Envelope | str] = field(default_factory=deque)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _room: asyncio.Event = field(default_factory=asyncio.Event)
    _priority_room: asyncio.Event | None = None  # made when the reader first waits on it
    _close_reason: str = ""
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _replay_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _sending_since: float | None = None  # loop time the send in progress started

    # ---- queueing ----------------------------------------------------------------------

    def send_priority(self, type: str, payload: Mapping[str, Any]) -> None:
        """Queue `pong`, `error` or `message_ack`: may overtake queued thread events.
        Past twice `priority_size` (see :meth:`priority_room`) closes with 4009."""
        if self.close_code is not None:
            return
        if len(self._priority) >= 2 * self.priority_size:
            self.request_close(CloseCode.SLOW_CONSUMER, "outbound priority queue overflow")
            return
        self._priority.append(encode(type, payload))
        self._wake.set()

    async def priority_room(self) -> None:
        """Wait while the priority lane holds `priority_size` frames (the reader calls
        this before reading a frame: a client that sends faster than it reads its
        answers is slowed down by TCP, not buffered here)."""
        while self.close_code is None and len(self._priority) >= self.priority_size:
            if self._priority_room is None:
                self._priority_room = asyncio.Event()
            self._priority_room.clear()
            await self._priority_room.wait()

    def send_error(self, code: ErrorCode, message: str, request_id: str | None = None,
                   **extra: Any) -> None:
        self.send_priority("error", {"code": code, "message": message,
                                     "request_id": request_id, **extra})

    def send_ordered(self, item: Envelope | str) -> None:
        """Queue a frame behind earlier thread events; overflow closes with 4009."""
        if self.close_code is not None:
            return
        if len(self._ordered) >= self.queue_size:
            self.request_close(CloseCode.SLOW_CONSUMER, "outbound queue overflow")
            return
        self._ordered.append(item)
        self._wake.set()

    async def _send_replayed(self, env: Envelope) -> None:
        """Queue a replayed event, waiting for room instead of overflowing."""
        while self.close_code is None and len(self._ordered) >= self.queue_size // 2:
            self._room.clear()
            await self._room.wait()
        self.send_ordered(env)

    def request_close(self, code: int, reason: str = "") -> None:
        """Close after the frames already in the priority lane (never blocks)."""
        if self.close_code is not None:
            return
        self.close_code = int(code)
        self._close_reason = reason
        self._ordered.clear()
        self._wake.set()
        self._room.set()
        if self._priority_room is not None:
            self._priority_room.set()

    @property
    def priority_full(self) -> bool:
        return len(self._priority) >= self.priority_size

    @property
    def queued(self) -> int:
        return len(self._ordered)

    # ---- the writer --------------------------------------------------------------------

    async def run_writer(self) -> None:
        """Drain both lanes onto the socket until closed; then send the close frame."""
        loop = asyncio.get_running_loop()
        try:
            with self._send_watchdog(loop):
                while True:
                    await self._wake.wait()
                    self._wake.clear()
                    await self._drain()
                    if self.close_code is not None:
                        break
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.send_timeout):
                    await self.close(self.close_code, self._close_reason)
        except (TimeoutError, OSError, RuntimeError) as exc:
            log.info("connection writer stopped: %s", type(exc).__name__)
            if self.close_code is None:
                self.close_code = CloseCode.SLOW_CONSUMER if isinstance(exc, TimeoutError) else 1006
        except Exception:  # a bug: say so, and close properly instead of dropping the socket
            log.exception("connection writer failed; closing with 1011")
            if self.close_code is None:
                self.close_code = CloseCode.INTERNAL_ERROR
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.send_timeout):
                    await self.close(self.close_code, "internal error")

    async def _drain(self) -> None:
        """Send what both lanes hold, a batch (up to `BATCH` frames, priority lane first)
        per socket write, until they are empty."""
        while self._priority or (self._ordered and self.close_code is None):
            batch: list[str | bytes] = []
            events: list[Envelope] = []
            controls = size = 0
            priority, ordered = self._priority, self._ordered
            while priority and len(batch) < BATCH:
                batch.append(priority.popleft())
                controls += 1
            while (ordered and self.close_code is None and len(batch) < BATCH
                   and size < BATCH_BYTES):
                item = ordered.popleft()
                if isinstance(item, str):
                    batch.append(item)
                    size += len(item)
                    controls += 1
                    continue
                events.append(item)
                frames = item.chunks(self.chunk_size)  # its chunks go out together
                if self.prepared and len(frames) == 1:
                    batch.append(item.framed())  # the same bytes for every connection
                else:
                    batch.extend(frames)
                size += len(item.text)
            if self._priority_room is not None and len(priority) < self.priority_size:
                self._priority_room.set()
            if len(ordered) < self.queue_size // 2:
                self._room.set()
            await self._send(batch)
            if self.on_sent is not None:
                self.on_sent(controls, events)

    @contextlib.contextmanager
    def _send_watchdog(self, loop: asyncio.AbstractEventLoop) -> Iterator[None]:
        """Fail the writer with TimeoutError when one send blocks over `send_timeout`.

        One timer per connection, re-armed every `send_timeout`, instead of an
        ``asyncio.timeout`` per frame (a tenth of the writer's time in profiles; a send
        only suspends when the socket's buffer is full): it cancels the writer only when
        the send in progress started `send_timeout` ago.
        """
        task = asyncio.current_task()
        assert task is not None
        stuck = False
        handle: asyncio.TimerHandle

        def check() -> None:
            nonlocal handle, stuck
            since, now = self._sending_since, loop.time()
            if since is not None and now - since >= self.send_timeout:
                stuck = True
                task.cancel()
            else:
                handle = loop.call_at((now if since is None else since) + self.send_timeout,
                                      check)

        handle = loop.call_later(self.send_timeout, check)
        try:
            yield
        except asyncio.CancelledError:
            if stuck and task.uncancel() == 0:
                raise TimeoutError("send blocked longer than send_timeout") from None
            raise
        finally:
            handle.cancel()
            self._sending_since = None

    async def _send(self, batch: list[str | bytes]) -> None:
        started = self._sending_since = asyncio.get_running_loop().time()
        try:
            await self.send(batch)
        except UnicodeEncodeError:
            # Frames come from `encode`, which guarantees UTF-8; one that does not is a bug
            # upstream. Send it repaired rather than lose the connection over it (the sink
            # encodes every frame before it writes any).
            log.error("frame is not valid UTF-8 (a bug); sent with U+FFFD", exc_info=True)
            await self.send([utf8_safe(f) if isinstance(f, str) else f for f in batch])
        self._sending_since = None
        self.stats.frames_out += len(batch)
        self.last_activity = started

    # ---- live delivery (bus callback) --------------------------------------------------

    def offer(self, env: Envelope) -> None:
        """Take one live frame from the bus; synchronous and non-blocking."""
        if env.thread_id is None or env.seq is None:
            self.send_ordered(env)
            return
        cursor = self.cursors.get(env.thread_id)
        if cursor is None:
            self.cursors[env.thread_id] = Cursor.starting_at(env.seq)
            self.send_ordered(env)
            return
        verdict = cursor.on_live(env, self.held_size)
        if verdict is Verdict.SEND:
            self.send_ordered(env)
        elif verdict is Verdict.DROP:
            self.stats.events_dropped_dup += 1
        elif verdict is Verdict.REPAIR:
            self.stats.repairs += 1
            self._spawn(self._repair(env.thread_id), "gap-repair")

    def _spawn(self, coro: Coroutine[Any, Any, None], kind: str) -> None:
        """Run a repair as a supervised task; its failure closes with 1011 so the client
        resumes (the cursor still holds and can't be trusted)."""

        def failed(_: BaseException) -> None:
            self.request_close(CloseCode.INTERNAL_ERROR, "delivery failed")

        self.tasks.spawn(kind, coro, name=f"{kind}-{self.connection_id}", on_error=failed,
                         group=self._tasks)

    async def _repair(self, thread_id: str) -> None:
        async with self._replay_lock:
            cursor = self.cursors[thread_id]
            if cursor.held is not None:
                await self._fill_and_release(thread_id, cursor)

    async def _fill_and_release(self, thread_id: str, cursor: Cursor) -> None:
        """Send the log's events after ``cursor.last`` up to the held ones, then the held
        events in order; stop holding. Loops until nothing held is left."""
        while not cursor.settle():
            while (gap := cursor.gap()) is not None:
                page = await self.read_events(thread_id, *gap)
                sent = False
                for env in page:
                    if cursor.fill(env):
                        await self._send_replayed(env)
                        sent = True
                if not sent:  # nothing left to read below the held events (pruned)
                    break
            for env in cursor.release():
                self.send_ordered(env)

    async def resume(self, thread_id: str, after_seq: int, last_seq: int,
                     first_retained: int | None) -> tuple[int, int, bool]:
        """Replay what this connection lacks of a thread after `after_seq`.

        Args:
            last_seq, first_retained: the log's bounds, read just before (owner-checked).
        Returns:
            ``(events replayed, last_seq, complete)``; ``replay_complete`` is queued.
        Raises:
            whatever a log read raises; the cursor of the thread then still holds, so
            the caller must close the connection (the client resumes on a new one).
        """
        async with self._replay_lock:
            cursor = self.cursors.setdefault(thread_id, Cursor())
            cursor.hold()
            plan = plan_resume(cursor, after_seq, last_seq, first_retained)
            replayed = 0
            for lo, hi in plan.ranges:
                after = lo
                while True:
                    page = await self.read_events(thread_id, after, hi)
                    for env in page:
                        if hi is not None or cursor.fill(env):
                            await self._send_replayed(env)
                            replayed += 1
                    if len(page) < READ_PAGE:
                        break
                    after = page[-1].seq or after
            cursor.replayed(plan)
            await self._fill_and_release(thread_id, cursor)
            self.send_ordered(encode("replay_complete", {
                "thread_id": thread_id, "last_seq": cursor.last, "complete": plan.complete}))
            return replayed, cursor.last, plan.complete

    async def aclose(self) -> None:
        """Cancel this connection's helper tasks (repairs)."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks))
