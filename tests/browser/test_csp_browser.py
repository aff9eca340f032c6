"""The Content-Security-Policy in a real browser: the room page (chat.js on every
transport) and the admin run with no violation, and a violation is seen when there is one."""

from __future__ import annotations

import contextlib
import uuid

import pytest
from parley_testing import wait_for_js
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

# Runs before any page script (Playwright injects it outside the page's CSP) and records
# every violation the browser reports on the page.
RECORD_VIOLATIONS = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(`${e.violatedDirective} blocked ${e.blockedURI || "inline"}`);
});
"""


def watch(page: Page) -> list[str]:
    """CSP complaints of ``page``: its console's, and the violation events'."""
    complaints: list[str] = []
    page.add_init_script(RECORD_VIOLATIONS)
    page.on(
        "console",
        lambda message: (
            complaints.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    return complaints


def violations(page: Page, complaints: list[str]) -> list[str]:
    return complaints + page.evaluate("window.__csp || []")


@pytest.mark.parametrize("transport", ["ws", "sse", "longpoll"])
def test_the_room_page_runs_under_the_csp(chat_user, transport):
    alice = chat_user("alice")
    complaints = watch(alice.page)
    alice.open_room("lobby", transport=transport)
    text = f"csp {transport} {uuid.uuid4().hex[:8]}"
    box = alice.page.locator("#composer textarea")
    box.fill(text)
    box.press("Enter")
    line = alice.page.locator("#messages li.msg[data-seq]:not(.pending)", has_text=text)
    expect(line).to_have_count(1)
    assert violations(alice.page, complaints) == []


def test_the_admin_runs_under_the_csp(chat_user):
    admin = chat_user("admin", staff=True)
    complaints = watch(admin.page)
    for path in ["/admin/", "/admin/chat/room/", "/admin/chat/room/add/", "/admin/auth/user/"]:
        admin.page.goto(path)
        expect(admin.page.locator("#content")).to_be_visible()
    # The admin's own scripts ran: the add form's collapsible fieldsets and the actions bar.
    admin.page.goto("/admin/auth/user/")
    expect(admin.page.locator("#action-toggle")).to_be_visible()
    admin.page.locator("#action-toggle").check()
    expect(admin.page.locator(".action-counter")).to_contain_text("selected")
    assert violations(admin.page, complaints) == []


def test_a_violation_would_be_seen(chat_user):
    """The watch above is not blind: an inline script on the room page is blocked and
    reported."""
    bob = chat_user("bob")
    complaints = watch(bob.page)
    bob.open_room("lobby")
    # Playwright may report the blocked tag as its own error; the browser's report is
    # what counts here.
    with contextlib.suppress(PlaywrightError):
        bob.page.add_script_tag(content="window.__ran = true;")
    wait_for_js(bob.page, "window.__csp.length > 0")
    assert bob.page.evaluate("window.__ran === undefined")
    found = violations(bob.page, complaints)
    assert any("script-src" in item for item in found), found
