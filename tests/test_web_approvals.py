"""The chat page's approval card (SPEC 7) in real headless Chromium: approve with edited
arguments, deny with a reason, the card resolved in a second tab at once, a reload while
the run waits keeps the card, and the thread list says which thread waits."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import ServerHandle
from .test_web import ask, browser, open_chat  # noqa: F401  (browser: a fixture)

pytestmark = pytest.mark.browser


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:  # noqa: F811
    ctx = browser.new_context(viewport={"width": 1100, "height": 760})
    ctx.on("page", lambda p: p.on("pageerror", lambda e: print(f"pageerror: {e}")))
    yield ctx
    ctx.close()


def answers(page: Any) -> Any:
    return page.locator('[data-testid="message"][data-role="assistant"]')


def test_approve_with_edited_arguments_in_one_tab_resolves_the_card_in_the_other(
    context: Any, server: ServerHandle,
) -> None:
    from playwright.sync_api import expect

    one = context.new_page()
    open_chat(one, server)
    ask(one, "notify bob: the build is green")
    card = one.get_by_test_id("approval")
    expect(card).to_have_attribute("data-status", "pending")
    expect(card).to_contain_text("send_notification")
    expect(one.get_by_test_id("run-status").last).to_have_attribute("data-status", "waiting")
    expect(one.get_by_test_id("run-status").last).to_contain_text("Waiting for your approval")
    expect(one.get_by_test_id("thread-waiting")).to_have_count(1)  # live: approval_required
    # A second tab on the same thread shows the same card.
    two = context.new_page()
    two.goto(server.base_url + "/")
    expect(two.get_by_test_id("connection-status")).to_have_attribute("data-state", "open")
    expect(two.get_by_test_id("thread-waiting")).to_have_count(1)  # loaded: GET /api/approvals
    two.locator(".threads li").first.click()
    expect(two.get_by_test_id("approval")).to_have_attribute("data-status", "pending")
    # Invalid JSON is refused on the card; nothing is sent.
    args = one.get_by_test_id("approval-args")
    args.fill("{not json")
    one.get_by_test_id("approve").click()
    expect(one.get_by_test_id("approval-problem")).to_contain_text("not valid JSON")
    # Arguments that do not fit the tool: the server's validation_error, the card stays.
    args.fill('{"to": "carol"}')
    one.get_by_test_id("approve").click()
    expect(one.get_by_test_id("approval-problem")).to_contain_text("invalid arguments")
    expect(card).to_have_attribute("data-status", "pending")
    args.fill('{"to": "carol", "text": "edited on the page"}')
    one.get_by_test_id("approve").click()
    for page in (one, two):
        resolved = page.get_by_test_id("approval")
        expect(resolved).to_have_attribute("data-status", "approved")
        expect(resolved).to_contain_text("with edited arguments")
        expect(page.get_by_test_id("run-status").last).to_have_attribute("data-status", "completed")
        expect(answers(page).last).to_contain_text("Sent the notification to carol")
        expect(page.get_by_test_id("thread-waiting")).to_have_count(0)
    tool = one.get_by_test_id("tool-call").last
    tool.locator("summary").click()
    expect(tool).to_contain_text("edited on the page")


def test_deny_with_a_reason_and_reload_while_waiting_keeps_the_card(
    context: Any, server: ServerHandle,
) -> None:
    from playwright.sync_api import expect

    page = context.new_page()
    open_chat(page, server)
    ask(page, "notify bob: lunch at noon")
    expect(page.get_by_test_id("approval")).to_have_attribute("data-status", "pending")
    page.reload()
    expect(page.get_by_test_id("connection-status")).to_have_attribute("data-state", "open")
    card = page.get_by_test_id("approval")
    expect(card).to_have_attribute("data-status", "pending")
    page.get_by_test_id("approval-reason").fill("not today")
    page.get_by_test_id("deny").click()
    expect(card).to_have_attribute("data-status", "denied")
    expect(card).to_contain_text("not today")
    expect(page.get_by_test_id("run-status").last).to_have_attribute("data-status", "completed")
    expect(answers(page).last).to_contain_text("did not send the notification to bob: denied: not today")
