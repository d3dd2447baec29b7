"""The chat page's everyday paths in real headless Chromium, at desktop (1280×800) and phone
(390×844) sizes: scrolling, links in new tabs, offline / server down / signed out, stop,
retry, the composer on a touch screen, /docs without internet, accessibility (axe-core)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import ServerHandle, missing_service
from .test_web import ask, browser, open_chat  # noqa: F401  (browser: a fixture)

pytestmark = pytest.mark.browser
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
AXE = Path(__file__).parent.parent / "clients/js/node_modules/axe-core/axe.min.js"


def _context(chromium: Any, **options: Any) -> Any:
    context = chromium.new_context(**options)
    context.on("page", lambda p: (
        p.on("console", lambda m: print(f"console.{m.type}: {m.text}")),
        p.on("pageerror", lambda e: print(f"pageerror: {e}")),
    ))
    return context


@pytest.fixture
def desk(browser: Any) -> Iterator[Any]:  # noqa: F811
    context = _context(browser, viewport=DESKTOP)
    yield context.new_page()
    context.close()


@pytest.fixture
def phone(browser: Any) -> Iterator[Any]:  # noqa: F811
    context = _context(browser, viewport=PHONE, is_mobile=True, has_touch=True,
                       device_scale_factor=3)
    yield context.new_page()
    context.close()


def answers(page: Any) -> Any:
    return page.locator('[data-testid="message"][data-role="assistant"]')


def slow_run(page: Any, server_factory: Any, question: str = "what time is it in Tokyo?",
             **settings: Any) -> ServerHandle:
    """A server pacing the demo model's output, the page open, `question` answering."""
    from playwright.sync_api import expect

    server: ServerHandle = server_factory(builtin_delta_delay=0.3, **settings)
    open_chat(page, server)
    ask(page, question)
    expect(page.get_by_test_id("tool-call").first).to_be_visible()
    expect(answers(page).last).to_have_attribute("data-state", "streaming")
    return server


# ---- 1. jump to latest --------------------------------------------------------------------

@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_sending_while_scrolled_up_shows_the_new_message_and_jump_to_latest(
    request: Any, server: ServerHandle, size: str,
) -> None:
    from playwright.sync_api import expect

    desk = request.getfixturevalue("desk" if size == "desktop" else "phone")
    open_chat(desk, server)
    for n in range(4):  # the demo's help text is long: the timeline overflows
        ask(desk, f"hello {n}")
        expect(answers(desk)).to_have_count(n + 1)
        expect(desk.get_by_test_id("run-status").last).to_have_attribute("data-status", "completed")
    timeline = desk.get_by_test_id("timeline")
    expect(answers(desk).last).to_be_in_viewport()
    timeline.evaluate("el => { el.scrollTop = 0; el.dispatchEvent(new Event('scroll')); }")
    jump = desk.get_by_test_id("jump-latest")
    expect(jump).to_be_visible()
    expect(answers(desk).last).not_to_be_in_viewport()
    jump.click()
    expect(answers(desk).last).to_be_in_viewport()
    expect(jump).to_have_count(0)
    # Scrolled up again, a new question brings the view down to it and its answer.
    timeline.evaluate("el => { el.scrollTop = 0; el.dispatchEvent(new Event('scroll')); }")
    expect(jump).to_be_visible()
    ask(desk, "what is 2+2?")
    expect(desk.locator('[data-role="user"]').last).to_be_in_viewport()
    expect(answers(desk).last).to_contain_text("4")
    expect(answers(desk).last).to_be_in_viewport()


# ---- 2. a thread link in a new tab -----------------------------------------------------

def test_a_thread_link_opened_in_a_new_tab_is_signed_in_and_shows_the_thread(
    desk: Any, server: ServerHandle,
) -> None:
    from playwright.sync_api import expect

    open_chat(desk, server)
    ask(desk, "what is 6*7?")
    expect(answers(desk).last).to_contain_text("42")
    link = desk.url
    assert "#thread=" in link and "token" not in link
    tab = desk.context.new_page()  # what a middle-click or a pasted link opens
    tab.goto(link)
    expect(tab.get_by_test_id("connection-status")).to_have_attribute("data-state", "open")
    expect(answers(tab).last).to_contain_text("42")
    expect(tab.get_by_test_id("token-state")).to_have_count(0)
    # A bad login link in a third tab says so there but signs the others out of nothing.
    bad = desk.context.new_page()
    bad.goto(f"{server.base_url}/#token=not.a.token")
    expect(bad.get_by_test_id("token-message")).to_contain_text("invalid")
    tab.reload()
    expect(answers(tab).last).to_contain_text("42")
    expect(tab.get_by_test_id("connection-status")).to_have_attribute("data-state", "open")


# ---- 3. offline / server unreachable, on a phone -----------------------------------------

def test_on_a_phone_offline_mid_answer_pauses_it_and_the_banner_offers_retry_now(
    phone: Any, server_factory: Any,
) -> None:
    from playwright.sync_api import expect

    slow_run(phone, server_factory)
    phone.context.set_offline(True)
    banner = phone.get_by_test_id("conn-banner")
    expect(banner).to_have_attribute("data-kind", "offline")
    expect(banner).to_be_in_viewport()  # in the main pane, not behind the ☰ menu
    expect(answers(phone).last).to_have_attribute("data-state", "paused")
    expect(phone.get_by_test_id("run-status").last).to_contain_text("waiting for the connection")
    phone.get_by_test_id("banner-retry").click()  # still offline: says so again
    expect(banner).to_have_attribute("data-kind", "offline")
    phone.context.set_offline(False)
    expect(banner).to_have_count(0, timeout=30_000)
    expect(answers(phone).last).to_contain_text("Tokyo", timeout=30_000)
    expect(phone.get_by_test_id("run-status").last).to_have_attribute("data-status", "completed",
                                                                       timeout=30_000)


def test_server_down_is_told_apart_from_offline_and_retry_now_reconnects(
    desk: Any, server: ServerHandle,
) -> None:
    from playwright.sync_api import expect

    open_chat(desk, server)
    server.stop()
    banner = desk.get_by_test_id("conn-banner")
    expect(banner).to_have_attribute("data-kind", "unreachable", timeout=15_000)
    expect(banner).to_contain_text("server can't be reached")
    restarted = ServerHandle(server.settings, port=server.port).start()
    try:
        # "Retry now" opens a socket at once, not after the backoff's wait (Chromium may
        # still hold the connection back a little after failed attempts to this port).
        with desk.expect_websocket(timeout=1_000):
            desk.get_by_test_id("banner-retry").click()
        expect(desk.get_by_test_id("connection-status")).to_have_attribute(
            "data-state", "open", timeout=15_000)
        expect(banner).to_have_count(0)
    finally:
        restarted.stop()


# ---- 4, 5. stop ------------------------------------------------------------------------------

def test_stop_pressed_offline_is_queued_and_sent_when_back(
    desk: Any, server_factory: Any,
) -> None:
    from playwright.sync_api import expect

    slow_run(desk, server_factory)
    desk.context.set_offline(True)
    expect(desk.get_by_test_id("conn-banner")).to_have_attribute("data-kind", "offline")
    desk.get_by_test_id("stop-button").click()
    expect(desk.get_by_test_id("stop-queued")).to_be_visible()
    expect(desk.get_by_test_id("stop-button")).to_have_text("Stopping…")
    expect(desk.get_by_test_id("stop-button")).to_be_disabled()
    desk.context.set_offline(False)
    run = desk.get_by_test_id("run-status").last
    expect(run).to_have_attribute("data-status", "cancelled", timeout=30_000)
    expect(desk.get_by_test_id("announce")).to_have_text("The answer was stopped.")


def test_stop_cancels_the_current_run_not_the_follow_up_queued_behind_it(
    desk: Any, server_factory: Any,
) -> None:
    from playwright.sync_api import expect

    slow_run(desk, server_factory)
    expect(desk.get_by_test_id("timeline")).to_have_attribute("aria-busy", "true")
    ask(desk, "what is 2+3?")  # queued behind the running one (multitask: enqueue)
    expect(desk.get_by_test_id("run-status")).to_have_count(2)
    desk.get_by_test_id("stop-button").click()
    runs = desk.get_by_test_id("run-status")
    expect(runs.first).to_have_attribute("data-status", "cancelled")
    expect(answers(desk).last).to_contain_text("5", timeout=30_000)
    expect(runs.last).to_have_attribute("data-status", "completed", timeout=30_000)
    expect(desk.get_by_test_id("timeline")).to_have_attribute("aria-busy", "false")


# ---- 6. retry a retryable failure ------------------------------------------------------------

def test_a_run_failed_with_a_retryable_error_has_a_retry_button(
    desk: Any, server_factory: Any,
) -> None:
    from playwright.sync_api import expect

    server = slow_run(desk, server_factory, shutdown_grace=0.2)
    server_factory(replacing=server)  # the run ends "internal … shut down", retryable
    run = desk.get_by_test_id("run-status").first
    expect(run).to_have_attribute("data-status", "failed", timeout=30_000)
    run.get_by_test_id("retry-run").click()
    expect(desk.locator('[data-role="user"]')).to_have_count(2)
    expect(desk.locator('[data-role="user"] .body').last).to_have_text(
        "what time is it in Tokyo?")
    last = desk.get_by_test_id("run-status").last
    expect(last).to_have_attribute("data-status", "completed", timeout=30_000)
    expect(answers(desk).last).to_contain_text("Tokyo")
    expect(desk.get_by_test_id("run-status").first).to_have_attribute("data-status", "failed")


# ---- 7. a token expiring while the page is open ----------------------------------------------

def test_a_token_expiring_while_open_signs_out_with_a_banner_and_sign_in_again(
    desk: Any, server: ServerHandle,
) -> None:
    from playwright.sync_api import expect

    desk.goto(f"{server.base_url}/#token={server.token('alice', ttl=3)}")
    expect(desk.get_by_test_id("connection-status")).to_have_attribute("data-state", "open")
    banner = desk.get_by_test_id("conn-banner")
    expect(banner).to_have_attribute("data-kind", "signed-out", timeout=10_000)
    expect(desk.get_by_test_id("composer-input")).to_be_disabled()
    expect(desk.get_by_text("could not load")).to_have_count(0)
    desk.get_by_test_id("banner-token-input").fill(
        f"{server.base_url}/#token={server.token('alice')}")
    desk.get_by_test_id("banner-token-input").press("Enter")
    expect(desk.get_by_test_id("connection-status")).to_have_attribute("data-state", "open")
    expect(banner).to_have_count(0)
    ask(desk, "what is 2+2?")
    expect(answers(desk).last).to_contain_text("4")


def test_a_token_the_server_stops_accepting_signs_out_on_4001(
    desk: Any, server_factory: Any,
) -> None:
    from playwright.sync_api import expect

    server: ServerHandle = server_factory(jwt_secret="a" * 40)
    open_chat(desk, server)
    server.stop()  # back with another secret: the page's token is refused (4001)
    rotated = server.settings.model_copy(update={"jwt_secret": "b" * 40})
    restarted = ServerHandle(rotated, port=server.port).start()
    try:
        banner = desk.get_by_test_id("conn-banner")
        expect(banner).to_have_attribute("data-kind", "signed-out", timeout=30_000)
        expect(desk.get_by_test_id("connection-status")).to_have_attribute("data-code", "4001")
        expect(desk.get_by_test_id("composer-input")).to_be_disabled()
        desk.get_by_test_id("banner-token-input").fill(restarted.token("alice"))
        desk.get_by_test_id("banner-token-input").press("Enter")
        expect(desk.get_by_test_id("connection-status")).to_have_attribute("data-state", "open")
        ask(desk, "what is 2+2?")
        expect(answers(desk).last).to_contain_text("4")
    finally:
        restarted.stop()


# ---- 8. the composer on a phone ------------------------------------------------------------

FITS = """el => {
  const s = getComputedStyle(el);
  const ctx = document.createElement("canvas").getContext("2d");
  ctx.font = `${s.fontWeight} ${s.fontSize} ${s.fontFamily}`;
  const room = el.clientWidth - parseFloat(s.paddingLeft) - parseFloat(s.paddingRight);
  return [ctx.measureText(el.placeholder).width, room];
}"""


def test_on_a_phone_the_composer_placeholder_fits_and_there_is_no_keyboard_hint(
    phone: Any, desk: Any, server: ServerHandle,
) -> None:
    from playwright.sync_api import expect

    open_chat(phone, server)
    box = phone.get_by_test_id("composer-input")
    needed, room = box.evaluate(FITS)
    assert 0 < needed <= room, (needed, room)
    expect(phone.get_by_test_id("composer-hint")).to_be_hidden()
    open_chat(desk, server)
    expect(desk.get_by_test_id("composer-hint")).to_be_visible()
    expect(desk.get_by_test_id("composer-hint")).to_contain_text("Shift+Enter")


# ---- 9. the demo model's help and parsing --------------------------------------------------

def test_the_demo_help_renders_as_markdown_and_trailing_words_dont_reach_the_calculator(
    desk: Any, server: ServerHandle,
) -> None:
    from playwright.sync_api import expect

    open_chat(desk, server)
    ask(desk, "hello")
    help_text = answers(desk).last
    expect(help_text.locator("code", has_text="what is 12*(3+4)?")).to_have_count(1)
    assert "*" not in help_text.inner_text().replace("12*(3+4)", "")
    ask(desk, "what is 6*7 (sent offline)")
    expect(answers(desk).last).to_contain_text("= 42")
    expect(desk.get_by_test_id("tool-call").last).to_have_attribute("data-outcome", "ok")


# ---- 10. a tab over the connection limit -------------------------------------------------

def test_a_fourth_tab_is_told_why_and_its_composer_is_disabled(
    browser: Any, server: ServerHandle,  # noqa: F811
) -> None:
    from playwright.sync_api import expect

    context = _context(browser, viewport=DESKTOP)
    try:
        tabs = [context.new_page() for _ in range(4)]
        for tab in tabs[:3]:
            tab.bring_to_front()
            open_chat(tab, server)
        fourth = tabs[3]
        fourth.bring_to_front()
        fourth.goto(f"{server.base_url}/")
        expect(fourth.get_by_test_id("conn-banner")).to_have_attribute("data-kind", "too-many-tabs")
        expect(fourth.get_by_test_id("composer-input")).to_be_disabled()
        expect(fourth.get_by_test_id("send-button")).to_be_disabled()
        tabs[0].close()  # one closed: Reconnect works (once the server saw it go)
        deadline = time.monotonic() + 10
        while len(server.services.connections.of_user("alice")) > 2:
            assert time.monotonic() < deadline, "the closed tab's connection stayed"
            fourth.wait_for_timeout(20)
        fourth.get_by_test_id("banner-retry").click()
        expect(fourth.get_by_test_id("connection-status")).to_have_attribute("data-state", "open")
        expect(fourth.get_by_test_id("composer-input")).to_be_enabled()
    finally:
        context.close()


# ---- 12. accessibility -----------------------------------------------------------------------

AXE_RUN = """async () => {
  const r = await axe.run(document, { resultTypes: ["violations"] });
  return r.violations.filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
}"""


@pytest.mark.parametrize(("viewport", "scheme"), [(DESKTOP, "dark"), (PHONE, "dark"), (DESKTOP, "light")],
                         ids=["desktop-dark", "phone-dark", "desktop-light"])
def test_axe_finds_no_serious_or_critical_violations(
    browser: Any, server: ServerHandle, viewport: dict[str, int], scheme: str,  # noqa: F811
) -> None:
    from playwright.sync_api import expect

    if not AXE.exists():
        missing_service("clients/js/node_modules/axe-core is not installed (make js-test)")
    context = _context(browser, viewport=viewport, color_scheme=scheme,
                       bypass_csp=True)  # to inject axe
    try:
        p = context.new_page()
        open_chat(p, server)
        ask(p, "hello")  # Markdown, a highlighted code block, message actions
        expect(answers(p).last.locator(".code-block")).to_be_visible()
        ask(p, "what is 12*(3+4)?")
        expect(answers(p).last).to_contain_text("84")
        expect(p.get_by_test_id("run-status").last).to_have_attribute("data-status", "completed")
        p.get_by_test_id("tool-call").first.locator("summary").click()
        timeline = p.get_by_test_id("timeline")
        expect(timeline).to_have_attribute("role", "log")
        expect(timeline).to_have_attribute("aria-busy", "false")
        expect(p.get_by_test_id("announce")).to_contain_text("finished answering")
        p.reload()  # a thread that is shown again is not news
        expect(answers(p).last).to_contain_text("84")
        expect(p.get_by_test_id("announce")).to_have_text("")
        p.add_script_tag(path=str(AXE))
        assert p.evaluate(AXE_RUN) == []
        p.get_by_test_id("shortcuts-button").click()  # the shortcuts dialog
        expect(p.get_by_test_id("shortcuts")).to_be_visible()
        assert p.evaluate(AXE_RUN) == []
        p.keyboard.press("Escape")
        p.context.set_offline(True)  # the banner too
        expect(p.get_by_test_id("conn-banner")).to_be_visible()
        assert p.evaluate(AXE_RUN) == []
        p.context.set_offline(False)
        gate = context.new_page()  # the sign-in page
        gate.goto(f"{server.base_url}/#token=not.a.token")
        expect(gate.get_by_test_id("token-state")).to_be_visible()
        gate.add_script_tag(path=str(AXE))
        assert gate.evaluate(AXE_RUN) == []
    finally:
        context.close()


# ---- 13. the thinking line, thread dates -----------------------------------------------------

def test_the_thinking_line_renders_code_and_threads_show_when(
    desk: Any, server: ServerHandle,
) -> None:
    from playwright.sync_api import expect

    open_chat(desk, server)
    ask(desk, "what is 2+2?")
    expect(answers(desk).last).to_contain_text("4")
    thinking = desk.get_by_test_id("thinking").first
    expect(thinking.locator("code")).to_have_text("2+2")
    assert "`" not in thinking.inner_text()
    expect(thinking.locator(".sep")).to_have_count(1)
    when = desk.get_by_test_id("thread-when").first
    expect(when).to_have_attribute("datetime", __import__("re").compile(r"^\d{4}-\d\d-\d\dT"))
    expect(when).not_to_be_empty()
    run = desk.get_by_test_id("run-status").last  # the run's duration and usage
    expect(run).to_contain_text(__import__("re").compile(r"Done in \d"))
    expect(run.get_by_test_id("run-usage")).to_contain_text("2 model calls")
    expect(run.get_by_test_id("run-usage")).to_contain_text("tokens")
