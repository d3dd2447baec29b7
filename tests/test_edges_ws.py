"""Hostile WebSocket input against a real server: lone surrogates, unencodable frames,
invalid UTF-8 — an ``error`` frame or a clean close, never a dead writer or a traceback."""

from __future__ import annotations

import logging

import pytest

from .conftest import ServerHandle
from .helpers import RunwireClosed, client, count_rows, eventually

# JSON text (a backslash and "u…"), as a hostile client would send it: each decodes to a
# string holding a lone UTF-16 surrogate, which has no UTF-8 encoding.
SURROGATE_FRAMES = [
    '{"type":"ping","request_id":"\\ud800"}',
    '{"type":"ping","request_id":"ok\\udfff"}',
    '{"type":"user_message","payload":{"content":"hi \\ud83d"}}',
    '{"type":"user_message","payload":{"content":"hi","context":{"\\udc00":1}}}',
    '{"type":"teleport\\ud800","request_id":"r"}',
    '{"type":"start_agent","payload":{"user_request":"x","settings":{"k":["\\udbff"]}}}',
]


@pytest.mark.parametrize("raw", SURROGATE_FRAMES)
async def test_a_lone_surrogate_is_a_validation_error_and_the_connection_stays(
    server: ServerHandle, raw: str
) -> None:
    async with client(server) as c:
        await c.send_raw(raw)
        err = await c.recv(timeout=5)
        assert err["type"] == "error" and err["payload"]["code"] == "validation_error", err
        assert "surrogate" in err["payload"]["message"]
        assert err["payload"]["request_id"] in (None, "r")  # never echoes the bad string
        await c.send("ping", request_id="after")
        pong = await c.recv(timeout=5)
        assert pong == {**pong, "type": "pong", "payload": {"request_id": "after"}}
    assert server.call(lambda: count_rows(server, "messages", "threads", "runs")) == [0, 0, 0]


async def test_a_valid_surrogate_pair_is_an_ordinary_character(server: ServerHandle) -> None:
    async with client(server) as c:
        await c.send_raw('{"type":"ping","request_id":"\\ud83d\\ude00"}')
        pong = await c.recv(timeout=5)
        assert pong["type"] == "pong" and pong["payload"]["request_id"] == "\U0001f600"


async def test_the_writer_survives_a_frame_that_cannot_be_encoded(
    server: ServerHandle, caplog: pytest.LogCaptureFixture
) -> None:
    """A frame that bypassed `encode` (a bug) is sent repaired and logged; the
    connection goes on."""
    async with client(server) as c:
        (conn,) = server.services.connections.of_user("alice")

        async def inject() -> None:
            conn.send_ordered('{"type":"bug","payload":{"text":"a\ud800b"}}')

        with caplog.at_level(logging.ERROR, logger="runwire.gateway.connection"):
            server.call(inject)
            frame = await c.recv(timeout=5)
        assert frame == {"type": "bug", "payload": {"text": "a\ufffdb"}}
        assert any("UTF-8" in r.getMessage() for r in caplog.records), caplog.text
        await c.send("ping", request_id="after")
        assert (await c.recv(timeout=5))["payload"] == {"request_id": "after"}


async def test_invalid_utf8_closes_with_1007_and_logs_once_at_debug(
    server: ServerHandle, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        for _ in range(3):
            async with client(server) as c:
                await c._ws.send(b"\xff\xfe{", text=True)  # a text frame that is not UTF-8
                with pytest.raises(RunwireClosed) as closed:
                    await c.recv(timeout=5)
            assert closed.value.code == 1007
        await eventually(lambda: len(server.services.connections) == 0)
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert loud == [], [r.getMessage() for r in loud]
    quiet = [r for r in caplog.records if r.name.startswith("runwire") and "UTF-8" in r.getMessage()]
    assert len(quiet) == 3 and all(r.levelno == logging.DEBUG and "1007" in r.getMessage()
                                   for r in quiet), [r.getMessage() for r in quiet]
    assert all(r.exc_info is None for r in quiet)
