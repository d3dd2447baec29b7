"""A connection's memory is bounded whatever its client does (issue 14, item 10): held
events during a resume, and the priority lane of a client that doesn't read."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from runwire.gateway.connection import Connection
from runwire.protocol.handshake import b64url_encode

from .conftest import ServerHandle
from .helpers import client, eventually


@contextlib.asynccontextmanager
async def stalled_client(server: ServerHandle, user: str = "alice"
                         ) -> AsyncIterator[tuple[ClientConnection, str]]:
    """A raw client with a tiny receive window, not reading until told (resume_reading)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: small window
    sock.connect(("127.0.0.1", server.port))
    ws = await connect(server.ws_url, sock=sock, max_size=2**24,
                       subprotocols=["runwire.v1", "jwt." + b64url_encode(server.token(user))])  # type: ignore[list-item]
    try:
        connection_id = json.loads(await ws.recv())["payload"]["connection_id"]
        ws.transport.pause_reading()
        yield ws, connection_id
    finally:
        ws.transport.abort()


async def _shrink(transport: Any) -> None:
    transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    transport.set_write_buffer_limits(high=4096)


def server_conn(server: ServerHandle, connection_id: str) -> Connection:
    return next(c for c in server.services.connections if c.connection_id == connection_id)



async def test_events_held_during_a_stalled_resume_stay_capped_and_none_is_lost(
    server_factory: Any,
) -> None:
    server = server_factory(outbound_queue_size=10)
    reader = server.services.reader
    read_events = reader.events

    async def make_gate() -> asyncio.Event:
        return asyncio.Event()

    gate = server.call(make_gate)

    async def stalled_read(*args: Any, **kwargs: Any) -> Any:
        await gate.wait()  # the log read of the replay takes as long as the test wants
        return await read_events(*args, **kwargs)

    async with client(server) as driver, client(server) as resumer:
        ack, _ = await driver.ask("what is 1+1?")
        thread_id = ack["payload"]["thread_id"]
        object.__setattr__(reader, "events", stalled_read)
        try:
            await resumer.send("resume", {"thread_id": thread_id, "after_seq": 0})
            conn = server_conn(server, resumer.established["payload"]["connection_id"])
            await eventually(lambda: thread_id in conn.cursors
                             and conn.cursors[thread_id].held is not None)
            peak = 0
            for n in range(6):  # live events arrive while the replay's read is stuck
                await driver.ask(f"what is {n}*2?", thread_id=thread_id)
                peak = max(peak, len(conn.cursors[thread_id].held or ()))
            assert conn.cursors[thread_id].held is not None, "the replay did not stall"
            assert peak <= 10 and conn.cursors[thread_id].held_overflows > 0
        finally:
            object.__setattr__(reader, "events", read_events)
            assert server._loop is not None
            server._loop.call_soon_threadsafe(gate.set)
        got = await resumer.until(lambda f: f["type"] == "replay_complete", timeout=30)
        seqs = [f["seq"] for f in got if f.get("thread_id") == thread_id and "seq" in f]
        last = got[-1]["payload"]["last_seq"]
        assert seqs == list(range(1, last + 1)), "gap or duplicate"
        assert got[-1]["payload"]["complete"] is True
        assert conn.cursors[thread_id].held is None


async def test_a_client_that_sends_pings_but_never_reads_is_held_back_not_buffered(
    server_factory: Any,
) -> None:
    server = server_factory(rate_limit_frames="1000000/minute")
    async with stalled_client(server) as (ws, connection_id):
        conn = server_conn(server, connection_id)
        # The server's side of the socket gets small buffers too: otherwise the kernel's
        # autotuned send buffer (MBs on loopback) can take every answer before the server
        # ever waits on the socket, and nothing is held back.
        transport = conn.send.__self__.transport  # type: ignore[attr-defined]
        server.call(lambda: _shrink(transport))
        sent = 0

        async def flood() -> None:
            nonlocal sent
            pad = "x" * 120  # the longest request ids: the socket buffers fill sooner
            for i in range(40_000):
                await ws.send(json.dumps({"type": "ping", "request_id": f"{pad}{i}"}))
                sent += 1

        pinger = asyncio.create_task(flood())
        try:
            # the server stops reading once 100 answers wait: the client's sends back up
            await eventually(lambda: conn.priority_full, timeout=30)
            assert len(conn._priority) <= conn.priority_size
            assert conn.close_code is None
            ws.transport.resume_reading()
            pongs = 0
            with contextlib.suppress(TimeoutError):
                while pongs < 40_000:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    pongs += frame["type"] == "pong"
            await asyncio.wait_for(pinger, 10)
            assert pongs == 40_000, "every ping answered once it read again"
        except ConnectionClosed:
            raise AssertionError("the server closed a client that only read slowly") from None
        finally:
            pinger.cancel()
