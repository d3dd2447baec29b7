"""Running the app under uvicorn with runwire's heartbeat and drain semantics.

- Heartbeat: uvicorn's sans-I/O WebSocket protocol pings every ``heartbeat_interval``;
  a client that leaves pings unanswered for two intervals is closed with **4000**
  (uvicorn would say 1011). It runs in the protocol, independent of agent work.
- Drain: on SIGTERM/SIGINT, before uvicorn closes sockets (it would use 1012), runwire
  stops accepting, lets runs finish up to ``shutdown_grace``, stores terminal events for
  the rest and closes sockets with **1001**.
- WebSocket fast path: ``/ws`` goes from uvicorn straight to the gateway
  (:class:`WebSocketFastPath`); HTTP, lifespan and other paths go to the FastAPI app.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn
from fastapi import FastAPI
from starlette.datastructures import State
from starlette.websockets import WebSocket
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from runwire.gateway.endpoint import Gateway
from runwire.protocol.codes import CloseCode
from runwire.settings import Settings

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class HeartbeatProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol, closing with 4000 on a heartbeat timeout."""

    def keepalive_timeout(self) -> None:
        self.pong_timer = None
        self.pending_ping_payload = None
        if self.close_sent or self.transport.is_closing():
            return
        self.conn.fail(CloseCode.HEARTBEAT_TIMEOUT, "heartbeat timeout")
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self.transport.close()


class WebSocketFastPath:
    """The ASGI app uvicorn runs: ``/ws`` WebSocket scopes go straight to the gateway,
    everything else (HTTP, lifespan, other paths) to the FastAPI app.

    Why: FastAPI's per-request stack — route match and scope copy, two exception layers
    that each wrap ``send``, three exit stacks, telemetry — stays suspended for a
    WebSocket's whole life: ~8 KiB per idle connection and two extra coroutine hops per
    frame sent (docs/performance.md). The gateway does its own handshake, errors and
    close codes, so nothing of that stack is used on ``/ws``. Before the lifespan has
    started the services, the request goes to FastAPI as before.
    """

    def __init__(self, app: FastAPI, path: str = "/ws") -> None:
        self.app = app
        self.path = path

    @property
    def state(self) -> State:
        return self.app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == self.path:
            gateway = getattr(getattr(self.app.state, "services", None), "gateway", None)
            if isinstance(gateway, Gateway):
                scope["app"] = self.app
                await gateway.serve(WebSocket(scope, receive, send))
                return
        await self.app(scope, receive, send)


class RunwireServer(uvicorn.Server):
    """uvicorn's server with runwire's drain before the connections are shut."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        app = self.config.app
        services = getattr(getattr(app, "state", None), "services", None)
        if services is not None:
            await services.drain()
        await super().shutdown(sockets)


def server_config(app: FastAPI, settings: Settings, *, host: str, port: int,
                  **extra: Any) -> uvicorn.Config:
    return uvicorn.Config(
        WebSocketFastPath(app),
        host=host,
        port=port,
        ws=HeartbeatProtocol,
        ws_ping_interval=settings.heartbeat_interval,
        ws_ping_timeout=2 * settings.heartbeat_interval,
        ws_max_size=settings.max_message_size * 4 + 1024,
        ws_per_message_deflate=settings.ws_compression,
        lifespan="on",
        log_config=None,
        timeout_graceful_shutdown=int(settings.shutdown_grace) + 10,
        **extra,
    )
