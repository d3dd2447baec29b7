"""A minimal WebSocket client on a bare asyncio Protocol, for the rows where the load
generator must cost (much) less than the server it measures.

It does the HTTP upgrade by hand, then only reads frame headers: a text frame's payload
is sliced out and handed to ``on_text`` (a callback the row supplies), pings are answered,
everything else is counted. Client frames are masked with an all-zero key (valid per
RFC 6455 §5.3 and free to apply). No fragmentation, no extensions: the servers under test
are configured not to negotiate permessage-deflate with it (it offers none).
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from benchmarks.frames import token

OnText = Callable[["RawClient", bytes, float], None]


def _frame(opcode: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + b"\0\0\0\0" + payload  # zero mask key: payload unchanged


class RawClient(asyncio.Protocol):
    """One connection. `frames`/`octets` count every text frame received."""

    def __init__(self, on_text: OnText | None) -> None:
        self.on_text = on_text
        self.frames = 0
        self.octets = 0
        self.pings = 0
        self.sizes: list[int] | None = None  # set to a list to record frame sizes
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._upgraded = asyncio.get_running_loop().create_future()
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._upgraded.done():
            self._upgraded.set_exception(ConnectionError("closed during handshake"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        if not self._upgraded.done():
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[:buf.find(b"\r\n")])
            del buf[:end + 4]
            if b" 101 " not in status:
                self._upgraded.set_exception(ConnectionError(status.decode(errors="replace")))
                return
            self._upgraded.set_result(None)
        now = time.perf_counter()
        pos, size = 0, len(buf)
        while size - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            n, head = b1 & 0x7F, 2
            if n == 126:
                if size - pos < 4:
                    break
                n, head = (buf[pos + 2] << 8) | buf[pos + 3], 4
            elif n == 127:
                if size - pos < 10:
                    break
                n, head = struct.unpack_from("!Q", buf, pos + 2)[0], 10
            if size - pos < head + n:
                break
            opcode = b0 & 0x0F
            start = pos + head
            pos = start + n
            if opcode == 1:
                self.frames += 1
                self.octets += n
                if self.sizes is not None:
                    self.sizes.append(n)
                if self.on_text is not None:
                    self.on_text(self, bytes(buf[start:pos]), now)
            elif opcode == 9 and self.transport is not None:  # ping → pong
                self.pings += 1
                self.transport.write(_frame(0xA, bytes(buf[start:pos])))
            elif opcode == 8 and self.transport is not None:
                self.transport.close()
        if pos:
            del buf[:pos]

    def send_text(self, text: str) -> None:
        assert self.transport is not None
        self.transport.write(_frame(1, text.encode()))

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(_frame(8, struct.pack("!H", 1000)))
            self.transport.close()


async def open_raw(url: str, user: str | None, on_text: OnText | None = None,
                   *, timeout: float = 20.0) -> RawClient:
    """Connect and upgrade; returns once the 101 arrived (frames may follow)."""
    parts = urlsplit(url)
    loop = asyncio.get_running_loop()
    _, client = await asyncio.wait_for(loop.create_connection(
        lambda: RawClient(on_text), parts.hostname or "127.0.0.1", parts.port or 80), timeout)
    key = base64.b64encode(os.urandom(16)).decode()
    auth = f"Authorization: Bearer {token(user)}\r\nSec-WebSocket-Protocol: runwire.v1\r\n" \
        if user is not None else ""
    request = (f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
               "Upgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{auth}\r\n")
    assert client.transport is not None
    client.transport.write(request.encode())
    await asyncio.wait_for(client._upgraded, timeout)
    return client


def type_of(payload: bytes) -> bytes:
    """The frame type, read from the first key runwire writes (``{"type":"…"``)."""
    if payload.startswith(b'{"type":"'):
        return payload[9:payload.index(b'"', 9)]
    return b""
