"""Direct messages in a real browser: alice starts one with bob from the sidebar's "New
message", bob sees it appear in his sidebar live with an unread badge, they talk, a
desktop notification while bob's tab is hidden, and a third user gets nothing."""

from __future__ import annotations

import re

import pytest
from browser_helpers import api, hide_tab, send, shot, wait_room
from browser_helpers import line as line_of
from parley_testing import wait_for_js
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

# Headless Chromium shows no notifications: this records what the page asked for.
FAKE_NOTIFICATION = """
window.__notes = [];
window.Notification = class {
  static permission = "granted";
  static requestPermission() { return Promise.resolve("granted"); }
  constructor(title, options) { window.__notes.push({title, body: options && options.body}); }
  close() {}
};
try { localStorage.setItem("parley.notify", "1"); } catch (e) {}
"""


def dm_link(page, name: str):
    return page.locator("#room-nav a.dm-item", has_text=name)


def test_start_a_dm_from_the_sidebar_and_talk(chat_user, make_room):
    lobby = make_room("talk")
    alice = chat_user("alice")
    bob = chat_user("bob")
    carol = chat_user("carol")
    bob.page.add_init_script(FAKE_NOTIFICATION)
    bob.page.reload()
    for user in (alice, bob):
        api(user.page, "POST", f"/api/rooms/{lobby}/join/")
        user.open_room(lobby)
        wait_for_js(user.page, "window.parley.inbox() === 'live'")
    expect(bob.page.locator("#room-nav .nav-section-dms")).to_contain_text("Direct messages")
    expect(dm_link(bob.page, alice.name)).to_have_count(0)

    # alice: "+" -> a username -> the conversation opens in place.
    page = alice.page
    page.get_by_role("button", name="New message").click()
    box = page.locator("#dm-new input[name=user]")
    expect(box).to_be_focused()
    box.fill("nobody-by-that-name")
    box.press("Enter")
    expect(page.locator("#dm-new-error")).to_contain_text("Nobody")
    box.fill(f"@{bob.name}")
    box.press("Enter")
    wait_for_js(page, "window.parley && /^dm-/.test(window.parley.room())")
    slug = page.evaluate("window.parley.room()")
    wait_room(page, slug)
    expect(page.locator("#room-name")).to_have_text(bob.name)
    expect(page).to_have_url(re.compile(rf"/rooms/{slug}/$"))
    expect(dm_link(page, bob.name)).to_have_class(re.compile(r"\bactive\b"))
    expect(page.locator("#composer textarea")).to_have_attribute(
        "placeholder", f"Message {bob.name}"
    )

    # bob: the conversation appears in his sidebar by itself (the inbox's `rooms`).
    expect(dm_link(bob.page, alice.name)).to_have_count(1)
    hello = "hello bob, just us here"
    send(page, hello)
    expect(line_of(page, hello)).to_have_count(1)
    expect(dm_link(bob.page, alice.name).locator(".room-badge")).to_have_text("1")
    shot(page, "dm-alice")
    shot(bob.page, "dm-bob-sidebar")

    # While bob's tab is hidden, a direct message is a desktop notification.
    hide_tab(bob.page)
    ping = "are you around?"
    send(page, ping)
    wait_for_js(bob.page, "window.__notes.length >= 1")
    note = bob.page.evaluate("window.__notes[window.__notes.length - 1]")
    assert alice.name in note["title"] and "message" in note["title"], note
    assert ping in note["body"], note

    # bob opens it from the sidebar and answers.
    bob.page.reload()
    dm_link(bob.page, alice.name).click()
    wait_room(bob.page, slug)
    expect(bob.page.locator("#room-name")).to_have_text(alice.name)
    expect(line_of(bob.page, hello)).to_have_count(1)
    answer = "yes, what's up?"
    send(bob.page, answer)
    expect(line_of(page, answer)).to_have_count(1)
    expect(dm_link(bob.page, alice.name).locator(".room-badge")).to_have_count(0)
    shot(bob.page, "dm-bob")

    # carol: neither the page nor the API, and it is not in her sidebar.
    response = carol.page.goto(f"/rooms/{slug}/")
    assert response.status == 403
    assert carol.page.request.get(f"/api/rooms/{slug}/messages/").status == 403
    carol.open_room(lobby)
    expect(carol.page.locator("#room-nav a.dm-item")).to_have_count(0)
    # /dm/<alice> for carol is her own conversation with alice, not theirs.
    carol.page.goto(f"/dm/{alice.name}/")
    assert carol.page.evaluate("window.parley.room()") != slug


def test_dm_page_and_notes_to_self_narrow_and_dark(chat_user, browser, live_server):
    alice = chat_user("alice")
    alice.page.goto(f"/dm/{alice.name}/")
    wait_for_js(alice.page, "window.parley && /^dm-/.test(window.parley.room())")
    expect(alice.page.locator("#room-name")).to_have_text(alice.name)
    send(alice.page, "note to self: buy milk")
    expect(line_of(alice.page, "buy milk")).to_have_count(1)
    # 360 px wide, dark: the drawer holds the sidebar with its "Direct messages".
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": 360, "height": 720}, color_scheme="dark"
    )
    try:
        page = context.new_page()
        page.context.add_cookies(alice.page.context.cookies())
        page.goto(f"/dm/{alice.name}/")
        wait_for_js(page, "window.parley && /^dm-/.test(window.parley.room())")
        page.locator("#drawer-toggle").click()
        expect(page.locator("#room-nav .nav-section-dms")).to_be_visible()
        page.get_by_role("button", name="New message").click()
        expect(page.locator("#dm-new input[name=user]")).to_be_visible()
        shot(page, "dm-narrow-dark")
    finally:
        context.close()
