"""``GET /api/search`` on a real server, SQLite and PostgreSQL + Redis: words of user and
assistant messages of the caller only, best match first, paged; the builtin
``search_threads`` tool finds the same."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from .backends import BACKENDS, backend_server
from .conftest import ServerHandle
from .helpers import api, client


@pytest.fixture(params=[pytest.param(b, marks=[pytest.mark.postgres] if b == "postgres" else [])
                        for b in BACKENDS])
async def srv(request: pytest.FixtureRequest,
              server_factory: Callable[..., ServerHandle]) -> AsyncIterator[ServerHandle]:
    async with backend_server(request.param, server_factory) as server:
        yield server


async def test_search_finds_user_and_assistant_words_of_the_caller_only(
    srv: ServerHandle,
) -> None:
    async with client(srv) as alice, client(srv, "bob") as bob, api(srv) as http, \
            api(srv, "bob") as bob_http:
        ack, _ = await alice.ask("what is 12*(3+4)? my pelican wants to know")
        tid = ack["payload"]["thread_id"]
        await bob.ask("my pelican is secret")
        found = (await http.get("/api/search", params={"q": "pelicans"})).json()
        assert [(i["thread_id"], i["role"]) for i in found["items"]] == [(tid, "user")]
        item = found["items"][0]
        assert "pelican" in item["snippet"] and item["thread_title"]
        assert item["message_id"] == ack["payload"]["message_id"]
        # the builtin model answers "... 84": an assistant message, searchable at once
        answer = (await http.get("/api/search", params={"q": "84"})).json()["items"]
        assert [i["role"] for i in answer] == ["assistant"]
        mine = (await bob_http.get("/api/search", params={"q": "pelican"})).json()["items"]
        assert len(mine) == 1 and "pelican is secret" in mine[0]["snippet"]


async def test_search_pages_best_match_first_and_rejects_bad_input(srv: ServerHandle) -> None:
    async with client(srv) as c, api(srv) as http:
        for text in ("otter", "otter otter otter swims", "a note on otter"):
            await c.ask(text)
        first = (await http.get("/api/search", params={"q": "otter", "limit": 2})).json()
        assert len(first["items"]) == 2 and first["next_cursor"]
        assert first["items"][0]["snippet"].count("otter") >= 2  # best match first
        rest = (await http.get("/api/search", params={"q": "otter", "limit": 2,
                                                      "cursor": first["next_cursor"]})).json()
        ids = [i["message_id"] for i in first["items"] + rest["items"]]
        assert len(ids) == len(set(ids)) == 3 and rest["next_cursor"] is None
        assert (await http.get("/api/search", params={"q": ""})).status_code == 422
        assert (await http.get("/api/search", params={"q": "x" * 201})).status_code == 422
        bad = await http.get("/api/search", params={"q": "otter", "cursor": "!!"})
        assert bad.status_code in (400, 404, 422)
        weird = await http.get("/api/search", params={"q": '" OR * NEAR( -'})
        assert weird.status_code == 200 and weird.json()["items"] == []


async def test_search_threads_tool_uses_the_full_text_index(srv: ServerHandle) -> None:
    async with client(srv) as c:
        await c.ask("remember the flamingos")
        _, frames = await c.ask("find flamingo in my threads")
    results = [f["payload"] for f in frames if f["type"] == "tool_completed"
               and f["payload"]["tool_name"] == "search_threads"]
    assert results, "the builtin model did not call search_threads"
    snippets = [hit["snippet"] for hit in results[0]["result"]]
    assert any("flamingos" in s for s in snippets)  # stemmed: flamingo → flamingos
