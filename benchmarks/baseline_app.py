"""The baseline: a plain ASGI app on uvicorn with the same WebSocket protocol as runwire.

No framework, no auth, no store, no bus: the floor that runwire's gateway is compared
with. It uses uvicorn's ``websockets-sansio`` protocol (runwire's heartbeat protocol
subclasses it), no permessage-deflate, and the same ping interval as the runwire node
under test.

- ``GET /ready`` → 200.
- ``/ws`` (WebSocket): accepted and held; every connection is registered for fan-out.
- ``POST /blast`` with ``{"sizes": [n, ...]}``: sends one frame of each size (JSON text,
  encoded once) to every connection, in order, one ``send`` per connection and frame —
  what a hand-written fan-out does — then answers with the number of sends.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_sockets: dict[int, Send] = {}


def frame_of(size: int, index: int) -> str:
    """A JSON frame of exactly `size` characters (at least the bare envelope)."""
    head = f'{{"type":"partial_result","seq":{index},"payload":"'
    fill = max(0, size - len(head) - 2)
    return head + "x" * fill + '"}'


async def _body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _respond(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        key = id(send)
        _sockets[key] = send
        try:
            while (await receive())["type"] != "websocket.disconnect":
                pass
        finally:
            _sockets.pop(key, None)
        return
    if scope["path"] == "/blast":
        sizes = json.loads(await _body(receive))["sizes"]
        frames = [frame_of(size, i) for i, size in enumerate(sizes)]
        targets = list(_sockets.values())
        for text in frames:
            for target in targets:
                await target({"type": "websocket.send", "text": text})
        await _respond(send, 200, json.dumps({"sent": len(frames) * len(targets)}).encode())
        return
    await _respond(send, 200 if scope["path"] == "/ready" else 404, b"{}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ping-interval", type=float, default=30.0)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, ws="websockets-sansio",
                ws_ping_interval=args.ping_interval, ws_ping_timeout=2 * args.ping_interval,
                ws_per_message_deflate=False, lifespan="on", log_level="warning",
                access_log=False, backlog=4096)


if __name__ == "__main__":
    main()
