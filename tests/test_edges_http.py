"""Hostile HTTP input against a real server: crafted cursors and numbers, store bugs,
/metrics headers, request bodies — always a problem body, never a 500 for bad input,
never a database breaker opened for everyone."""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from runwire.store import repo

from .backends import BACKENDS, backend_server
from .conftest import ServerHandle
from .helpers import api
from .rawhttp import exchange

PROBLEM = "application/problem+json"


def b64(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


# Cursor payloads (JSON text, base64url-encoded by the test) a hostile client can craft.
BAD_CURSOR_JSON = [
    "{}", "[" * 5000, "[]", "null", "true", "false", "1.5", "-1", str(10**30), str(2**63),
    '"x"', "[1, 2]", '["x"]', '["a", "b", "c"]', '[null, "x"]',
    '["0001-01-01T00:00:00+01:00", "x"]', '["9999-12-31T23:59:59-01:00", "x"]',
    '["2024-01-01T00:00:00", "x"]', '["not a date", "x"]', '["2024-01-01T00:00:00+00:00", 5]',
    '["2024-01-01T00:00:00+00:00", "' + "x" * 300 + '"]', "1e999", "NaN",
]
BAD_CURSOR_TEXT = ["", "!!!", "é", "%00", "a" * 5000, "\x00", "e30"]  # e30 = base64("{}")


def assert_problem(r: httpx.Response, *statuses: int) -> dict[str, Any]:
    assert r.status_code in statuses, (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith(PROBLEM), r.headers
    body: dict[str, Any] = r.json()
    assert body["status"] == r.status_code and body["code"] and body["detail"]
    return body


async def test_crafted_cursors_and_numbers_are_client_errors(server: ServerHandle) -> None:
    async with api(server) as http:
        thread = (await http.post("/api/threads", json={"title": "t"})).json()["thread_id"]
        lists = ["/api/threads", f"/api/threads/{thread}/messages"]
        for path in lists:
            for raw in BAD_CURSOR_JSON:
                assert_problem(await http.get(path, params={"cursor": b64(raw)}), 400, 422)
            for cursor in BAD_CURSOR_TEXT[1:]:
                assert_problem(await http.get(path, params={"cursor": cursor}), 400, 422)
        numbers = ["9223372036854775808", str(10**30), "-1", "true", "1.5", "1e3", "", "0x10",
                   "١", "NaN", "-0x1"]
        for value in numbers:
            r = await http.get(f"/api/threads/{thread}/events", params={"after_seq": value})
            assert_problem(r, 400, 422)
            for path in [*lists, f"/api/threads/{thread}/events"]:
                assert_problem(await http.get(path, params={"limit": value}), 400, 422)
        # The largest 64-bit values are fine: an empty page, not an error.
        r = await http.get(f"/api/threads/{thread}/events",
                           params={"after_seq": str(2**63 - 1)})
        assert r.status_code == 200 and r.json()["items"] == []
        r = await http.get(f"/api/threads/{thread}/messages", params={"cursor": b64("1")})
        assert r.status_code == 200 and r.json()["items"] == []
        # An empty cursor is no cursor.
        assert (await http.get("/api/threads", params={"cursor": ""})).status_code == 200


@pytest.mark.parametrize("backend", [
    pytest.param(b, marks=[pytest.mark.postgres] if b == "postgres" else []) for b in BACKENDS])
async def test_crafted_ids_in_paths_are_client_errors(
    backend: str, server_factory: Callable[..., ServerHandle],
) -> None:
    """An id that runwire can never have made is a 422 before any query (on PostgreSQL a
    NUL in a text parameter is refused by the database: it was a 503 and counted by the
    breaker). A well-formed unknown id stays a 404."""
    async with backend_server(backend, server_factory) as server, api(server) as http:
        for bad in ["x" * 200, "a b", "%00", "a%00b", "%ED%A0%80", "\u00e9", "a%0Ab", "%2A"]:
            for path in [f"/api/threads/{bad}", f"/api/threads/{bad}/events",
                         f"/api/threads/{bad}/messages", f"/api/runs/{bad}"]:
                assert_problem(await http.get(path), 422)
        assert_problem(await http.get("/api/threads/no-such-thread"), 404)
        assert server.services.db.breaker.state == "closed"


async def test_crafted_cursors_never_cut_others_off_the_database(server: ServerHandle) -> None:
    """The issue's attack: six cursors that made the store raise opened the shared
    database breaker, and every other user got 503 storage_unavailable."""
    async with api(server, "mallory") as mallory, api(server, "bob") as bob:
        thread = (await bob.post("/api/threads", json={"title": "mine"})).json()["thread_id"]
        for _ in range(8):
            r = await mallory.get("/api/threads",
                                  params={"cursor": b64('["0001-01-01T00:00:00+01:00","x"]')})
            assert_problem(r, 400, 422)
        assert (await bob.get(f"/api/threads/{thread}")).status_code == 200
        assert (await bob.get("/api/threads")).status_code == 200
    assert server.services.db.breaker.state == "closed"


async def test_a_store_bug_is_a_500_problem_and_never_opens_the_breaker(
    server: ServerHandle, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """A database error that is not about the connection (here a real ProgrammingError from
    the driver) is a bug: 500 with a problem body and a logged traceback, not counted by
    the database breaker, so nobody else is refused."""

    async def broken(session: Any, *args: Any, **kwargs: Any) -> Any:
        await session.execute(text("SELECT 1; SELECT 2"))  # sqlite3.ProgrammingError

    monkeypatch.setattr(repo, "list_threads", broken)
    async with api(server, "mallory") as mallory, api(server, "bob") as bob:
        thread = (await bob.post("/api/threads", json={"title": "mine"})).json()["thread_id"]
        with caplog.at_level(logging.ERROR):
            for _ in range(8):
                body = assert_problem(await mallory.get("/api/threads"), 500)
                assert body["code"] == "internal" and "SELECT" not in body["detail"]
        assert (await bob.get(f"/api/threads/{thread}")).status_code == 200
    assert server.services.db.breaker.state == "closed"
    logged = [r for r in caplog.records if r.levelno == logging.ERROR and r.exc_info]
    assert len(logged) == 8, caplog.text
    assert all("ProgrammingError" in r.exc_text or "ProgrammingError" in repr(r.exc_info[1])
               for r in logged if r.exc_info)


async def test_only_connection_level_failures_count_toward_the_breaker(
    server: ServerHandle,
) -> None:
    """The line between "the database is failing" (StorageUnavailable, counted) and "a bug"
    (raised as is, not counted), on the server's own Database."""
    from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError, StatementError

    from runwire.errors import StorageUnavailable

    db = server.services.db

    async def outcome(exc: BaseException) -> tuple[str, int]:
        db.breaker.success()
        try:
            async with db.read():
                raise exc
        except StorageUnavailable:
            kind = "unavailable" if db.breaker._failures else "transient"
        except BaseException as raised:
            kind = "bug" if raised is exc else f"changed to {type(raised).__name__}"
        return kind, db.breaker._failures

    class PgError(Exception):  # what asyncpg's errors carry through SQLAlchemy
        def __init__(self, sqlstate: str) -> None:
            super().__init__(sqlstate)
            self.sqlstate = sqlstate

    lost = DBAPIError("SELECT 1", {}, ConnectionResetError(), connection_invalidated=True)
    cases: list[tuple[BaseException, str]] = [
        (OperationalError("SELECT 1", {}, Exception("database is locked")), "unavailable"),
        (lost, "unavailable"),
        (TimeoutError(), "unavailable"),
        (ConnectionRefusedError(), "unavailable"),
        (ProgrammingError("SELECT 1; SELECT 2", {}, Exception("one statement")), "bug"),
        (DBAPIError("SELECT 1", {}, Exception("invalid input syntax")), "bug"),
        (StatementError("bind failed", "SELECT ?", [], OverflowError()), "bug"),
        (OverflowError("Python int too large"), "bug"),
        (DBAPIError("SELECT 1", {}, PgError("57P01")), "unavailable"),  # admin shutdown
        (DBAPIError("SELECT 1", {}, PgError("08006")), "unavailable"),  # connection failure
        (DBAPIError("SELECT 1", {}, PgError("53300")), "unavailable"),  # too many connections
        (DBAPIError("SELECT 1", {}, PgError("57014")), "unavailable"),  # statement timeout
        (DBAPIError("SELECT 1", {}, PgError("22021")), "bug"),  # invalid byte sequence (NUL)
        (DBAPIError("SELECT 1", {}, PgError("22P02")), "bug"),  # invalid text representation
        (DBAPIError("SELECT 1", {}, PgError("40P01")), "transient"),  # deadlock
        (KeyError("x"), "bug"),
    ]
    for exc, expected in cases:
        kind, failures = server.call(lambda exc=exc: outcome(exc))
        assert (kind, failures) == (expected, 1 if expected == "unavailable" else 0), exc
    db.breaker.success()


async def test_metrics_token_compares_bytes(server_factory: Any) -> None:
    server = server_factory(metrics_token="s3cret")
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        for value in ["Bearer s3cr\u00e9t".encode(), b"Bearer \xff\xfe", "\u00e9".encode(),
                      b"Bearer s3cret2", b"bearer S3CRET"]:
            r = await http.get("/metrics", headers={"Authorization": value})
            assert r.status_code == 401, (value, r.status_code, r.text)
        r = await http.get("/metrics", headers={"Authorization": "Bearer s3cret"})
        assert r.status_code == 200 and "runwire_connections_open" in r.text


async def test_a_body_without_a_token_is_refused_before_it_is_read(server: ServerHandle) -> None:
    """50 MB announced, nothing sent: the 401 comes at once (the body is never awaited)."""
    for auth in [b"", b"Authorization: Bearer forged\r\n", b"Authorization: Basic eA==\r\n"]:
        started = time.monotonic()
        status, headers, body = await exchange(
            server.port,
            b"POST /api/threads HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            + auth + b"Content-Length: 52428800\r\n\r\n", timeout=5)
        assert status == 401 and headers[b"content-type"].startswith(PROBLEM.encode())
        assert b'"unauthorized"' in body
        assert time.monotonic() - started < 2
    # A body within the limit (an expired token's ordinary request) is read and dropped
    # rather than reset, so the client surely sees its 401 and keeps its connection.
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        for _ in range(3):
            r = await http.post("/api/threads", content=b"x" * 600_000,
                                headers={"Authorization": "Bearer expired"})
            assert_problem(r, 401)
            assert r.headers.get("connection") != "close"


async def test_bodies_over_the_limit_get_413(server_factory: Any) -> None:
    server = server_factory(max_request_body=4096)
    auth = f"Authorization: Bearer {server.token('alice')}\r\n".encode()
    head = b"POST /api/threads HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n" + auth
    # Announced too large: refused before reading.
    status, _, body = await exchange(server.port, head + b"Content-Length: 4097\r\n\r\n", timeout=5)
    assert status == 413 and b'"payload_too_large"' in body
    # Chunked, no length announced: refused once the count passes the limit.
    chunk = b'{"title": "' + b"x" * 5000 + b'"}'
    status, headers, body = await exchange(
        server.port, head + b"Transfer-Encoding: chunked\r\n\r\n"
        + f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n0\r\n\r\n", timeout=5)
    assert status == 413 and headers[b"content-type"].startswith(PROBLEM.encode()), body
    # Within the limit: served as before.
    async with api(server) as http:
        r = await http.post("/api/threads", json={"title": "small"})
        assert r.status_code == 201
        assert [t["title"] for t in (await http.get("/api/threads")).json()["items"]] == ["small"]


async def test_the_newer_routes_check_their_inputs_too(server: ServerHandle) -> None:
    """SSE stream, search and wait: the same 64-bit, cursor and id rules."""
    async with api(server) as http:
        thread = (await http.post("/api/threads", json={"title": "t"})).json()["thread_id"]
        stream = f"/api/threads/{thread}/stream"
        for value in [str(2**63), "-1", "true", "1e3"]:
            assert_problem(await http.get(stream, params={"after_seq": value}), 422)
        for raw in ["{}", "[" * 5000, "true", str(10**30), "-1", "100001"]:
            r = await http.get("/api/search", params={"q": "x", "cursor": b64(raw)})
            assert_problem(r, 422)
        for value in ["nan", "inf", "-1", "0", "601"]:
            assert_problem(await http.get("/api/runs/r1/wait", params={"timeout": value}), 422)
        assert_problem(await http.get("/api/threads/%20/stream"), 404, 422)
        # A Last-Event-ID that is no seq (or past 64 bits) is ignored, as a hint should be.
        for hint in [b"99999999999999999999", b"\xb2", b"-5", b"abc"]:
            async with http.stream("GET", stream, headers={"Last-Event-ID": hint}) as r:
                assert r.status_code == 200, (hint, r.status_code)


async def test_ag_ui_checks_the_token_before_the_body(server: ServerHandle) -> None:
    status, _, body = await exchange(
        server.port, b"POST /ag-ui HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: 52428800\r\n\r\n", timeout=5)
    assert status == 401 and b'"unauthorized"' in body


async def test_a_store_bug_on_the_websocket_is_an_internal_error_not_a_breaker_trip(
    server: ServerHandle, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from runwire.store import eventlog

    from .helpers import client

    def broken(conn: Any, *args: Any, **kwargs: Any) -> Any:
        conn.execute(text("SELECT 1; SELECT 2"))  # sqlite3.ProgrammingError

    async with api(server, "mallory") as http:
        thread = (await http.post("/api/threads", json={"title": "t"})).json()["thread_id"]
    monkeypatch.setattr(eventlog, "bounds", broken)
    async with client(server, "mallory") as c:
        for i in range(8):
            await c.send("resume", {"thread_id": thread, "after_seq": 0}, request_id=f"r{i}")
            err = (await c.until(lambda f: f["type"] == "error"))[-1]["payload"]
            assert (err["code"], err["request_id"]) == ("internal", f"r{i}"), err
        await c.send("ping", request_id="still")
        assert (await c.until(lambda f: f["type"] == "pong"))[-1]["payload"]["request_id"] == "still"
    assert server.services.db.breaker.state == "closed"


@pytest.mark.parametrize("backend", [
    pytest.param(b, marks=[pytest.mark.postgres] if b == "postgres" else []) for b in BACKENDS])
async def test_nul_in_stored_text_is_a_validation_error(
    backend: str, server_factory: Callable[..., ServerHandle],
) -> None:
    """PostgreSQL refuses NUL in text columns: refused at the edge (422 / validation_error)
    instead of failing in the store (was a 503 counted by the breaker, then a 500)."""
    import json

    from .helpers import client

    async with backend_server(backend, server_factory) as server, api(server) as http:
        assert_problem(await http.post("/api/threads", json={"title": "a\x00b"}), 422)
        assert_problem(await http.get("/api/search", params={"q": "a\x00b"}), 422)
        assert_problem(await http.post("/api/runs", json={"content": "a\x00b"}), 422)
        agui = {"threadId": "t-nul", "runId": "r1", "state": {}, "tools": [], "context": [],
                "forwardedProps": {}, "messages": [{"id": "m1", "role": "user",
                                                    "content": "a\x00b"}]}
        answer = await http.post("/ag-ui", json=agui)  # AG-UI clients get errors as events
        assert answer.status_code == 200 and '"type":"RUN_ERROR"' in answer.text, answer.text
        assert '"code":"validation_error"' in answer.text and "NUL" in answer.text
        async with client(server) as c:
            await c.send_raw(json.dumps({"type": "user_message", "request_id": "n1",
                                         "payload": {"content": "a\x00b"}}))
            err = await c.recv(timeout=10)
            assert err["payload"]["code"] == "validation_error", err
            # NUL inside structured context is JSON (escaped), which both stores take.
            ack, _ = await c.ask("hello", context={"k": "a\x00b"})
            assert ack["type"] == "message_ack", ack
        assert server.services.db.breaker.state == "closed"
