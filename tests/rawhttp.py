"""Raw HTTP/1.1 over a socket, for requests no polite client sends (half headers, a body
announced and never sent, silence)."""

from __future__ import annotations

import asyncio

import h11


async def exchange(port: int, request: bytes, *, timeout: float
                   ) -> tuple[int, dict[bytes, bytes], bytes]:
    """Send `request` bytes as they are, read one response: (status, headers, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    conn = h11.Connection(h11.CLIENT)
    # h11 parses responses to requests it sent: tell it about one (its bytes are not used).
    conn.send(h11.Request(method="POST", target="/", headers=[("Host", "t"),
                                                                ("Content-Length", "0")]))
    conn.send(h11.EndOfMessage())
    status, headers, body = 0, {}, b""
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(timeout):
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await reader.read(65536))
                elif isinstance(event, h11.Response):
                    status, headers = event.status_code, dict(event.headers)
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    return status, headers, body
    finally:
        writer.close()


async def closed_by_server(reader: asyncio.StreamReader, timeout: float) -> bytes:
    """Wait until the server closes the connection; returns what it sent before."""
    received = b""
    async with asyncio.timeout(timeout):
        while True:
            try:
                data = await reader.read(65536)
            except ConnectionResetError:
                return received
            if not data:
                return received
            received += data
