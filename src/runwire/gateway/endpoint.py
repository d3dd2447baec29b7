"""The ``/ws`` endpoint: handshake, the connection's tasks, reading and routing frames.

Handshake order (SPEC 2.1/2.2): origin → token → per-user limit; a refused client is
accepted and then closed with the 4xxx code that says why. The first frame of an
accepted connection is ``connection_established``. There is no other path in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from starlette.websockets import WebSocket

from runwire import logs
from runwire.auth import Principal, TokenService
from runwire.bus.base import Bus
from runwire.errors import AuthError, NotFound, StorageUnavailable, ThreadBusy
from runwire.gateway.approvals import approve_tool
from runwire.gateway.connection import FRAME_SINK, Connection, FrameSink
from runwire.gateway.presence import RedisPresence
from runwire.gateway.registry import ConnectionRegistry
from runwire.ids import new_id
from runwire.metrics import Metrics
from runwire.protocol.codes import PROTOCOL_VERSION, CloseCode
from runwire.protocol.envelope import Envelope, encode
from runwire.protocol.frames import (
    ApproveTool,
    FrameError,
    Ping,
    Resume,
    SendMessage,
    StopAgent,
    parse_client_frame,
)
from runwire.protocol.handshake import credentials, origin_allowed
from runwire.ratelimit import RateLimiter
from runwire.runs.service import RunService
from runwire.settings import Settings
from runwire.store.reader import ThreadReader
from runwire.tasks import Supervisor

log = logging.getLogger(__name__)

# Frame types counted in runwire_frames_out_total (low cardinality: anything else is "other").
OUT_TYPES = frozenset((
    "control", "message_created", "agent_started", "agent_thinking", "tool_executing",
    "tool_completed", "partial_result", "agent_progress", "agent_response", "agent_completed",
    "agent_error", "approval_required", "approval_resolved", "thread_created",
    "thread_updated", "thread_deleted", "other"))
PRIORITY_LANE = 100  # pong/error/message_ack frames a connection may have unsent


class Gateway:
    """Serves WebSocket connections over the run service and the bus."""

    def __init__(
        self,
        *,
        settings: Settings,
        tokens: TokenService,
        registry: ConnectionRegistry,
        bus: Bus,
        runs: RunService,
        reader: ThreadReader,
        limiter: RateLimiter,
        metrics: Metrics,
        model_info: dict[str, Any],
        tasks: Supervisor,
        presence: RedisPresence | None = None,
    ) -> None:
        self._settings = settings
        self._tokens = tokens
        self.registry = registry
        self._bus = bus
        self._runs = runs
        self._reader = reader
        self._limiter = limiter
        self._metrics = metrics
        self._model_info = model_info
        self._presence = presence
        self._tasks = tasks
        self._inflight: set[asyncio.Task[None]] = set()
        self._sessions: set[asyncio.Task[Any]] = set()
        self.accepting = True

    # ---- handshake ---------------------------------------------------------------------

    async def serve(self, ws: WebSocket) -> None:
        headers = ws.headers
        offered = list(ws.scope.get("subprotocols") or [])
        creds = credentials(offered, headers.get("authorization"))
        if not self.accepting:
            await self._refuse(ws, creds.subprotocol, CloseCode.GOING_AWAY, "server shutting down")
            return
        if not origin_allowed(headers.get("origin"), headers.get("host"),
                              self._settings.allowed_origins):
            await self._refuse(ws, creds.subprotocol, CloseCode.FORBIDDEN, "origin not allowed")
            return
        try:
            principal = self._tokens.verify(creds.token)
        except AuthError as exc:
            await self._refuse(ws, creds.subprotocol, CloseCode.UNAUTHORIZED, str(exc))
            return
        conn = self._connection(ws, principal)
        if not await self._admit(conn):
            await self._refuse(ws, creds.subprotocol, CloseCode.TOO_MANY_CONNECTIONS,
                               "too many connections for this user")
            return
        task = asyncio.current_task()
        if task is not None:
            self._sessions.add(task)
        node = self._settings.node_id
        logs.bind(user_id=conn.user_id, connection_id=conn.connection_id)
        self._metrics.connects.labels(node, "accepted").inc()
        log.info("connection opened")
        try:
            await ws.accept(subprotocol=creds.subprotocol)
            await self._session(ws, conn, principal)
        finally:
            code = conn.close_code if conn.close_code is not None else 1000
            log.info("connection closed code=%s", code)
            self._metrics.disconnects.labels(node, str(code)).inc()
            if code == CloseCode.SLOW_CONSUMER:
                self._metrics.slow_consumers.labels(node).inc()
            self.registry.remove(conn)
            if self._presence is not None:
                await self._presence.release(conn.user_id, conn.connection_id)
            await conn.aclose()
            if task is not None:
                self._sessions.discard(task)

    async def _admit(self, conn: Connection) -> bool:
        """Count the connection against the per-user limit: across nodes when Redis is
        configured and answering, else on this node (exact: no await between the check
        and the insert)."""
        if not self.registry.try_add(conn):
            return False
        if self._presence is None:
            return True
        shared = await self._presence.acquire(conn.user_id, conn.connection_id,
                                              self._settings.max_connections_per_user)
        if shared is False:
            self.registry.remove(conn)
            return False
        return True

    async def _refuse(self, ws: WebSocket, subprotocol: str | None, code: int, reason: str) -> None:
        self._metrics.connects.labels(self._settings.node_id, f"refused_{code}").inc()
        with contextlib.suppress(Exception):
            await ws.accept(subprotocol=subprotocol)
            await ws.close(code=code, reason=reason[:120])

    def _connection(self, ws: WebSocket, principal: Principal) -> Connection:
        sink = ws.scope.get("extensions", {}).get(FRAME_SINK)
        send: Callable[[list[str | bytes]], Awaitable[None]]
        if isinstance(sink, FrameSink):
            send, prepared = sink.send_batch, sink.raw_frames
        else:  # another ASGI server: one ASGI message per frame
            prepared = False

            async def send(batch: list[str | bytes]) -> None:
                for frame in batch:
                    assert isinstance(frame, str)
                    await ws.send({"type": "websocket.send", "text": frame})

        async def close(code: int, reason: str) -> None:
            await ws.close(code=code, reason=reason)

        async def read_events(thread_id: str, after: int, before: int | None) -> list[Envelope]:
            return await self._reader.events(principal.user_id, thread_id, after_seq=after,
                                             before_seq=before, check_owner=False)

        counts = self._metrics.frames_out

        def on_sent(controls: int, events: list[Envelope]) -> None:
            if controls:
                counts.sent("control", controls)
            if events:
                now = time.monotonic()
                for env in events:
                    counts.sent(env.type if env.type in OUT_TYPES else "other")
                    counts.delivered(now - env.born)

        s = self._settings
        return Connection(
            connection_id=new_id(), user_id=principal.user_id, scopes=principal.scopes,
            send=send, close=close, read_events=read_events, tasks=self._tasks,
            prepared=prepared, queue_size=s.outbound_queue_size,
            held_size=s.outbound_queue_size, priority_size=PRIORITY_LANE,
            chunk_size=s.outbound_chunk_size, send_timeout=s.send_timeout, on_sent=on_sent,
        )

    def _established(self, conn: Connection) -> str:
        s = self._settings
        return encode("connection_established", {
            "connection_id": conn.connection_id, "user_id": conn.user_id,
            "node_id": s.node_id, "protocol": PROTOCOL_VERSION,
            "heartbeat_interval": s.heartbeat_interval, "max_message_size": s.max_message_size,
            "limits": {
                "max_connections_per_user": s.max_connections_per_user,
                "rate_limit_messages": s.rate_limit_messages,
                "rate_limit_frames": s.rate_limit_frames,
                "outbound_chunk_size": s.outbound_chunk_size,
            },
            "model": self._model_info,
        })

    # ---- the session -------------------------------------------------------------------

    async def _session(self, ws: WebSocket, conn: Connection, principal: Principal) -> None:
        """Read in this (the endpoint's) task, write in one more: a task per connection
        less than reader + writer tasks (each idle connection holds ~1.5 KiB less)."""
        conn.send_ordered(self._established(conn))
        async with self._bus.subscribe(conn.user_id, conn.offer):
            writer = asyncio.create_task(conn.run_writer(), name=f"writer-{conn.connection_id}")
            session = asyncio.current_task()
            assert session is not None
            reading = True

            def writer_done(_: asyncio.Task[None]) -> None:
                if reading:  # the writer ended first (close sent, send failed): stop reading
                    session.cancel()

            writer.add_done_callback(writer_done)
            try:
                try:
                    await self._read(ws, conn, principal)
                except asyncio.CancelledError:
                    if not writer.done() or session.uncancel() > 0:
                        raise  # cancelled from outside, not by the writer's end
                except Exception:  # a broken socket ends the session like a disconnect
                    log.debug("connection reader stopped", exc_info=True)
                finally:
                    reading = False
                if conn.close_code is not None and not writer.done():
                    # The reader asked to close (1009...): let the writer send the close.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._settings.send_timeout):
                            await asyncio.shield(writer)
            finally:
                writer.remove_done_callback(writer_done)
                writer.cancel()
                await asyncio.gather(writer, return_exceptions=True)

    async def _read(self, ws: WebSocket, conn: Connection, principal: Principal) -> None:
        max_size = self._settings.max_message_size
        message_lock = asyncio.Lock()  # a connection's messages are stored in order
        loop = asyncio.get_running_loop()
        limited: deque[float] | None = None  # when this connection's frames were refused
        node = self._settings.node_id
        while conn.close_code is None:
            if conn.priority_full:
                await conn.priority_room()
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            conn.last_activity = loop.time()
            text = message.get("text")
            if text is None:
                data = message.get("bytes") or b""
                if len(data) > max_size:
                    conn.request_close(CloseCode.MESSAGE_TOO_BIG, "frame too large")
                    return
                conn.send_error("invalid_json", "binary frames are not supported")
                continue
            if len(text) > max_size // 4 and len(text.encode()) > max_size:
                conn.request_close(CloseCode.MESSAGE_TOO_BIG, "frame too large")
                return
            frame = parse_client_frame(text)
            received = time.monotonic()
            self._metrics.frames_in.labels(node, _frame_type(frame)).inc()
            op = "frame"
            refused = await self._limiter.hit(principal.user_id, op)
            if refused.allowed and isinstance(frame, SendMessage):
                op = "user_message"
                refused = await self._limiter.hit(principal.user_id, op)
            if not refused.allowed:
                self._metrics.rate_limited.labels(node, op).inc()
                now = loop.time()
                if limited is None:  # created on first use: an empty deque is ~0.7 KiB
                    limited = deque()
                limited.append(now)
                while limited and limited[0] < now - 60:
                    limited.popleft()
                if len(limited) >= self._settings.rate_limit_abuse_close:
                    conn.request_close(CloseCode.POLICY_VIOLATION, "too many rate-limited frames")
                    return
                conn.send_error("rate_limited", "rate limit exceeded; slow down",
                                getattr(frame, "request_id", None),
                                retry_after_ms=refused.retry_after_ms)
                continue
            if isinstance(frame, FrameError):
                conn.send_error(frame.code, frame.message, frame.request_id)
            elif isinstance(frame, Ping):
                conn.send_priority("pong", {"request_id": frame.request_id})
            elif isinstance(frame, SendMessage):
                self._background("user_message", conn, frame.request_id, self._send_message(
                    conn, principal, frame, message_lock, received))
            elif isinstance(frame, StopAgent):
                self._background("stop_agent", conn, frame.request_id,
                                 self._stop(conn, principal, frame))
            elif isinstance(frame, Resume):
                self._background("resume", conn, frame.request_id,
                                 self._resume(conn, principal, frame))
            elif isinstance(frame, ApproveTool):
                self._background("approve_tool", conn, frame.request_id,
                                 approve_tool(self._runs, conn, principal, frame))

    def _background(self, kind: str, conn: Connection, request_id: str | None,
                    coro: Coroutine[Any, Any, None]) -> None:
        """Run frame work off the read loop (control frames never wait behind it) as a
        supervised task: an unexpected failure is logged, counted and answered with an
        ``internal`` error carrying the frame's request id."""

        def answer(_: BaseException) -> None:
            conn.send_error("internal", "internal error", request_id)

        self._tasks.spawn(kind, coro, name=f"{kind}-{conn.connection_id}", on_error=answer,
                          group=self._inflight)

    async def _send_message(self, conn: Connection, principal: Principal, frame: SendMessage,
                            lock: asyncio.Lock, received: float) -> None:
        rid = frame.request_id
        async with lock:
            try:
                ack = await self._runs.send_message(principal, frame, received_at=received)
            except NotFound as exc:
                conn.send_error("not_found", str(exc), rid)
            except ThreadBusy as exc:
                conn.send_error("thread_busy", str(exc), rid)
            except StorageUnavailable:
                conn.send_error("storage_unavailable", "storage is unavailable; retry later", rid)
            else:
                conn.send_priority("message_ack", ack.payload())

    async def _stop(self, conn: Connection, principal: Principal, frame: StopAgent) -> None:
        try:
            await self._runs.stop(principal, run_id=frame.run_id, thread_id=frame.thread_id)
        except NotFound as exc:
            conn.send_error("not_found", str(exc), frame.request_id)
        except StorageUnavailable:
            conn.send_error("storage_unavailable", "storage is unavailable", frame.request_id)

    async def _resume(self, conn: Connection, principal: Principal, frame: Resume) -> None:
        """Answer a ``resume`` with its replay and ``replay_complete``, or an ``error``.

        A failure during the replay leaves the thread's cursor unable to say what was
        sent: the error is followed by closing with 1011 (the client resumes on a new
        connection). Unexpected failures are re-raised for the supervisor to count.
        """
        rid = frame.request_id
        try:
            bounds = await self._reader.bounds(principal.user_id, frame.thread_id)
        except NotFound as exc:
            conn.send_error("not_found", str(exc), rid)
            return
        except StorageUnavailable:
            conn.send_error("storage_unavailable", "storage is unavailable", rid)
            return
        node = self._settings.node_id
        self._metrics.resumes.labels(node).inc()
        try:
            replayed, _, _ = await conn.resume(frame.thread_id, frame.after_seq, bounds.last,
                                               bounds.first)
        except Exception as exc:
            unavailable = isinstance(exc, StorageUnavailable)
            conn.send_error("storage_unavailable" if unavailable else "internal",
                            "storage is unavailable" if unavailable else "replay failed", rid)
            conn.request_close(CloseCode.INTERNAL_ERROR, "replay failed")
            if unavailable:
                return
            raise
        self._metrics.replayed.labels(node).inc(replayed)

    # ---- shutdown ----------------------------------------------------------------------

    def stop_accepting(self) -> None:
        self.accepting = False

    async def close_all(self, code: int, reason: str, timeout: float = 5.0) -> None:
        """Close every connection with `code` and wait (bounded) for them to finish."""
        for conn in self.registry:
            conn.request_close(code, reason)
        if self._inflight:
            await asyncio.wait(list(self._inflight), timeout=timeout)
        if self._sessions:
            await asyncio.wait(list(self._sessions), timeout=timeout)


def _frame_type(frame: object) -> str:
    """Low-cardinality label for an inbound frame."""
    if isinstance(frame, FrameError):
        return "invalid"
    return {SendMessage: "user_message", StopAgent: "stop_agent", Resume: "resume",
            Ping: "ping", ApproveTool: "approve_tool"}.get(type(frame), "other")
