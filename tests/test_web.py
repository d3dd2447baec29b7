"""The chat page in real headless Chromium (Debian chromium driven by Playwright)."""

from __future__ import annotations

import os
import re
import shutil
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
    yield p
    context.close()


def open_chat(page: Any, server: ServerHandle, user: str = "alice") -> None:
    page.goto(f"{server.base_url}/#token={server.token(user)}")
    from playwright.sync_api import expect

    expect(page.get_by_test_id("connection-status")).to_have_attribute("data-state", "open")


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
    expect(page.get_by_test_id("thread-item")).to_have_count(1)
    tool.locator("summary").click()
    shot = Path(SCREENSHOT) if SCREENSHOT else tmp_path / "page.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000


def test_reload_shows_the_thread_history(page: Any, server: ServerHandle) -> None:
    from playwright.sync_api import expect

    open_chat(page, server)
    ask(page, "what is 6*7?")
    expect(page.locator('[data-role="assistant"]').last).to_contain_text("42")
    page.reload()
    expect(page.get_by_test_id("connection-status")).to_have_attribute("data-state", "open")
    page.get_by_test_id("thread-item").first.locator("button").click()
    expect(page.locator('[data-role="user"]').first).to_contain_text("what is 6*7?")
    expect(page.locator('[data-role="assistant"]').last).to_contain_text("42")
    expect(page.get_by_test_id("tool-call")).to_have_count(1)


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

    server = server_factory(builtin_delta_delay=0.15)
    open_chat(page, server)
    ask(page, "what is 12*(3+4)?")
    expect(page.get_by_test_id("tool-call").first).to_be_visible()
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
