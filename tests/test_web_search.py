"""The sidebar's search box in real Chromium: full-text search over the user's own
messages (GET /api/search), best match first; choosing a hit opens its thread."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from .conftest import ServerHandle
from .test_web import ask, browser, open_chat, page  # noqa: F401  (fixtures)

pytestmark = pytest.mark.browser


def test_search_box_finds_the_users_message_and_opens_its_thread(
    page: Any, server: ServerHandle,  # noqa: F811
) -> None:
    from playwright.sync_api import expect

    with httpx.Client(base_url=server.base_url,
                      headers={"Authorization": f"Bearer {server.token('bob')}"}) as bob:
        ack = bob.post("/api/runs", json={"content": "bob's pelican is secret"}).json()
        bob.get(f"/api/runs/{ack['run_id']}/wait")
    open_chat(page, server)
    messages = page.get_by_test_id("message")
    ask(page, "remember the pelicans on the pier")
    expect(page.get_by_test_id("run-status").last).to_have_attribute("data-status", "completed")
    page.get_by_test_id("new-thread").click()
    ask(page, "hello there")
    expect(page.get_by_test_id("run-status").last).to_have_attribute("data-status", "completed")
    expect(messages.first).to_contain_text("hello there")

    box = page.get_by_test_id("thread-search")
    box.fill("pelican")
    results = page.get_by_test_id("search-result")
    expect(results).to_have_count(1)  # alice's only; bob's never
    expect(results.first).to_contain_text("pelicans on the pier")
    expect(page.get_by_test_id("thread-list")).to_have_count(0)  # results replace the list
    results.first.click()
    expect(messages.first).to_contain_text("remember the pelicans on the pier")
    expect(box).to_have_value("")
    expect(page.get_by_test_id("thread-list")).to_be_visible()

    box.fill("zebra")
    expect(page.get_by_test_id("search-empty")).to_be_visible()
    box.press("Escape")
    expect(page.get_by_test_id("thread-item")).to_have_count(2)
