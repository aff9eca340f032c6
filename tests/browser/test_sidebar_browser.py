"""The sidebar, unread counts and notifications in a real browser, two people in two
browser contexts: badges from the inbox stream, switching rooms without a page load, the
"New messages" divider, read positions as messages are seen, the tab title, mention
notifications, joining and leaving, and the keyboard."""

from __future__ import annotations

import re

import pytest
from browser_helpers import api, hide_tab, join, post, send, show_tab, unique, wait_room
from browser_helpers import line as line_of
from parley_testing import wait_for_js
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

# A stand-in for the browser's Notification (headless Chromium shows none): it records
# what the page asked for. Injected before the page's scripts.
FAKE_NOTIFICATION = """
window.__notes = []; window.__asked = 0;
window.Notification = class {
  static permission = "default";
  static requestPermission() {
    window.__asked += 1;
    this.permission = "granted";
    return Promise.resolve("granted");
  }
  constructor(title, options) { window.__notes.push({title, body: options && options.body}); }
  close() {}
};
"""


def badge(page, slug):
    return page.locator(f'#room-nav a[data-slug="{slug}"] .room-badge')


def room_check(slug: str, condition: str) -> str:
    """JS that is true when the room object ``r`` of ``slug`` meets ``condition``."""
    return f"fetch('/api/rooms/{slug}/').then(r => r.json()).then(r => {condition})"


def read_seq(page, slug) -> int:
    return api(page, "GET", f"/api/rooms/{slug}/")["read_seq"]


@pytest.mark.parametrize("transport", ["ws", "sse", "longpoll"])
def test_badges_update_live_and_switching_rooms_keeps_the_page(chat_user, make_room, transport):
    here, there = make_room("here"), make_room("there")
    alice = chat_user("alice")
    bob = chat_user("bob")
    for user in (alice, bob):
        user.page.goto("/")
        join(user.page, here)
        join(user.page, there)
    bob.open_room(here, transport=transport)
    wait_for_js(bob.page, "window.parley.inbox() === 'live'")
    name = {"ws": "websocket"}.get(transport, transport)
    assert bob.page.evaluate("window.parley.transport()") == name
    expect(bob.page.locator(f'#room-nav a[data-slug="{there}"]')).to_be_visible()
    expect(badge(bob.page, there)).to_have_count(0)
    bob.page.evaluate("window.__samePage = true")

    first = unique("first in there")
    post(alice.page, there, first)
    expect(badge(bob.page, there)).to_have_text("1")
    expect(bob.page).to_have_title(re.compile(r"^\(1\) "))
    post(alice.page, there, f"@{bob.name} look {unique('here')}")
    expect(badge(bob.page, there)).to_have_text("@1")
    expect(badge(bob.page, there)).to_have_class(re.compile(r"\bmention\b"))
    expect(bob.page).to_have_title(re.compile(r"^\(2\) "))

    bob.page.locator(f'#room-nav a[data-slug="{there}"]').click()
    wait_room(bob.page, there)
    assert bob.page.evaluate("window.__samePage === true")  # no page load
    assert bob.page.evaluate("location.pathname") == f"/rooms/{there}/"
    assert bob.page.evaluate("window.parley.transport()") == name  # ?transport= is kept
    expect(bob.page.locator("#room-name")).to_have_text(there)
    there_link = bob.page.locator(f'#room-nav a[data-slug="{there}"]')
    expect(there_link).to_have_attribute("aria-current", "page")
    # The divider sits above the first unread message, which is on the page.
    divider = bob.page.locator("#messages .new-divider")
    expect(divider).to_have_count(1)
    expect(bob.page.locator("#messages .new-divider + li.msg")).to_contain_text(first)
    # Seen: the read position moves, the badge and the title's count go.
    expect(badge(bob.page, there)).to_have_count(0)
    expect(bob.page).not_to_have_title(re.compile(r"^\("))
    wait_for_js(bob.page, room_check(there, "r.unread === 0"))

    # Live events reach the new room's connection; the old one is closed.
    live = unique("live in there")
    post(alice.page, there, live)
    expect(line_of(bob.page, live)).to_have_count(1)
    # Back goes back to the first room, still without a page load.
    bob.page.go_back()
    wait_room(bob.page, here)
    assert bob.page.evaluate("window.__samePage === true")
    expect(bob.page.locator("#messages")).not_to_contain_text(live)


def test_read_position_moves_only_while_the_tab_is_visible(chat_user, make_room):
    room = make_room("visible")
    alice = chat_user("alice")
    bob = chat_user("bob")
    for user in (alice, bob):
        user.page.goto("/")
        join(user.page, room)
    bob.open_room(room)
    wait_for_js(bob.page, "window.parley.inbox() === 'live'")
    hide_tab(bob.page)
    text = unique("while you were away")
    seq = post(alice.page, room, text)
    expect(line_of(bob.page, text)).to_have_count(1)
    # Hidden: the open room counts as unread, in the badge and the title.
    expect(badge(bob.page, room)).to_have_text("1")
    expect(bob.page).to_have_title(re.compile(r"^\(1\) "))
    bob.page.wait_for_timeout(1500)  # longer than the read debounce
    assert read_seq(bob.page, room) < seq

    show_tab(bob.page)
    wait_for_js(bob.page, room_check(room, f"r.read_seq >= {seq}"))
    expect(badge(bob.page, room)).to_have_count(0)
    expect(bob.page).not_to_have_title(re.compile(r"^\("))


def test_mention_notification_while_hidden_after_the_bell(chat_user, make_room):
    here, there = make_room("calm"), make_room("ping")
    alice = chat_user("alice")
    bob = chat_user("bob")
    bob.page.add_init_script(FAKE_NOTIFICATION)
    for user in (alice, bob):
        user.page.goto("/")
        join(user.page, here)
        join(user.page, there)
    bob.open_room(here)
    wait_for_js(bob.page, "window.parley.inbox() === 'live'")
    bell = bob.page.locator("#bell")
    expect(bell).to_be_visible()
    expect(bell).to_have_attribute("aria-pressed", "false")
    assert bob.page.evaluate("window.__asked") == 0  # never asked without a click

    # Bell off: a mention while hidden makes no notification.
    hide_tab(bob.page)
    post(alice.page, there, f"@{bob.name} first {unique('ping')}")
    expect(badge(bob.page, there)).to_have_text("@1")
    assert bob.page.evaluate("window.__notes.length") == 0

    show_tab(bob.page)
    bell.click()
    expect(bell).to_have_attribute("aria-pressed", "true")
    assert bob.page.evaluate("window.__asked") == 1
    # Visible: nothing (the page itself shows it).
    post(alice.page, there, f"@{bob.name} visible {unique('ping')}")
    expect(badge(bob.page, there)).to_have_text("@2")
    assert bob.page.evaluate("window.__notes.length") == 0
    hide_tab(bob.page)
    text = unique("deploy is blocked")
    post(alice.page, there, f"@{bob.name} {text}")
    wait_for_js(bob.page, "window.__notes.length === 1")
    note = bob.page.evaluate("window.__notes[0]")
    assert alice.name in note["title"] and there in note["title"], note
    assert text in note["body"], note
    # A message without a mention notifies nobody.
    post(alice.page, there, unique("no mention"))
    expect(badge(bob.page, there)).to_have_text("@3")
    assert bob.page.evaluate("window.__notes.length") == 1


def test_join_and_leave_a_public_room(chat_user, make_room):
    room = make_room("joinable")
    alice = chat_user("alice")
    page = alice.open_room(room)
    join_button = page.get_by_role("button", name="Join room")
    leave_button = page.get_by_role("button", name="Leave")
    expect(join_button).to_be_visible()
    expect(leave_button).to_be_hidden()
    # Not a member yet: the room is shown apart, as the one being viewed.
    expect(page.locator("#room-nav .nav-section", has_text="Viewing")).to_have_count(1)

    join_button.click()
    expect(join_button).to_be_hidden()
    expect(leave_button).to_be_visible()
    expect(page.locator("#room-nav .nav-section", has_text="Viewing")).to_have_count(0)
    expect(page.locator(f'#room-nav a[data-slug="{room}"]')).to_have_count(1)
    assert api(page, "GET", f"/api/rooms/{room}/")["is_member"] is True
    page.reload()
    expect(page.locator(f'#room-nav a[data-slug="{room}"]')).to_have_count(1)
    expect(page.get_by_role("button", name="Leave")).to_be_visible()

    page.get_by_role("button", name="Leave").click()
    expect(page.get_by_role("button", name="Join room")).to_be_visible()
    assert api(page, "GET", f"/api/rooms/{room}/")["is_member"] is False
    # Sending in a public room joins it (PROTOCOL.md).
    send(page, unique("hello"))
    expect(page.get_by_role("button", name="Leave")).to_be_visible()
    expect(page.locator(f'#room-nav a[data-slug="{room}"]')).to_have_count(1)
    assert api(page, "GET", f"/api/rooms/{room}/")["is_member"] is True


def test_keyboard_switches_rooms(chat_user, make_room):
    slugs = sorted(make_room(f"kb{i}") for i in range(3))
    alice = chat_user("alice")
    alice.page.goto("/")
    for slug in slugs:
        join(alice.page, slug)
    page = alice.open_room(slugs[0])
    page.locator("#composer textarea").focus()
    page.keyboard.press("Alt+ArrowDown")
    wait_room(page, slugs[1])
    expect(page.locator("#composer textarea")).to_be_focused()
    page.keyboard.press("Alt+ArrowUp")
    wait_room(page, slugs[0])

    page.keyboard.press("Control+k")
    switcher = page.locator("#switcher")
    expect(switcher).to_be_visible()
    field = switcher.get_by_role("combobox")
    expect(field).to_be_focused()
    field.fill(slugs[2][-8:])
    expect(switcher.get_by_role("option")).to_have_count(1)
    field.press("Enter")
    expect(switcher).to_be_hidden()
    wait_room(page, slugs[2])
    expect(page.locator("#composer textarea")).to_be_focused()
    # Escape closes the switcher without going anywhere.
    page.keyboard.press("Control+k")
    expect(switcher).to_be_visible()
    page.keyboard.press("Escape")
    expect(switcher).to_be_hidden()
    assert page.evaluate("window.parley.room()") == slugs[2]


def test_a_send_just_before_switching_rooms_is_not_lost(chat_user, make_room):
    here, there = make_room("leaving"), make_room("arriving")
    alice = chat_user("alice")
    alice.page.goto("/")
    join(alice.page, here)
    join(alice.page, there)
    page = alice.open_room(here, transport="longpoll")
    held = []

    def flaky_post(route):
        # The first try of the send fails on the network: it is retried later, by then
        # from a room the user has left.
        sending = route.request.method == "POST" and '"client_id"' in (
            route.request.post_data or ""
        )
        if sending and not held:
            held.append(route.request.url)
            route.abort()
        else:
            route.continue_()

    page.route("**/poll/rooms/**", flaky_post)
    text = unique("sent on the way out")
    send(page, text)
    page.locator(f'#room-nav a[data-slug="{there}"]').click()
    wait_room(page, there)
    wait_for_js(
        page,
        f"fetch('/api/rooms/{here}/messages/').then(r => r.json())"
        f".then(p => p.events.some(e => e.body === {text!r}))",
    )
    assert held
    page.go_back()
    wait_room(page, here)
    expect(line_of(page, text)).to_have_count(1)
