"""HTTP runs and server-sent events (SPEC 8) against a real server, on SQLite and on
PostgreSQL + Redis: one code path with the WebSocket (same events, idempotency, limits,
owner scoping), resume with Last-Event-ID without gaps or duplicates, wait, no leaks."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from runwire.bus.memory import InMemoryBus

from .backends import BACKENDS, backend_server
from .conftest import ServerHandle
from .helpers import api, client, eventually, thread_events
from .sse import Sse, read_sse

QUESTION = "what is 12*(3+4)?"
TERMINAL = ("agent_completed", "agent_error")
SSE = {"Accept": "text/event-stream"}


@pytest.fixture(params=[pytest.param(b, marks=[pytest.mark.postgres] if b == "postgres" else [])
                        for b in BACKENDS])
async def srv(request: pytest.FixtureRequest,
              server_factory: Callable[..., ServerHandle]) -> AsyncIterator[ServerHandle]:
    async with backend_server(request.param, server_factory, builtin_delta_delay=0.01) as s:
        yield s


async def collect(response: httpx.Response, *, stop: Callable[[Sse], bool] | None = None,
                  timeout: float = 30) -> list[Sse]:
    """Events of an SSE response until it ends (or `stop` holds for one)."""
    got: list[Sse] = []
    async with asyncio.timeout(timeout):
        async for event in read_sse(response):
            got.append(event)
            if stop is not None and stop(event):
                break
    return got


async def test_post_run_answers_the_ack_and_a_resend_is_a_duplicate(srv: ServerHandle) -> None:
    async with client(srv) as tab, api(srv) as http:
        mid = str(uuid.uuid4())
        first = await http.post("/api/runs", json={"content": QUESTION, "message_id": mid})
        assert first.status_code == 202
        ack = first.json()
        assert ack["message_id"] == mid and ack["duplicate"] is False
        # the run started over HTTP shows live on the user's WebSocket
        frames = await tab.until(lambda f: f["type"] in TERMINAL and f["run_id"] == ack["run_id"])
        assert frames[-1]["type"] == "agent_completed"
        again = (await http.post("/api/runs", json={"content": QUESTION,
                                                    "message_id": mid})).json()
        assert again == {**ack, "duplicate": True}
        runs = (await http.get(f"/api/threads/{ack['thread_id']}/messages")).json()["items"]
        assert [m["role"] for m in runs] == ["user", "assistant"]  # no second run


async def test_sse_run_stream_equals_the_websockets_events_for_the_same_run(
    srv: ServerHandle,
) -> None:
    async with client(srv) as tab, api(srv) as http:
        async with http.stream("POST", "/api/runs", json={"content": QUESTION},
                               headers=SSE) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            streamed = await collect(response)  # ends by itself after the terminal event
        assert streamed[0].event == "message_created" and streamed[-1].event in TERMINAL
        thread_id = streamed[0].json()["thread_id"]
        frames = await tab.until(lambda f: f["type"] in TERMINAL and f["thread_id"] == thread_id)
        ws = thread_events(frames, thread_id)
        assert [e.json() for e in streamed] == ws
        assert [e.id for e in streamed] == [str(f["seq"]) for f in ws]
        assert [e.event for e in streamed] == [f["type"] for f in ws]


async def test_thread_stream_resumes_after_a_drop_without_gap_or_duplicate(
    server_factory: Callable[..., ServerHandle],
) -> None:
    srv = server_factory(builtin_delta_delay=0.03)
    async with api(srv) as http:
        ack = (await http.post("/api/runs", json={
            "content": "tell me a long story about a lighthouse keeper"})).json()
        url = f"/api/threads/{ack['thread_id']}/stream"
        async with http.stream("GET", url, params={"after_seq": 0}) as response:
            first = await collect(response, stop=lambda e: e.event == "partial_result")
        assert first[0].event == "message_created" and first[0].id == "1"
        last_id = first[-1].id
        assert last_id is not None
        async with http.stream("GET", url, headers={"Last-Event-ID": last_id}) as response:
            rest = await collect(response, stop=lambda e: e.event in TERMINAL)
        seqs = [int(e.id or 0) for e in first + rest]
        assert seqs == list(range(1, len(seqs) + 1)), "gap or duplicate"
        stored = (await http.get(f"/api/threads/{ack['thread_id']}/events")).json()
        assert [e["seq"] for e in stored["items"]] == seqs
        assert [e.json() for e in first + rest] == stored["items"]


async def test_wait_answers_the_final_text_and_usage(srv: ServerHandle) -> None:
    async with api(srv) as http:
        ack = (await http.post("/api/runs", json={"content": QUESTION})).json()
        done = (await http.get(f"/api/runs/{ack['run_id']}/wait", params={"timeout": 30})).json()
        assert done["status"] == "completed" and "84" in done["answer"]
        assert done["usage"] is not None and done["run_id"] == ack["run_id"]


async def test_wait_times_out_with_the_run_as_it_stands(
    server_factory: Callable[..., ServerHandle],
) -> None:
    srv = server_factory(builtin_delta_delay=1.0)
    async with api(srv) as http:
        ack = (await http.post("/api/runs", json={"content": QUESTION})).json()
        got = await http.get(f"/api/runs/{ack['run_id']}/wait", params={"timeout": 0.3})
        assert got.status_code == 200
        assert got.json()["status"] in ("queued", "running") and got.json()["answer"] is None
        for bad in ("0", "601", "x"):
            resp = await http.get(f"/api/runs/{ack['run_id']}/wait", params={"timeout": bad})
            assert resp.status_code == 422


async def test_owner_scoping_and_the_shared_message_rate_limit(
    server_factory: Callable[..., ServerHandle],
) -> None:
    srv = server_factory(rate_limit_messages="2/minute")
    async with api(srv) as http, api(srv, "mallory") as other, client(srv) as tab:
        ack = (await http.post("/api/runs", json={"content": QUESTION})).json()
        tid, rid = ack["thread_id"], ack["run_id"]
        assert (await other.get(f"/api/threads/{tid}/stream")).status_code == 404
        assert (await other.get(f"/api/runs/{rid}/wait")).status_code == 404
        resp = await other.post("/api/runs", json={"content": "hi", "thread_id": tid},
                                headers=SSE)
        assert resp.status_code == 404 and resp.headers["content-type"].startswith(
            "application/problem+json")
        # the second message of the minute goes over the WebSocket: the same limit
        ack2, _ = await tab.ask(QUESTION, thread_id=tid)
        assert ack2["type"] == "message_ack"
        limited = await http.post("/api/runs", json={"content": QUESTION})
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        for body in ({}, {"content": ""}, {"content": "x", "extra": 1},
                     {"content": "x", "thread_id": "bad id!"}):
            assert (await other.post("/api/runs", json=body)).status_code == 422


async def test_pruned_thread_stream_starts_with_replay_complete_false(
    server_factory: Callable[..., ServerHandle],
) -> None:
    srv = server_factory(event_retention_events=2)
    async with api(srv) as http:
        ack = (await http.post("/api/runs", json={"content": QUESTION})).json()
        await http.get(f"/api/runs/{ack['run_id']}/wait")
        assert srv.call(srv.services.prune_once) > 0
        url = f"/api/threads/{ack['thread_id']}/stream"
        async with http.stream("GET", url, params={"after_seq": 0}) as response:
            got = await collect(response, stop=lambda e: e.event in TERMINAL)
        assert got[0].event == "replay_complete" and got[0].json()["payload"]["complete"] is False
        assert got[0].id is None and [e.event for e in got[1:]][-1] in TERMINAL


async def test_idle_stream_gets_keepalive_comments(
    server_factory: Callable[..., ServerHandle],
) -> None:
    srv = server_factory(sse_keepalive=0.2)
    async with api(srv) as http:
        tid = (await http.post("/api/threads", json={})).json()["thread_id"]
        async with http.stream("GET", f"/api/threads/{tid}/stream") as response:
            async with asyncio.timeout(5):
                async for event in read_sse(response, comments=True):
                    assert event.comments == ["keep-alive"] and event.data == ""
                    break


async def test_a_dropped_stream_releases_its_subscription_and_tasks(
    server_factory: Callable[..., ServerHandle],
) -> None:
    srv = server_factory(builtin_delta_delay=0.05)
    bus = srv.services.bus
    assert isinstance(bus, InMemoryBus)

    def tasks() -> int:
        async def count() -> int:
            return len(asyncio.all_tasks())
        return srv.call(count)

    def names() -> list[str]:
        async def get() -> list[str]:
            return sorted(f"{t.get_name()} {t.get_coro()}" for t in asyncio.all_tasks())
        return srv.call(get)

    async with api(srv) as http:
        tid = (await http.post("/api/threads", json={})).json()["thread_id"]
        async with http.stream("GET", f"/api/threads/{tid}/stream") as response:
            await eventually(lambda: bus.has_subscribers("alice"))
        await eventually(lambda: not bus.has_subscribers("alice"))  # warm-up done
        baseline = tasks()
        before = names()
        run_ids = []
        for _ in range(3):
            async with http.stream("POST", "/api/runs", json={
                    "content": "a long story please", "thread_id": tid},
                    headers=SSE) as response:
                got = await collect(response, stop=lambda e: e.event == "partial_result")
                run_ids.append(got[-1].json()["run_id"])
            assert (await http.post(f"/api/runs/{run_ids[-1]}/cancel")).status_code == 202
            async with http.stream("GET", f"/api/threads/{tid}/stream") as response:
                await eventually(lambda: bus.has_subscribers("alice"))
            async with http.stream("GET", f"/api/runs/{uuid.uuid4()}/wait") as response:
                assert response.status_code == 404
        await eventually(lambda: not bus.has_subscribers("alice"))
        await eventually(lambda: srv.services.runs.scheduler.running == 0, timeout=10)
        try:
            await eventually(lambda: tasks() <= baseline, timeout=10)
        except AssertionError:
            print("BEFORE", "\n".join(before), "AFTER", "\n".join(names()), sep="\n")
            raise


async def test_a_resent_message_id_streams_the_original_run_from_the_log(
    srv: ServerHandle,
) -> None:
    async with api(srv) as http:
        mid = str(uuid.uuid4())
        async with http.stream("POST", "/api/runs", json={"content": QUESTION,
                                                          "message_id": mid},
                               headers=SSE) as response:
            first = await collect(response)
        async with http.stream("POST", "/api/runs", json={"content": QUESTION,
                                                          "message_id": mid},
                               headers=SSE) as response:
            again = await collect(response)
        assert [e.json() for e in again] == [e.json() for e in first]
        assert again[0].event == "message_created" and again[-1].event in TERMINAL
        thread = first[0].json()["thread_id"]
        messages = (await http.get(f"/api/threads/{thread}/messages")).json()["items"]
        assert [m["role"] for m in messages] == ["user", "assistant"]  # no second run
