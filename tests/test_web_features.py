"""The chat page's features around the messages, in real headless Chromium: highlighted
code with Copy, copy a message, regenerate, edit & re-run, light/dark theme, shortcuts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import ServerHandle
from .test_web import ask, browser, open_chat  # noqa: F401  (browser: a fixture)
from .test_web_page import DESKTOP, _context, answers, slow_run

pytestmark = pytest.mark.browser
DARK_BG, LIGHT_BG = "rgb(15, 17, 21)", "rgb(255, 255, 255)"


@pytest.fixture
def desk(browser: Any, server: ServerHandle) -> Iterator[Any]:  # noqa: F811
    context = _context(browser, viewport=DESKTOP, color_scheme="dark")
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.base_url)
    yield context.new_page()
    context.close()


def clipboard(page: Any) -> str:
    return str(page.evaluate("navigator.clipboard.readText()"))


def test_code_blocks_are_highlighted_and_copied_and_so_are_messages(
    desk: Any, server: ServerHandle,
) -> None:
    from playwright.sync_api import expect

    open_chat(desk, server)
    ask(desk, "hello")  # the demo's help ends with a bash block
    block = answers(desk).last.locator(".code-block")
    expect(block.locator("code.language-bash")).to_contain_text("RUNWIRE_MODEL=")
    assert block.locator("code [class^='hljs-']").count() > 0  # highlighted
    block.get_by_test_id("copy-code").click()
    expect(block.get_by_test_id("copy-code")).to_have_text("Copied")
    assert clipboard(desk) == ("export OPENAI_API_KEY=sk-...\n"
                               "RUNWIRE_MODEL=openai-chat:gpt-4o-mini runwire serve")
    desk.locator('[data-role="user"]').last.hover()
    desk.locator('[data-role="user"]').last.get_by_test_id("copy-message").click()
    assert clipboard(desk) == "hello"
    answers(desk).last.hover()
    answers(desk).last.get_by_test_id("copy-message").click()
    assert clipboard(desk).startswith("I'm runwire's **offline demo model**")


def test_regenerate_and_edit_run_again_and_keep_the_earlier_answers(
    desk: Any, server: ServerHandle,
) -> None:
    from playwright.sync_api import expect

    open_chat(desk, server)
    ask(desk, "what is 6*7?")
    expect(answers(desk).last).to_contain_text("42")
    expect(desk.get_by_test_id("regenerate")).to_have_count(1)  # on the last answer only
    answers(desk).last.hover()
    desk.get_by_test_id("regenerate").click()
    expect(answers(desk)).to_have_count(2)
    expect(answers(desk).last).to_contain_text("42")
    expect(desk.locator('[data-role="user"] .body')).to_have_text(["what is 6*7?", "what is 6*7?"])
    first = desk.locator('[data-role="user"]').first
    first.hover()
    first.get_by_test_id("edit-message").click()
    box = desk.get_by_test_id("composer-input")
    expect(box).to_have_value("what is 6*7?")
    expect(box).to_be_focused()
    box.fill("what is 6*8?")
    box.press("Enter")
    expect(answers(desk)).to_have_count(3)
    expect(answers(desk).last).to_contain_text("48")
    expect(answers(desk).first).to_contain_text("42")  # earlier answers stay
    expect(desk.get_by_test_id("thread-item")).to_have_count(1)  # the same thread


def _bg(page: Any) -> str:
    return str(page.evaluate("getComputedStyle(document.body).backgroundColor"))


def test_the_theme_follows_the_system_and_the_toggle_pins_the_other(
    browser: Any, server: ServerHandle,  # noqa: F811
) -> None:
    from playwright.sync_api import expect

    light = _context(browser, viewport=DESKTOP, color_scheme="light")
    dark = _context(browser, viewport=DESKTOP, color_scheme="dark")
    try:
        p = light.new_page()
        open_chat(p, server)
        assert _bg(p) == LIGHT_BG
        p.get_by_test_id("theme-toggle").click()
        assert _bg(p) == DARK_BG
        expect(p.get_by_test_id("theme-toggle")).to_have_attribute(
            "aria-label", "Switch to the light theme")
        p.reload()  # the pick is kept
        expect(p.get_by_test_id("connection-status")).to_have_attribute("data-state", "open")
        assert _bg(p) == DARK_BG
        q = dark.new_page()
        open_chat(q, server)
        assert _bg(q) == DARK_BG
    finally:
        light.close()
        dark.close()


def test_keyboard_shortcuts_and_their_help(desk: Any, server_factory: Any) -> None:
    from playwright.sync_api import expect

    slow_run(desk, server_factory)
    desk.get_by_test_id("thread-title").click()  # out of the message box
    desk.keyboard.press("?")
    help_box = desk.get_by_test_id("shortcuts")
    expect(help_box).to_be_visible()
    expect(help_box).to_contain_text("new chat")
    desk.keyboard.press("Escape")
    expect(help_box).to_have_count(0)
    desk.get_by_test_id("thread-title").click()
    desk.keyboard.press("/")
    expect(desk.get_by_test_id("composer-input")).to_be_focused()
    desk.keyboard.press("Control+Shift+S")  # stop the running answer
    expect(desk.get_by_test_id("run-status").last).to_have_attribute("data-status", "cancelled")
    desk.keyboard.press("Control+Shift+O")  # new chat
    expect(desk.get_by_test_id("thread-title")).to_have_text("New chat")
    expect(desk.get_by_test_id("composer-input")).to_be_focused()
    desk.get_by_test_id("shortcuts-button").click()
    expect(help_box).to_be_visible()


# ---- /docs without internet (issue #17, defect 11) -------------------------------------

def test_the_api_docs_work_without_internet(desk: Any, server: ServerHandle) -> None:
    from playwright.sync_api import expect

    foreign: list[str] = []

    def only_local(route: Any) -> None:
        if route.request.url.startswith(server.base_url):
            route.continue_()
        else:
            foreign.append(route.request.url)
            route.abort()

    desk.route("**/*", only_local)
    desk.goto(server.base_url + "/docs")
    expect(desk.locator(".swagger-ui .info .title")).to_contain_text("runwire")
    expect(desk.locator(".opblock-summary-path", has_text="/api/threads").first).to_be_visible()
    assert foreign == []
