"""Large events: a 1 MB tool result travels as chunk frames and reassembles exactly."""

from __future__ import annotations

import json
from typing import Any

import pytest
from websockets.asyncio.client import connect

from runwire.protocol.handshake import b64url_encode

from .helpers import api


@pytest.mark.parametrize("compression", ["deflate", None])
async def test_a_1mb_tool_result_arrives_as_chunks_and_reassembles_byte_identical(
    server_factory: Any, compression: str | None,
) -> None:
    """With and without permessage-deflate: without it, every connection is written the
    same prepared frame bytes (Envelope.framed) and chunks as text."""
    server = server_factory(agents="tests.agents_fixture:register")
    token = server.token("alice")
    chunk_size = server.settings.outbound_chunk_size
    async with connect(server.ws_url, subprotocols=["runwire.v1", "jwt." + b64url_encode(token)],  # type: ignore[list-item]
                       max_size=2**22, compression=compression) as ws:
        connection_id = json.loads(await ws.recv())["payload"]["connection_id"]
        conn = next(c for c in server.services.connections if c.connection_id == connection_id)
        assert conn.prepared is (compression is None)
        await ws.send(json.dumps({"type": "user_message", "payload": {
            "content": '/tool big_output {"size": 1000000}'}}))
        parts: dict[str, list[str]] = {}
        chunk_frames = 0
        completed: str | None = None
        while True:
            raw = await ws.recv()
            assert isinstance(raw, str)
            frame = json.loads(raw)
            if frame["type"] == "chunk":
                chunk_frames += 1
                p = frame["payload"]
                assert len(p["data"].encode()) <= chunk_size
                slices = parts.setdefault(p["chunk_id"], [])
                assert p["index"] == len(slices)  # in order, nothing in between
                slices.append(p["data"])
                if p["index"] == p["total"] - 1:
                    whole = "".join(parts.pop(p["chunk_id"]))
                    if json.loads(whole)["type"] == "tool_completed":
                        completed = whole
                continue
            assert not parts, "a frame arrived in the middle of a chunked event"
            if frame["type"] in ("agent_completed", "agent_error"):
                break
    assert completed is not None and chunk_frames >= 16
    event = json.loads(completed)
    assert len(event["payload"]["result"]["text"]) == 1_000_000
    async with api(server) as http:
        log = (await http.get(f"/api/threads/{event['thread_id']}/events")).json()["items"]
    stored = next(e for e in log if e["seq"] == event["seq"])
    assert stored == event
    assert json.dumps(stored, ensure_ascii=False, separators=(",", ":")).encode() == completed.encode()
