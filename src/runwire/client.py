"""A small async Python client for runwire's WebSocket protocol.

Example::

    async with RunwireClient.connect("ws://127.0.0.1:8000/ws", token) as client:
        ack = await client.send_message("what is 12*(3+4)?")
        async for event in client.run_events(ack["run_id"]):
            print(event["type"], event["payload"])

Frames are dicts as they arrive (``chunk`` frames are reassembled transparently).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from runwire.protocol.codes import SUBPROTOCOL, TERMINAL_EVENTS
from runwire.protocol.handshake import b64url_encode

Frame = dict[str, Any]


class RunwireClosed(Exception):
    """The server closed the connection; `code` and `reason` say why."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"connection closed ({code}): {reason}")
        self.code = code
        self.reason = reason


class RunwireClient:
    """One connection to a runwire server."""

    def __init__(self, ws: ClientConnection, established: Frame) -> None:
        self._ws = ws
        self.established = established
        self._chunks: dict[str, list[str]] = {}

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(
        cls,
        url: str,
        token: str,
        *,
        header_auth: bool = False,
        origin: str | None = None,
        open_timeout: float = 10.0,
        max_size: int | None = 2**24,
    ) -> AsyncIterator[RunwireClient]:
        """Connect, authenticate and wait for ``connection_established``.

        Raises:
            RunwireClosed: the server refused the connection (4001, 4003, 4008...).
        """
        headers = {"Authorization": f"Bearer {token}"} if header_auth else None
        protocols = [SUBPROTOCOL] if header_auth else [SUBPROTOCOL, "jwt." + b64url_encode(token)]
        async with connect(
            url, subprotocols=protocols, additional_headers=headers,  # type: ignore[arg-type]
            origin=origin, open_timeout=open_timeout, max_size=max_size,  # type: ignore[arg-type]
        ) as ws:
            try:
                first = json.loads(await ws.recv())
            except ConnectionClosed as exc:
                raise RunwireClosed(*_close_of(exc)) from None
            if first.get("type") != "connection_established":
                raise RunwireClosed(None, f"unexpected first frame {first.get('type')}")
            yield cls(ws, first)

    @property
    def user_id(self) -> str:
        return str(self.established["payload"]["user_id"])

    async def send(self, type: str, payload: dict[str, Any] | None = None,
                   request_id: str | None = None) -> None:
        frame: Frame = {"type": type, "payload": payload or {}}
        if request_id is not None:
            frame["request_id"] = request_id
        await self.send_raw(json.dumps(frame))

    async def send_raw(self, text: str) -> None:
        try:
            await self._ws.send(text)
        except ConnectionClosed as exc:
            raise RunwireClosed(*_close_of(exc)) from None

    async def send_message(self, content: str, *, thread_id: str | None = None,
                           message_id: str | None = None, **extra: Any) -> str:
        """Send a ``user_message``; returns its message_id (generated when not given)."""
        message_id = message_id or str(uuid.uuid4())
        payload: dict[str, Any] = {"content": content, "message_id": message_id, **extra}
        if thread_id is not None:
            payload["thread_id"] = thread_id
        await self.send("user_message", payload)
        return message_id

    async def recv(self, timeout: float | None = None) -> Frame:
        """The next frame (chunks reassembled).

        Raises:
            RunwireClosed: the connection closed.
            TimeoutError: nothing arrived within `timeout`.
        """
        while True:
            try:
                async with asyncio.timeout(timeout):
                    raw = await self._ws.recv()
            except ConnectionClosed as exc:
                raise RunwireClosed(*_close_of(exc)) from None
            frame: Frame = json.loads(raw)
            if frame.get("type") != "chunk":
                return frame
            p = frame["payload"]
            parts = self._chunks.setdefault(p["chunk_id"], [])
            parts.append(p["data"])
            if p["index"] == p["total"] - 1:
                del self._chunks[p["chunk_id"]]
                whole: Frame = json.loads("".join(parts))
                return whole

    async def until(self, predicate: Callable[[Frame], bool],
                    timeout: float = 10.0) -> list[Frame]:
        """Receive frames until one matches `predicate`; returns all of them (inclusive)."""
        frames: list[Frame] = []
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.recv()
                frames.append(frame)
                if predicate(frame):
                    return frames

    async def ask(self, content: str, *, thread_id: str | None = None,
                  timeout: float = 30.0, **extra: Any) -> tuple[Frame, list[Frame]]:
        """Send a message and collect frames until its run's terminal event.

        Returns ``(message_ack, frames)`` where frames are everything received meanwhile.
        """
        message_id = await self.send_message(content, thread_id=thread_id, **extra)
        frames: list[Frame] = []
        ack: Frame | None = None
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.recv()
                frames.append(frame)
                if frame["type"] == "message_ack" and frame["payload"]["message_id"] == message_id:
                    ack = frame
                elif frame["type"] == "error" and ack is None:
                    return frame, frames
                if (ack is not None and frame["type"] in TERMINAL_EVENTS
                        and frame.get("run_id") == ack["payload"]["run_id"]):
                    return ack, frames

    async def close(self) -> None:
        await self._ws.close()

    @property
    def close_code(self) -> int | None:
        return self._ws.close_code

    async def wait_closed(self, timeout: float = 10.0) -> tuple[int | None, str]:
        """Read until the server closes; returns (code, reason)."""
        async with asyncio.timeout(timeout):
            try:
                while True:
                    await self._ws.recv()
            except ConnectionClosed as exc:
                return _close_of(exc)


def _close_of(exc: ConnectionClosed) -> tuple[int | None, str]:
    if exc.rcvd is not None:
        return exc.rcvd.code, exc.rcvd.reason
    return None, "connection lost"
