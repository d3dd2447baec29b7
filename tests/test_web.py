"""The chat page in real headless Chromium (Debian chromium driven by Playwright)."""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import ServerHandle, missing_service

pytestmark = pytest.mark.browser
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# `make screenshot` sets this to docs/screenshot.png (the README's picture).
SCREENSHOT = os.environ.get("RUNWIRE_SCREENSHOT")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = shutil.which("chromium")
    if executable is None:
        missing_service("Debian chromium is not installed (make test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=executable, args=FLAGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1100, "height": 720})
    p = context.new_page()
    # Shown by pytest when a test fails: what the page said.
    p.on("console", lambda m: print(f"console.{m.type}: {m.text}"))
    p.on("pageerror", lambda e: print(f"pageerror: {e}"))
    p.on("websocket", lambda ws: (
        ws.on("framesent", lambda f: print(f"ws→ {str(f)[:160]}")),
        ws.on("framereceived", lambda f: print(f"ws← {str(f)[:160]}")),
    ))
    yield p
    context.close()


def open_chat(page: Any, server: ServerHandle, user: str = "alice") -> None:
    page.goto(f"{server.base_url}/#token={server.token(user)}")
    from playwright.sync_api import expect

    expect(page.get_by_test_id("connection-status")).to_have_attribute("data-state", "open")


def start_slow_run(page: Any, server_factory: Any, question: str, **settings: Any) -> ServerHandle:
    """A server pacing the demo model's output, the page open on it, and a run of `question`
    under way (its tool call shown; its answer still streaming)."""
    from playwright.sync_api import expect

    server: ServerHandle = server_factory(**settings)
    open_chat(page, server)
    ask(page, question)
    expect(page.get_by_test_id("tool-call").first).to_be_visible()
    return server


def ask(page: Any, text: str) -> None:
    page.get_by_test_id("composer-input").fill(text)
    page.get_by_test_id("composer-input").press("Enter")


def test_token_url_then_a_question_shows_the_tool_call_and_the_streamed_answer(
    page: Any, server: ServerHandle, tmp_path: Path,
) -> None:
    from playwright.sync_api import expect

    open_chat(page, server)
    assert "token=" not in page.url  # moved to sessionStorage
    expect(page.get_by_test_id("demo-badge")).to_be_visible()
    ask(page, "what is 12*(3+4)?")
    tool = page.get_by_test_id("tool-call").first
    expect(tool).to_contain_text("calculator")
    expect(tool).to_contain_text("✓")
    answer = page.locator('[data-testid="message"][data-role="assistant"]').last
    expect(answer).to_contain_text("84")
    expect(answer.locator("strong")).to_have_text("84")  # Markdown, rendered
    expect(page.get_by_test_id("thread-item")).to_have_count(1)
    expect(tool.locator("pre").first).not_to_be_visible()  # tool calls start collapsed
    tool.locator("summary").click()
    expect(tool.locator("pre").first).to_contain_text('"expression"')
    expect(tool.locator("pre").nth(1)).to_contain_text("84")
    # The README's pictures: dark (screenshot.png) and light (screenshot-light.png).
    shot = Path(SCREENSHOT) if SCREENSHOT else tmp_path / "page.png"
    for scheme, path in (("dark", shot), ("light", shot.with_name(f"{shot.stem}-light.png"))):
        page.emulate_media(color_scheme=scheme)
        expect(page.locator("body")).to_have_css(
            "background-color", "rgb(15, 17, 21)" if scheme == "dark" else "rgb(255, 255, 255)")
        page.screenshot(path=str(path))
        assert path.stat().st_size > 10_000


def test_reload_shows_the_thread_history(page: Any, server: ServerHandle) -> None:
    from playwright.sync_api import expect

    open_chat(page, server)
    ask(page, "what is 6*7?")
    expect(page.locator('[data-role="assistant"]').last).to_contain_text("42")
    page.reload()
    expect(page.get_by_test_id("connection-status")).to_have_attribute("data-state", "open")
    page.get_by_test_id("thread-item").first.locator("button.title").click()
    expect(page.locator('[data-role="user"]').first).to_contain_text("what is 6*7?")
    expect(page.locator('[data-role="assistant"]').last).to_contain_text("42")
    expect(page.get_by_test_id("tool-call")).to_have_count(1)
    # A browser that never saw the thread loads it from the server.
    other = page.context.browser.new_context()
    try:
        fresh = other.new_page()
        open_chat(fresh, server)
        fresh.get_by_test_id("thread-item").first.locator("button.title").click()
        expect(fresh.locator('[data-role="assistant"]').last).to_contain_text("42")
        expect(fresh.get_by_test_id("tool-call")).to_have_count(1)
    finally:
        other.close()


# Reads what the page keeps in IndexedDB (database `runwire:<user>`, store `timelines`).
CACHED_TEXT = """async ([db, text]) => {
  const open = indexedDB.open(db);
  const conn = await new Promise((ok, err) => { open.onsuccess = () => ok(open.result); open.onerror = err; });
  try {
    const req = conn.transaction("timelines").objectStore("timelines").getAll();
    const rows = await new Promise((ok, err) => { req.onsuccess = () => ok(req.result); req.onerror = err; });
    return rows.some((t) => t.items.some((i) => i.kind === "message" && i.role === "assistant"
                                              && !i.streaming && i.content.includes(text)));
  } finally { conn.close(); }
}"""


def wait_until_cached(page: Any, db: str, text: str, timeout: float = 10.0) -> None:
    """Poll IndexedDB (each check awaited in the page) until an answer with `text` is stored."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(CACHED_TEXT, [db, text]):
        assert time.monotonic() < deadline, f"no answer with {text!r} in IndexedDB {db}"
        page.wait_for_timeout(50)


def test_a_reload_shows_the_thread_from_the_browser_cache_without_the_server(
    page: Any, server: ServerHandle,
) -> None:
    from playwright.sync_api import expect

    open_chat(page, server)
    ask(page, "what is 6*7?")
    expect(page.locator('[data-role="assistant"]').last).to_contain_text("42")
    wait_until_cached(page, "runwire:alice", "42")
    # The thread's history can't come from the server now: only IndexedDB has it.
    page.route("**/api/threads/*/events*", lambda route: route.abort())
    page.route("**/api/threads/*/messages*", lambda route: route.abort())
    page.reload()
    expect(page.locator('[data-role="user"]').first).to_contain_text("what is 6*7?")
    expect(page.locator('[data-role="assistant"]').last).to_contain_text("42")
    expect(page.get_by_test_id("tool-call")).to_have_count(1)
    expect(page.get_by_test_id("connection-status")).to_have_attribute("data-state", "open")
    ask(page, "what is 6*8?")  # and it goes on live from there, nothing doubled
    expect(page.locator('[data-role="assistant"]').last).to_contain_text("48")
    expect(page.locator('[data-role="assistant"]')).to_have_count(2)
    expect(page.get_by_test_id("tool-call")).to_have_count(2)


def test_without_a_token_the_page_says_how_to_get_one(page: Any, server: ServerHandle) -> None:
    from playwright.sync_api import expect

    page.goto(server.base_url + "/")
    gate = page.get_by_test_id("token-state")
    expect(gate).to_be_visible()
    expect(gate).to_contain_text("runwire token --user")


def test_an_invalid_token_shows_the_expired_state(page: Any, server: ServerHandle) -> None:
    from playwright.sync_api import expect

    page.goto(f"{server.base_url}/#token=not.a.token")
    expect(page.get_by_test_id("token-message")).to_have_text(re.compile("invalid or has expired"))


def test_offline_in_the_middle_of_a_run_then_back_shows_the_answer_once(
    page: Any, server_factory: Any,
) -> None:
    from playwright.sync_api import expect

    start_slow_run(page, server_factory, "what is 12*(3+4)?", builtin_delta_delay=0.15)
    page.context.set_offline(True)
    expect(page.get_by_test_id("connection-status")).not_to_have_attribute("data-state", "open")
    page.context.set_offline(False)
    expect(page.get_by_test_id("connection-status")).to_have_attribute("data-state", "open",
                                                                         timeout=30_000)
    answer = page.locator('[data-role="assistant"]')
    expect(answer.last).to_contain_text("84", timeout=30_000)
    expect(answer).to_have_count(1)
    text = answer.last.inner_text()
    assert text.count("84") == 1, text


def test_a_message_sent_offline_is_delivered_once_when_back(
    page: Any, server: ServerHandle,
) -> None:
    from playwright.sync_api import expect

    open_chat(page, server)
    page.context.set_offline(True)
    expect(page.get_by_test_id("connection-status")).not_to_have_attribute("data-state", "open")
    ask(page, "what is 5*5?")
    queued = page.locator('[data-role="user"]').last
    expect(queued).to_have_attribute("data-state", "queued")
    page.context.set_offline(False)
    expect(page.locator('[data-role="assistant"]').last).to_contain_text("25", timeout=30_000)
    expect(page.locator('[data-role="user"]')).to_have_count(1)
    assert server.call(lambda: _count_user_messages(server)) == 1


async def _count_user_messages(server: ServerHandle) -> int:
    from sqlalchemy import text

    async with server.services.db.read() as session:
        return int((await session.execute(
            text("SELECT count(*) FROM messages WHERE role = 'user'"))).scalar_one())


def test_an_expired_token_says_how_to_get_a_new_one(page: Any, server: ServerHandle) -> None:
    from playwright.sync_api import expect

    page.goto(f"{server.base_url}/#token={server.token('alice', ttl=-60)}")
    expect(page.get_by_test_id("token-message")).to_have_text(re.compile("expired"))
    expect(page.get_by_test_id("token-state")).to_contain_text("runwire token --user")
    assert "token=" not in page.url


def test_stop_ends_the_run_as_stopped(page: Any, server_factory: Any) -> None:
    from playwright.sync_api import expect

    start_slow_run(page, server_factory, "what time is it in Tokyo?", builtin_delta_delay=0.3)
    page.get_by_test_id("stop-button").click()
    run = page.get_by_test_id("run-status").last
    expect(run).to_have_attribute("data-status", "cancelled")
    expect(run).to_have_text("Stopped.")
    expect(page.get_by_test_id("stop-button")).to_have_count(0)


def test_a_run_waiting_for_a_free_slot_shows_its_queue_position(
    page: Any, server_factory: Any,
) -> None:
    from playwright.sync_api import expect

    server = server_factory(builtin_delta_delay=0.25, max_concurrent_agents=1)
    open_chat(page, server)
    ask(page, "what time is it in Tokyo?")
    expect(page.get_by_test_id("thread-item")).to_have_count(1)
    page.get_by_test_id("new-thread").click()
    ask(page, "what is 2+3?")
    expect(page.get_by_test_id("queue-position")).to_have_text("Queued (position 1)")
    expect(page.locator('[data-role="assistant"]').last).to_contain_text("5", timeout=30_000)
    expect(page.get_by_test_id("run-status").last).to_have_attribute("data-status", "completed")


def test_rename_delete_and_runs_follow_in_a_second_tab(browser: Any, server: ServerHandle) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1100, "height": 720})
    try:
        first, second = context.new_page(), context.new_page()
        open_chat(first, server)
        first.bring_to_front()
        ask(first, "what is 2+2?")
        expect(first.locator('[data-role="assistant"]').last).to_contain_text("4")
        second.bring_to_front()
        open_chat(second, server)
        expect(second.get_by_test_id("thread-item")).to_have_count(1)
        second.get_by_test_id("thread-item").first.locator("button.title").click()
        expect(second.locator('[data-role="assistant"]').last).to_contain_text("4")

        first.bring_to_front()
        ask(first, "what is 3*3?")  # a run started in one tab streams into the other
        expect(second.locator('[data-role="assistant"]').last).to_contain_text("9")
        expect(second.locator('[data-role="user"]')).to_have_count(2)

        first.get_by_test_id("thread-rename").first.click()
        first.get_by_test_id("thread-rename-input").fill("Arithmetic")
        first.get_by_test_id("thread-rename-input").press("Enter")
        expect(first.get_by_test_id("thread-item").first).to_contain_text("Arithmetic")
        expect(second.get_by_test_id("thread-item").first).to_contain_text("Arithmetic")
        expect(second.get_by_test_id("thread-title")).to_have_text("Arithmetic")

        first.get_by_test_id("thread-delete").first.click()
        first.get_by_test_id("thread-delete-confirm").click()
        expect(first.get_by_test_id("thread-item")).to_have_count(0)
        expect(second.get_by_test_id("thread-item")).to_have_count(0)
        expect(second.get_by_test_id("thread-title")).to_have_text("New chat")
    finally:
        context.close()


def test_a_server_restart_in_the_middle_of_a_run_reconnects_and_shows_how_it_ended(
    page: Any, server_factory: Any,
) -> None:
    from playwright.sync_api import expect

    server = start_slow_run(page, server_factory, "what time is it in Tokyo?",
                            builtin_delta_delay=0.3, shutdown_grace=0.2)
    server_factory(replacing=server)  # SIGTERM's path, then a new server on the same port
    status = page.get_by_test_id("connection-status")
    expect(status).to_have_attribute("data-state", "open", timeout=30_000)
    run = page.get_by_test_id("run-status").first
    expect(run).to_have_attribute("data-status", "failed")
    expect(run).to_contain_text("shut down")
    ask(page, "what is 2+3?")  # the new server serves the same thread
    expect(page.locator('[data-role="assistant"]').last).to_contain_text("5", timeout=30_000)
    expect(page.get_by_test_id("run-status")).to_have_count(2)


def test_on_a_phone_the_threads_open_from_the_menu(browser: Any, server: ServerHandle) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 390, "height": 800})
    try:
        phone = context.new_page()
        open_chat(phone, server)
        expect(phone.get_by_test_id("new-thread")).not_to_be_in_viewport()
        phone.get_by_test_id("menu").click()
        expect(phone.get_by_test_id("new-thread")).to_be_in_viewport()
        phone.get_by_test_id("new-thread").click()
        expect(phone.get_by_test_id("new-thread")).not_to_be_in_viewport()
        ask(phone, "what is 6*7?")
        expect(phone.locator('[data-role="assistant"]').last).to_contain_text("42")
    finally:
        context.close()
