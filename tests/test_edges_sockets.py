"""Sockets that never finish a request (slowloris) and too many sockets: closed or refused
within bounds, while well-behaved HTTP and WebSocket clients are served."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from .conftest import ServerHandle
from .helpers import client, eventually
from .rawhttp import closed_by_server, exchange

HALF_HEAD = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: "


def open_connections(server: ServerHandle) -> int:
    """Sockets the server holds (HTTP and WebSocket), as uvicorn counts them."""
    return len(server._server.server_state.connections)


async def test_half_sent_headers_and_silent_sockets_are_closed(server_factory: Any) -> None:
    server = server_factory(http_header_timeout=0.5, http_keepalive_timeout=0.5)
    opened = time.monotonic()
    conns = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(40)]
    for _, writer in conns[:30]:  # 30 half heads, 10 silent sockets
        writer.write(HALF_HEAD)
    for _, writer in conns:
        await writer.drain()
    received = await asyncio.gather(*(closed_by_server(r, timeout=5) for r, _ in conns))
    elapsed = time.monotonic() - opened
    assert all(b"200" not in data for data in received)
    assert 0.4 < elapsed < 2.5, elapsed
    for _, writer in conns:
        writer.close()
    # Well-behaved clients are still served.
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        assert (await http.get("/healthz")).status_code == 200


async def test_a_trickled_head_gets_no_more_time(server_factory: Any) -> None:
    """One byte now and then does not restart the clock (the deadline is for the head)."""
    server = server_factory(http_header_timeout=0.6)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    started = time.monotonic()
    closed = asyncio.ensure_future(closed_by_server(reader, timeout=5))
    for byte in HALF_HEAD:
        if closed.done():
            break
        try:
            writer.write(bytes([byte]))
            await writer.drain()
        except ConnectionError:
            break
        await asyncio.sleep(0.05)  # ok-sleep: the client's trickle rate is the test's input
    await closed
    writer.close()
    assert time.monotonic() - started < 1.5


async def test_keepalive_connection_is_closed_when_idle_and_serves_until_then(
    server_factory: Any,
) -> None:
    server = server_factory(http_header_timeout=5.0, http_keepalive_timeout=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    request = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
    for _ in range(3):
        writer.write(request)
        assert b"200 OK" in await reader.readuntil(b'{"status":"ok"}')
    started = time.monotonic()
    assert await closed_by_server(reader, timeout=3) == b""
    assert time.monotonic() - started < 1.5
    writer.close()


async def test_websockets_are_not_cut_by_the_header_timeout(server_factory: Any) -> None:
    server = server_factory(http_header_timeout=0.3)
    async with client(server) as c:
        await asyncio.sleep(0.8)  # ok-sleep: outlive the header timeout (nothing to await)
        await c.send("ping", request_id="still-here")
        pong = await c.recv(timeout=5)
        assert pong["payload"] == {"request_id": "still-here"}


async def test_open_connections_are_capped(server_factory: Any) -> None:
    server = server_factory(max_open_connections=4, http_header_timeout=30.0)
    held = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(4)]
    await eventually(lambda: open_connections(server) == 4)
    status, _, body = await exchange(
        server.port, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n", timeout=5)
    assert status == 503 and b"connections" in body
    for _, writer in held[:2]:
        writer.close()
    await eventually(lambda: open_connections(server) == 2)
    async with client(server) as c:  # a WebSocket counts too, and fits again
        assert c.established["type"] == "connection_established"
        status, _, _ = await exchange(server.port, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
                                      timeout=5)
        assert status == 200
    for _, writer in held[2:]:
        writer.close()
