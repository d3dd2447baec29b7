"""Running the app under uvicorn with runwire's heartbeat, limits and drain semantics.

- Sockets (:mod:`runwire.sockets`): the WebSocket protocol pings every
  ``heartbeat_interval`` and closes unanswered clients with **4000**; the HTTP protocol
  bounds the time to a complete request head (slowloris), keep-alive idleness and the
  number of open sockets.
- Drain: on SIGTERM/SIGINT, before uvicorn closes sockets (it would use 1012), runwire
  stops accepting, lets runs finish up to ``shutdown_grace``, stores terminal events for
  the rest and closes sockets with **1001**.
- WebSocket fast path: ``/ws`` goes from uvicorn straight to the gateway
  (:class:`WebSocketFastPath`); HTTP, lifespan and other paths go to the FastAPI app.
"""

from __future__ import annotations

import gc
import math
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn
from fastapi import FastAPI
from starlette.datastructures import State
from starlette.websockets import WebSocket

from runwire.gateway.endpoint import Gateway
from runwire.settings import Settings
from runwire.sockets import GuardedH11Protocol, HeartbeatProtocol, HttpLimits, RunwireConfig

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


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
    """uvicorn's server with runwire's drain before the connections are shut.

    `freeze_gc` (the server process, not tests that start several servers in one process):
    once started, everything built so far (modules, the app, its services) moves to the
    garbage collector's permanent generation. Its full passes then scan only what runs
    create: measured under builtin runs, full passes took ~100 ms each (a pause of the
    whole node, ~1 ms of CPU per run) and ~10 ms after the freeze.
    """

    def __init__(self, config: uvicorn.Config, *, freeze_gc: bool = False) -> None:
        super().__init__(config)
        self._freeze_gc = freeze_gc

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self._freeze_gc and not self.should_exit:
            gc.collect()
            gc.freeze()

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
    limits = HttpLimits(header_timeout=settings.http_header_timeout,
                        keepalive_timeout=settings.http_keepalive_timeout,
                        max_open=settings.max_open_connections)
    return RunwireConfig(
        WebSocketFastPath(app),
        limits=limits,
        host=host,
        port=port,
        http=GuardedH11Protocol,
        ws=HeartbeatProtocol,
        ws_ping_interval=settings.heartbeat_interval,
        ws_ping_timeout=2 * settings.heartbeat_interval,
        ws_max_size=settings.max_message_size * 4 + 1024,
        ws_per_message_deflate=settings.ws_compression,
        lifespan="on",
        log_config=None,
        timeout_graceful_shutdown=int(settings.shutdown_grace) + 10,
        timeout_keep_alive=max(1, math.ceil(settings.http_keepalive_timeout)),  # re-armed exactly
        backlog=settings.http_backlog,
        **extra,
    )
