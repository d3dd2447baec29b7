"""The /ws gateway against a real server: handshake, auth, limits, frames, fan-out."""

from __future__ import annotations

import json
import time

import jwt
import pytest

from runwire.client import RunwireClient

from .conftest import ServerHandle
from .helpers import client, count_rows, eventually, refused, thread_events

QUESTION = "what is 12*(3+4)?"


async def test_first_frame_is_connection_established_with_limits_and_model(server: ServerHandle) -> None:
    async with client(server) as c:
        p = c.established["payload"]
        assert p["user_id"] == "alice"
        assert p["protocol"] == 1
        assert p["max_message_size"] == 65536
        assert p["limits"]["max_connections_per_user"] == 3
        assert p["model"] == {"name": "builtin", "demo": True}
        assert p["node_id"] == server.settings.node_id


async def test_run_streams_events_in_order_with_gapless_seq(server: ServerHandle) -> None:
    async with client(server) as c:
        ack, frames = await c.ask(QUESTION)
        assert ack["type"] == "message_ack" and ack["payload"]["duplicate"] is False
        thread_id = ack["payload"]["thread_id"]
        events = thread_events(frames, thread_id)
        seqs = [e["seq"] for e in events]
        assert seqs == list(range(1, len(seqs) + 1))
        types = [e["type"] for e in events]
        assert types[0] == "message_created"
        assert types[1] == "agent_started"
        assert types.index("tool_executing") < types.index("tool_completed")
        assert types.index("tool_completed") < types.index("partial_result")
        assert types[-2:] == ["agent_response", "agent_completed"]
        tool = next(e for e in events if e["type"] == "tool_completed")
        assert tool["payload"]["tool_name"] == "calculator"
        assert tool["payload"]["result"]["result"] == 84
        answer = "".join(e["payload"]["delta"] for e in events if e["type"] == "partial_result")
        response = next(e for e in events if e["type"] == "agent_response")
        assert "84" in answer and answer == response["payload"]["content"]
        done = events[-1]["payload"]
        assert done["status"] == "completed" and done["message_id"] == response["payload"]["message_id"]
        assert all(e["run_id"] == ack["payload"]["run_id"] for e in events[1:])
        # As docs/protocol.md §8 shows: the ack first, then the new thread and its first events.
        assert [f["type"] for f in frames[:4]] == [
            "message_ack", "thread_created", "message_created", "agent_started"]


def _token(server: ServerHandle, **claims: object) -> str:
    body = {"sub": "alice", "exp": int(time.time()) + 60, **claims}
    secret = server.tokens._secret
    assert secret is not None
    return jwt.encode(body, secret, algorithm="HS256")


@pytest.mark.parametrize(
    "make",
    [
        lambda s: "",
        lambda s: "not-a-jwt",
        lambda s: _token(s, exp=int(time.time()) - 3600),
        lambda s: jwt.encode({"sub": "alice", "exp": int(time.time()) + 60}, "wrong-secret-0123456789abcdef0123456789", algorithm="HS256"),
        lambda s: jwt.encode({"sub": "alice", "exp": int(time.time()) + 60}, None, algorithm="none"),
        lambda s: jwt.encode({"sub": "alice"}, s.tokens._secret, algorithm="HS256"),
    ],
    ids=["missing", "garbage", "expired", "wrong-signature", "alg-none", "no-exp"],
)
async def test_bad_tokens_are_closed_with_4001(server: ServerHandle, make: object) -> None:
    token = make(server)  # type: ignore[operator]
    code, _ = await refused(server, token)
    assert code == 4001


async def test_wrong_audience_is_closed_with_4001(server_factory: object) -> None:
    server = server_factory(jwt_audience="runwire-api")  # type: ignore[operator]
    assert (await refused(server, _token(server, aud="someone-else")))[0] == 4001
    async with RunwireClient.connect(server.ws_url, _token(server, aud="runwire-api")) as c:
        assert c.user_id == "alice"


async def test_bearer_header_authenticates(server: ServerHandle) -> None:
    async with RunwireClient.connect(server.ws_url, server.token("bob"), header_auth=True) as c:
        assert c.user_id == "bob"


async def test_forbidden_origin_is_closed_with_4003(server: ServerHandle) -> None:
    code, _ = await refused(server, server.token("alice"), origin="http://evil.example")
    assert code == 4003
    async with client(server, origin=server.base_url) as c:  # same origin is fine
        assert c.user_id == "alice"


async def test_fourth_connection_gets_4008_and_a_slot_frees_on_close(server: ServerHandle) -> None:
    async with client(server) as a, client(server) as b, client(server):
        assert (await refused(server, server.token("alice")))[0] == 4008
        async with client(server, "bob") as other:  # other users are not affected
            assert other.user_id == "bob"
        await a.close()
        await eventually(lambda: len(server.services.connections.of_user("alice")) == 2)
        async with client(server) as d:
            assert d.user_id == "alice"
        assert b.close_code is None


async def test_oversize_frame_closes_with_1009(server: ServerHandle) -> None:
    async with client(server) as c:
        await c.send("user_message", {"content": "x" * 70_000})
        code, _ = await c.wait_closed()
        assert code == 1009


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{oops", "invalid_json"),
        (json.dumps({"type": "teleport", "payload": {}}), "unknown_type"),
        (json.dumps({"type": "user_message", "payload": {"content": ""}, "request_id": "r9"}),
         "validation_error"),
    ],
)
async def test_bad_input_gets_error_and_connection_stays_usable(
    server: ServerHandle, raw: str, code: str
) -> None:
    async with client(server) as c:
        await c.send_raw(raw)
        err = await c.recv(timeout=5)
        assert err["type"] == "error" and err["payload"]["code"] == code
        await c.send("ping", request_id="after")
        pong = await c.recv(timeout=5)
        assert pong["type"] == "pong" and pong["payload"]["request_id"] == "after"
    assert server.call(lambda: count_rows(server, "messages", "threads", "runs")) == [0, 0, 0]


async def test_second_connection_of_the_user_receives_the_run(server: ServerHandle) -> None:
    async with client(server) as tab1, client(server) as tab2:
        ack, frames1 = await tab1.ask(QUESTION)
        thread_id = ack["payload"]["thread_id"]
        frames2 = await tab2.until(lambda f: f["type"] == "agent_completed")
        assert [e["seq"] for e in thread_events(frames2, thread_id)] == \
            [e["seq"] for e in thread_events(frames1, thread_id)]
        assert any(f["type"] == "thread_created" for f in frames2)


async def test_resent_message_id_is_a_duplicate_and_starts_no_second_run(server: ServerHandle) -> None:
    async with client(server) as c:
        ack, _ = await c.ask(QUESTION, message_id="m-fixed")
        await c.send("user_message", {"content": QUESTION, "message_id": "m-fixed"})
        dup = await c.until(lambda f: f["type"] == "message_ack")
        assert dup[-1]["payload"] == {**ack["payload"], "duplicate": True}
        # with the thread id too: still the same run
        await c.send("user_message", {"content": QUESTION, "message_id": "m-fixed",
                                      "thread_id": ack["payload"]["thread_id"]})
        dup2 = (await c.until(lambda f: f["type"] == "message_ack"))[-1]
        assert dup2["payload"]["run_id"] == ack["payload"]["run_id"]
    assert server.call(lambda: count_rows(server, "runs", "threads", "messages")) == [1, 1, 2]


async def test_user_b_cannot_see_or_touch_user_a_thread(server: ServerHandle) -> None:
    async with client(server, "alice") as a, client(server, "bob") as b:
        ack, _ = await a.ask(QUESTION)
        thread_id, run_id = ack["payload"]["thread_id"], ack["payload"]["run_id"]
        for type_, payload in [
            ("user_message", {"content": "hi", "thread_id": thread_id}),
            ("resume", {"thread_id": thread_id, "after_seq": 0}),
            ("stop_agent", {"run_id": run_id}),
            ("stop_agent", {"thread_id": thread_id}),
        ]:
            await b.send(type_, payload, request_id=type_)
            err = await b.recv(timeout=5)
            assert err["type"] == "error" and err["payload"]["code"] == "not_found", err
        # and bob never received any of alice's events
        await b.send("ping")
        assert (await b.recv(timeout=5))["type"] == "pong"


async def test_nothing_leaks_after_connections_close(server: ServerHandle) -> None:
    async with client(server) as c, client(server, "bob"):
        await c.ask(QUESTION)
    services = server.services
    await eventually(lambda: len(services.connections) == 0
                     and services.bus.subscriber_count() == 0  # type: ignore[attr-defined]
                     and not services.gateway._sessions and not services.gateway._inflight)
