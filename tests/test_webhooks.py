"""Webhooks (SPEC 9) against a real server and a local receiver: Standard Webhooks
signatures verified with the reference library, the outbox committed with the event it
reports, retries with the same webhook-id until the receiver is back, 4xx stops, settings
checked at start-up; on SQLite and PostgreSQL + Redis."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from runwire.client import RunwireClient
from runwire.errors import ConfigError
from runwire.settings import load_settings

from .backends import BACKENDS, backend_server
from .conftest import ServerHandle, missing_service
from .helpers import client, count_rows, eventually
from .nodes import Node
from .pg import PG_HOST, fresh_database, pg_available
from .redis_server import REDIS_URL, redis_available, unique_prefix
from .webhook_receiver import Receiver

SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
QUESTION = "what is 12*(3+4)?"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().up()
    yield r
    r.down()


@pytest.fixture(params=[pytest.param(b, marks=[pytest.mark.postgres] if b == "postgres" else [])
                        for b in BACKENDS])
async def hooked(request: pytest.FixtureRequest, receiver: Receiver,
                 server_factory: Callable[..., ServerHandle]) -> AsyncIterator[ServerHandle]:
    async with backend_server(request.param, server_factory, webhook_urls=receiver.url,
                              webhook_secret=SECRET, webhook_timeout=2.0) as server:
        yield server


def verified(receiver: Receiver) -> list[dict[str, Any]]:
    """Every request's body, each signature checked with the reference library."""
    out = []
    for got in receiver.received:
        payload: dict[str, Any] = Webhook(SECRET).verify(got.body, got.headers)
        out.append(payload)
    return out


async def test_a_completed_run_is_posted_signed_and_committed_with_its_end(
    hooked: ServerHandle, receiver: Receiver,
) -> None:
    async with client(hooked) as c:
        ack, _ = await c.ask(QUESTION)
        # the outbox row is in the transaction of the terminal event: there once it is seen
        rows = hooked.call(lambda: count_rows(hooked, "webhook_deliveries"))
        assert rows == [1]
    await eventually(lambda: len(receiver.received) == 1, timeout=10)
    [payload] = verified(receiver)
    data = payload["data"]
    assert payload["type"] == "run.completed" and payload["timestamp"].endswith("Z")
    assert data["run_id"] == ack["payload"]["run_id"] and data["user_id"] == "alice"
    assert data["thread_id"] == ack["payload"]["thread_id"]
    assert data["status"] == "completed" and "84" in data["result"]
    assert data["usage"] is not None and "error" not in data
    headers = receiver.received[0].headers
    assert headers["webhook-id"].startswith("msg_")
    assert headers["webhook-signature"].startswith("v1,")


async def test_a_tool_call_waiting_for_approval_is_run_waiting(
    hooked: ServerHandle, receiver: Receiver,
) -> None:
    async with client(hooked) as c:
        await c.send_message("notify bob: the build is green")
        await c.until(lambda f: f["type"] == "approval_required")
    await eventually(lambda: len(receiver.received) == 1, timeout=10)
    [payload] = verified(receiver)
    assert payload["type"] == "run.waiting" and payload["data"]["status"] == "waiting"
    approval = payload["data"]["approval"]
    assert approval["tool_name"] == "send_notification"
    assert approval["tool_args"] == {"to": "bob", "text": "the build is green"}


async def test_receiver_down_then_up_gets_every_delivery_with_stable_ids(
    server_factory: Callable[..., ServerHandle],
) -> None:
    receiver = Receiver()  # down: nothing listens on its port
    server = server_factory(webhook_urls=receiver.url, webhook_secret=SECRET,
                            webhook_timeout=1.0)
    async with client(server) as c:
        runs = {(await c.ask(f"what is {n}+1?"))[0]["payload"]["run_id"] for n in range(3)}

    async def attempts() -> list[int]:
        from sqlalchemy import text

        async with server.services.db.read() as s:
            return list(await s.scalars(text("SELECT attempts FROM webhook_deliveries")))

    await eventually(lambda: min(server.call(attempts)) >= 2, timeout=15)  # retried
    receiver.up()
    try:
        await eventually(lambda: len(receiver.received) >= 3, timeout=30)
        payloads = verified(receiver)
        assert {p["data"]["run_id"] for p in payloads} == runs
        ids = [r.headers["webhook-id"] for r in receiver.received]
        assert len(set(ids)) == 3  # one id per event; a duplicate would be a retry of it
        async def rows() -> list[Any]:
            from sqlalchemy import text

            async with server.services.db.read() as s:
                return list((await s.execute(text(
                    "SELECT webhook_id, status, attempts FROM webhook_deliveries"))).all())

        # the receiver answered; the row is marked delivered just after
        await eventually(lambda: all(r[1] == "delivered" for r in server.call(rows)))
        final = server.call(rows)
        assert {r[0] for r in final} == set(ids)
        assert all(r[2] >= 3 for r in final)  # two failed attempts at least, then delivered
    finally:
        receiver.down()


@pytest.mark.parametrize(("status", "final", "retried"), [(410, "failed", False),
                                                          (503, "pending", True)])
async def test_a_4xx_stops_and_a_5xx_retries(
    server_factory: Callable[..., ServerHandle], status: int, final: str, retried: bool,
) -> None:
    receiver = Receiver(status=status).up()
    server = server_factory(webhook_urls=receiver.url, webhook_secret=SECRET)
    try:
        async with client(server) as c:
            await c.ask(QUESTION)
        await eventually(lambda: len(receiver.received) >= (2 if retried else 1), timeout=15)

        async def row() -> tuple[str, int, int]:
            from sqlalchemy import text

            async with server.services.db.read() as s:
                got = (await s.execute(text("SELECT status, attempts, last_status "
                                            "FROM webhook_deliveries"))).one()
            return got[0], got[1], got[2]

        # the receiver answered; the attempt is recorded just after
        await eventually(lambda: server.call(row)[1] >= (2 if retried else 1))
        if not retried:
            await eventually(lambda: server.call(row)[0] == "failed")
        state, tries, last = server.call(row)
        assert (state, last) == (final, status)
        assert tries >= 2 if retried else tries == 1
        ids = {r.headers["webhook-id"] for r in receiver.received}
        assert len(ids) == 1  # every attempt carries the same id
    finally:
        receiver.down()


def test_bad_webhook_settings_stop_start_up_with_one_line() -> None:
    cases = {"RUNWIRE_WEBHOOK_URLS": {"webhook_urls": "ftp://nope"},
             "RUNWIRE_WEBHOOK_SECRET": {"webhook_urls": "http://127.0.0.1:9/x"},
             "RUNWIRE_WEBHOOK_TIMEOUT": {"webhook_timeout": "0"},
             "RUNWIRE_WEBHOOK_RETRY_HOURS": {"webhook_retry_hours": "soon"}}
    for name, overrides in cases.items():
        with pytest.raises(ConfigError) as err:
            load_settings(**overrides)
        assert str(err.value).startswith(f"{name}:") and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="RUNWIRE_WEBHOOK_SECRET"):
        load_settings(webhook_urls="http://h/x", webhook_secret="whsec_c2hvcnQ=")
    assert load_settings(webhook_urls="http://h/x, https://g/y", webhook_secret=SECRET
                         ).webhook_urls == ("http://h/x", "https://g/y")


def test_payload_mapping() -> None:
    from runwire.protocol.envelope import Envelope, encode
    from runwire.webhooks.outbox import webhook_for

    def env(type: str, **payload: Any) -> Envelope:
        return Envelope("u", type, encode(type, payload, thread_id="t", run_id="r", seq=3),
                        thread_id="t", seq=3, run_id="r")

    kinds = {t: (webhook_for(e) or ("none", {}))[0] for t, e in {
        "completed": env("agent_completed", status="completed", result="x", usage={}),
        "cancelled": env("agent_completed", status="cancelled", result=""),
        "timeout": env("agent_error", code="timeout", message="slow", retryable=True),
        "failed": env("agent_error", code="model_error", message="bad", retryable=False),
        "delta": env("partial_result", delta="x")}.items()}
    assert kinds == {"completed": "run.completed", "cancelled": "run.cancelled",
                     "timeout": "run.timed_out", "failed": "run.failed", "delta": "none"}
    found = webhook_for(env("agent_error", code="timeout", message="slow", retryable=True))
    assert found is not None
    assert json.dumps(found[1]["data"]["error"]) == json.dumps(
        {"code": "timeout", "message": "slow", "retryable": True})


@pytest.mark.postgres
async def test_a_node_killed_mid_delivery_loses_none(tmp_path: Path) -> None:
    """Node A claims the delivery and dies while its POST hangs; node B takes the claim
    over once A's lease ends and delivers it: same webhook-id, delivered once."""
    if not await pg_available():
        missing_service(f"PostgreSQL is not reachable at {PG_HOST}")
    if not redis_available():
        missing_service(f"Redis is not reachable at {REDIS_URL}")
    receiver = Receiver(stall_first=True).up()
    try:
        async with fresh_database() as url:
            shared = {"database_url": url, "redis_url": REDIS_URL,
                      "redis_prefix": unique_prefix(), "jwt_secret": uuid.uuid4().hex * 2,
                      "builtin_delta_delay": 0.0, "webhook_urls": receiver.url,
                      "webhook_secret": SECRET, "webhook_timeout": 1.0}
            a = await Node(tmp_path / "a", node_id="a", **shared).start()
            b = Node(tmp_path / "b", node_id="b", **shared)
            try:
                async with RunwireClient.connect(a.ws_url, a.token()) as c:
                    ack, _ = await c.ask(QUESTION)
                await eventually(lambda: len(receiver.received) == 1, timeout=10)
                a.kill()  # its POST is still waiting for an answer
                await b.start()
                # A's claim ends after 2 × WEBHOOK_TIMEOUT + 5 s; then B sends it again
                await eventually(lambda: len(receiver.received) == 2, timeout=30)
                first, second = receiver.received
                assert first.headers["webhook-id"] == second.headers["webhook-id"]
                payload = Webhook(SECRET).verify(second.body, second.headers)
                assert payload["data"]["run_id"] == ack["payload"]["run_id"]

                async def row() -> tuple[str, str, int]:
                    import asyncpg

                    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
                    try:
                        got = await conn.fetchrow("SELECT status, node_id, attempts "
                                                  "FROM webhook_deliveries")
                    finally:
                        await conn.close()
                    assert got is not None
                    return got[0], got[1], got[2]

                for _ in range(200):  # B marks it delivered just after the answer
                    if (await row())[0] == "delivered":
                        break
                    await asyncio.sleep(0.05)  # ok-sleep: polling another process's row
                assert await row() == ("delivered", "b", 1)
            finally:
                b.kill()
                a.kill()
    finally:
        receiver.down()


@pytest.mark.postgres
async def test_two_nodes_send_each_delivery_once(tmp_path: Path) -> None:
    """Both nodes' dispatchers claim from one outbox (SKIP LOCKED): every delivery once."""
    if not await pg_available():
        missing_service(f"PostgreSQL is not reachable at {PG_HOST}")
    if not redis_available():
        missing_service(f"Redis is not reachable at {REDIS_URL}")
    receiver = Receiver().up()
    try:
        async with fresh_database() as url:
            shared = {"database_url": url, "redis_url": REDIS_URL,
                      "redis_prefix": unique_prefix(), "jwt_secret": uuid.uuid4().hex * 2,
                      "builtin_delta_delay": 0.0, "webhook_urls": receiver.url,
                      "webhook_secret": SECRET}
            nodes = [await Node(tmp_path / n, node_id=n, **shared).start() for n in "ab"]
            try:
                runs = set()
                for i in range(6):
                    node = nodes[i % 2]
                    async with RunwireClient.connect(node.ws_url, node.token()) as c:
                        runs.add((await c.ask(f"what is {i}*2?"))[0]["payload"]["run_id"])
                await eventually(lambda: len(receiver.received) >= 6, timeout=20)
                ids = [r.headers["webhook-id"] for r in receiver.received]
                assert len(ids) == len(set(ids)) == 6
                assert {p["data"]["run_id"] for p in verified(receiver)} == runs
            finally:
                for node in nodes:
                    node.kill()
    finally:
        receiver.down()


async def test_outbox_rows_are_leased_retried_with_backoff_and_pruned(tmp_path: Path) -> None:
    from datetime import timedelta

    from runwire.protocol.envelope import Envelope, encode, utc_now
    from runwire.store.db import Database
    from runwire.webhooks import outbox

    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'o.db'}")
    await db.migrate()
    try:
        end = Envelope("u", "agent_completed", encode(
            "agent_completed", {"status": "completed", "result": "r", "usage": {}},
            thread_id="t", run_id="r1", seq=5), thread_id="t", seq=5, run_id="r1")
        noise = Envelope("u", "partial_result", encode("partial_result", {"delta": "x"}),
                         thread_id="t", seq=4, run_id="r1")
        urls = ["http://a/h", "http://b/h"]
        assert await db.transaction(lambda c: outbox.record(c, [noise, end], urls)) == 2
        lease = timedelta(seconds=30)
        mine = await db.transaction(lambda c: outbox.claim(
            c, node_id="a", limit=10, lease=lease, skip_locked=False))
        assert len(mine) == 2 and len({r.webhook_id for r in mine}) == 1  # one id per event
        assert await db.transaction(lambda c: outbox.claim(
            c, node_id="b", limit=10, lease=lease, skip_locked=False)) == []  # leased
        later = utc_now() + timedelta(seconds=31)  # a's lease ran out: b may take them
        taken = await db.transaction(lambda c: outbox.claim(
            c, node_id="b", limit=10, lease=lease, skip_locked=False, now=later))
        assert len(taken) == 2
        # a lost its claim: its late outcome is not recorded
        assert not await db.transaction(lambda c: outbox.delivered(
            c, mine[0], node_id="a", status=200))
        first, second = taken
        assert await db.transaction(lambda c: outbox.delivered(
            c, first, node_id="b", status=204))
        outcome = await db.transaction(lambda c: outbox.failed_attempt(
            c, second, node_id="b", status=503, error="HTTP 503", retry=True,
            give_up_after=timedelta(hours=24)))
        assert outcome == "retry"
        depth, _ = await db.query(lambda c: outbox.stats(c))
        assert depth == 1
        # not due before its backoff; given up once past the retry window
        assert await db.transaction(lambda c: outbox.claim(
            c, node_id="b", limit=10, lease=lease, skip_locked=False)) == []
        again = await db.transaction(lambda c: outbox.claim(
            c, node_id="b", limit=10, lease=lease, skip_locked=False,
            now=utc_now() + timedelta(seconds=5)))
        assert [r.attempts for r in again] == [1]
        assert await db.transaction(lambda c: outbox.failed_attempt(
            c, again[0], node_id="b", status=None, error="timeout", retry=True,
            give_up_after=timedelta(seconds=1))) == "failed"
        assert await db.transaction(lambda c: outbox.prune(
            c, older_than=utc_now() + timedelta(seconds=1))) == 2
    finally:
        await db.aclose()


def test_retry_delays_double_with_jitter_up_to_ten_minutes() -> None:
    import random

    from runwire.webhooks.outbox import retry_delay

    rng = random.Random(7)
    for attempts, base in ((1, 1.0), (2, 2.0), (3, 4.0), (10, 512.0), (20, 600.0)):
        delays = [retry_delay(attempts, rng) for _ in range(50)]
        assert all(min(600.0, base * 0.5) <= d <= min(600.0, base * 1.5) for d in delays)
        assert len(set(delays)) > 1 or base * 0.5 >= 600  # jittered
