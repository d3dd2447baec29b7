"""REST under /api against a real server: owner scoping, pagination, problem details."""

from __future__ import annotations

import httpx

from .conftest import ServerHandle
from .helpers import api, client

QUESTION = "what is 12*(3+4)?"


async def test_api_requires_a_valid_bearer_token(server: ServerHandle) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic x"}):
            r = await http.get("/api/threads", headers=headers)
            assert r.status_code == 401
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.json()["status"] == 401 and r.json()["code"] == "unauthorized"


async def test_public_paths_need_no_token(server: ServerHandle) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        ready = await http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["components"]["database"] == "ok"
        assert (await http.get("/openapi.json")).status_code == 200
        assert (await http.get("/docs")).status_code == 200


async def test_the_page_is_served_with_a_strict_csp_and_cache_headers(server: ServerHandle) -> None:
    import re

    async with httpx.AsyncClient(base_url=server.base_url) as http:
        page = await http.get("/")
        assert page.status_code == 200
        assert page.headers["cache-control"] == "no-cache"  # a new build shows at once
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "connect-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assets = re.findall(r'(?:src|href)="(/assets/[^"]+)"', page.text)
        assert assets, page.text
        for path in assets:
            asset = await http.get(path)
            assert asset.status_code == 200
            assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
            assert asset.headers["x-content-type-options"] == "nosniff"


async def test_thread_messages_events_and_run_of_a_conversation(server: ServerHandle) -> None:
    async with client(server) as c:
        ack, _ = await c.ask(QUESTION)
    thread_id, run_id = ack["payload"]["thread_id"], ack["payload"]["run_id"]
    async with api(server) as http:
        threads = (await http.get("/api/threads")).json()
        assert [t["thread_id"] for t in threads["items"]] == [thread_id]
        assert threads["items"][0]["title"] == QUESTION
        messages = (await http.get(f"/api/threads/{thread_id}/messages")).json()["items"]
        assert [m["role"] for m in messages] == ["user", "assistant"]
        assert messages[0]["content"] == QUESTION and "84" in messages[1]["content"]
        events = (await http.get(f"/api/threads/{thread_id}/events", params={"after_seq": 2})).json()
        assert [e["seq"] for e in events["items"]] == list(range(3, events["last_seq"] + 1))
        assert events["items"][-1]["type"] == "agent_completed"
        run = (await http.get(f"/api/runs/{run_id}")).json()
        assert run["status"] == "completed" and run["thread_id"] == thread_id


async def test_another_users_ids_answer_404(server: ServerHandle) -> None:
    async with client(server, "alice") as c:
        ack, _ = await c.ask(QUESTION)
    thread_id, run_id = ack["payload"]["thread_id"], ack["payload"]["run_id"]
    async with api(server, "mallory") as http:
        assert (await http.get("/api/threads")).json()["items"] == []
        for method, path in [
            ("GET", f"/api/threads/{thread_id}"),
            ("GET", f"/api/threads/{thread_id}/messages"),
            ("GET", f"/api/threads/{thread_id}/events"),
            ("GET", f"/api/runs/{run_id}"),
            ("POST", f"/api/runs/{run_id}/cancel"),
            ("DELETE", f"/api/threads/{thread_id}"),
        ]:
            r = await http.request(method, path)
            assert r.status_code == 404, (method, path)
            assert r.json()["code"] == "not_found"
        r = await http.patch(f"/api/threads/{thread_id}", json={"title": "mine now"})
        assert r.status_code == 404
    async with api(server, "alice") as http:
        assert (await http.get(f"/api/threads/{thread_id}")).json()["title"] == QUESTION


async def test_threads_paginate_with_a_cursor(server: ServerHandle) -> None:
    async with api(server) as http:
        made = [(await http.post("/api/threads", json={"title": f"t{i}"})).json()["thread_id"]
                for i in range(5)]
        seen: list[str] = []
        cursor = None
        while True:
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = (await http.get("/api/threads", params=params)).json()
            seen += [t["thread_id"] for t in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert sorted(seen) == sorted(made) and len(seen) == 5


async def test_bad_bodies_get_problem_details_and_change_nothing(server: ServerHandle) -> None:
    async with api(server) as http:
        for body in ({"title": ""}, {"title": "x" * 500}, {"nope": 1}):
            r = await http.post("/api/threads", json=body)
            assert r.status_code == 422, body
            assert r.json()["code"] == "validation_error" and r.json()["detail"]
        r = await http.get("/api/threads", params={"limit": 501})
        assert r.status_code == 422
        assert (await http.get("/api/threads")).json()["items"] == []


async def test_rename_and_delete_reach_other_tabs(server: ServerHandle) -> None:
    async with client(server) as tab, api(server) as http:
        created = (await http.post("/api/threads", json={"title": "draft"})).json()
        tid = created["thread_id"]
        assert (await tab.until(lambda f: f["type"] == "thread_created"))[-1]["payload"]["thread_id"] == tid
        assert (await http.patch(f"/api/threads/{tid}", json={"title": "final"})).status_code == 200
        upd = (await tab.until(lambda f: f["type"] == "thread_updated"))[-1]
        assert upd["payload"] == {"thread_id": tid, "title": "final"}
        assert (await http.delete(f"/api/threads/{tid}")).status_code == 204
        gone = (await tab.until(lambda f: f["type"] == "thread_deleted"))[-1]
        assert gone["payload"] == {"thread_id": tid}
        assert (await http.get(f"/api/threads/{tid}")).status_code == 404
