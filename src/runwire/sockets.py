"""The socket protocols uvicorn runs for runwire (subclasses of uvicorn's own), with limits.

HTTP (:class:`GuardedH11Protocol`, h11):
    - Slowloris: a connection must deliver a complete request head within
      ``header_timeout`` of opening, or of its first byte after a keep-alive wait; a
      trickle of bytes does not restart the clock. A silent socket is closed as well.
    - Keep-alive: an idle connection between requests is closed after ``keepalive_timeout``
      (a float, where uvicorn takes whole seconds).
    - Past ``max_open`` open sockets (HTTP and WebSocket together, as uvicorn counts them) a
      new connection is answered ``503`` and closed before anything of it is read.

WebSocket (:class:`HeartbeatProtocol`, websockets' sans-I/O):
    - A client that leaves pings unanswered for two intervals is closed with **4000**
      (uvicorn would say 1011). It runs in the protocol, independent of agent work.
    - A text frame that is not UTF-8 closes the connection with **1007**, logged once at
      debug: uvicorn logs an ERROR with a traceback for each, a log flood anyone can cause.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState
from websockets.http11 import Request
from websockets.protocol import State as WsState

from runwire.gateway.connection import FRAME_SINK
from runwire.protocol.codes import CloseCode

log = logging.getLogger(__name__)

_BUSY_BODY = b"too many open connections; retry later\n"
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
         b"connection: close\r\nretry-after: 1\r\ncontent-length: "
         + str(len(_BUSY_BODY)).encode() + b"\r\n\r\n" + _BUSY_BODY)


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """Socket-level limits (settings ``http_header_timeout``, ``http_keepalive_timeout``,
    ``max_open_connections``)."""

    header_timeout: float = 10.0
    keepalive_timeout: float = 5.0
    max_open: int = 10_000


class RunwireConfig(uvicorn.Config):
    """uvicorn's config, carrying runwire's :class:`HttpLimits` to the protocols."""

    def __init__(self, app: Any, *, limits: HttpLimits, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.limits = limits


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a request-head deadline and a cap on open sockets."""

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.limits = config.limits if isinstance(config, RunwireConfig) else HttpLimits()
        self._head_timer: asyncio.TimerHandle | None = None
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_open:
            self._refused = True
            self.transport = transport
            transport.write(_BUSY)  # before reading anything: no work for an overload
            transport.close()
            log.debug("connection refused: %d open", len(self.connections))
            return
        super().connection_made(transport)
        self._watch_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        if not self._refused:
            super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)
        self._watch_head()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.timeout_keep_alive_task is not None:  # idle until the next request
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = self.loop.call_later(
                self.limits.keepalive_timeout, self.timeout_keep_alive_handler)
        self._watch_head()

    def _watch_head(self) -> None:
        """Arm the head deadline while a request head is awaited (not during a keep-alive
        wait, which has its own timer); disarm it once the head is complete."""
        awaiting_head = (self.conn.their_state is h11.IDLE and self.timeout_keep_alive_task is None
                         and not self.transport.is_closing())
        if not awaiting_head:
            self._cancel_head_timer()
        elif self._head_timer is None:
            self._head_timer = self.loop.call_later(self.limits.header_timeout,
                                                    self._head_timeout)

    def _head_timeout(self) -> None:
        self._head_timer = None
        # Still this protocol's socket (not upgraded to a WebSocket) and still no head.
        if self.transport.get_protocol() is self and self.conn.their_state is h11.IDLE:
            log.debug("closing a connection that sent no complete request head in %.1f s",
                      self.limits.header_timeout)
            self.timeout_keep_alive_handler()  # sends nothing, closes the socket

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None


class HeartbeatProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol: heartbeat timeout → 4000, invalid UTF-8 → quiet 1007;
    and the gateway's :class:`~runwire.gateway.connection.FrameSink` (in the scope's
    extensions): a connection's queued frames go out in one socket write, and when no
    extension (permessage-deflate) was negotiated, prepared frames as they are."""

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        if getattr(self, "scope", None) is not None:
            self.scope["extensions"][FRAME_SINK] = self  # type: ignore[assignment]

    @property
    def raw_frames(self) -> bool:
        return not self.conn.extensions

    async def send_batch(self, frames: list[str | bytes]) -> None:
        """Write `frames` in order with one transport write (uvicorn's ``send`` makes one
        per frame). A frame is text, or bytes of a complete unmasked text frame (only
        when :attr:`raw_frames`). Raises ClientDisconnected like ``send``, and
        UnicodeEncodeError (before anything is written) for text that isn't UTF-8."""
        await self.writable.wait()
        conn = self.conn
        if self.disconnected or self.close_sent or conn.state is not WsState.OPEN:
            raise ClientDisconnected()
        # Encode all first: a failure must not leave frames half-fed to the compressor.
        texts = iter([f.encode() for f in frames if isinstance(f, str)])
        out: list[bytes] = []
        try:
            for frame in frames:
                if isinstance(frame, bytes):
                    out.append(frame)
                else:
                    conn.send_text(next(texts))
                    out.extend(conn.data_to_send())
        except InvalidState:
            raise ClientDisconnected() from None
        self.transport.write(b"".join(out))

    def keepalive_timeout(self) -> None:
        self.pong_timer = None
        self.pending_ping_payload = None
        if self.close_sent or self.transport.is_closing():
            return
        self.conn.fail(CloseCode.HEARTBEAT_TIMEOUT, "heartbeat timeout")
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self.transport.close()

    def send_receive_event_to_app(self) -> None:
        """uvicorn's, except for the handling of a text frame that is not UTF-8."""
        if self.curr_msg_data_type != "text" or self.close_sent:
            super().send_receive_event_to_app()
            return
        data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
        self.frames = []
        try:
            text = data.decode()
        except UnicodeDecodeError:
            log.debug("text frame is not valid UTF-8; closing with 1007")
            self.conn.send_close(1007, "invalid UTF-8")
            self.handle_parser_exception()
            return
        self.queue.put_nowait({"type": "websocket.receive", "text": text})
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()
