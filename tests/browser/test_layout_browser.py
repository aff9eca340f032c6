"""The room page's layout and accessibility in a real browser: 1280 px and 360 px wide,
light and dark (screenshots in /tmp/shots), the drawer, the live region, labelled
controls, and the character count."""

from __future__ import annotations

import re
import uuid

import pytest
from browser_helpers import join, log_in, post, send, shot, unique
from browser_helpers import line as line_of
from parley_testing import create_user
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

SIZES = {"wide": {"width": 1280, "height": 800}, "narrow": {"width": 360, "height": 740}}


def user_page(browser, live_server, viewport, scheme, prefix="viewer"):
    context = browser.new_context(base_url=live_server.url, viewport=viewport, color_scheme=scheme)
    context.set_default_timeout(15_000)
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    create_user(live_server, name, "pw-layout")
    page = context.new_page()
    log_in(page, name, "pw-layout")
    return context, page, name


def background_luminance(page) -> float:
    rgb = page.evaluate("getComputedStyle(document.querySelector('.room')).backgroundColor")
    r, g, b = (int(x) for x in re.findall(r"\d+", rgb)[:3])
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("size", ["wide", "narrow"])
def test_room_page_at_each_size_and_scheme(
    browser, live_server, make_room, chat_user, size, scheme
):
    room, other = make_room("layout"), make_room("layout-b")
    author = chat_user("sam")
    author.page.goto("/")
    join(author.page, room)
    context, page, name = user_page(browser, live_server, SIZES[size], scheme)
    try:
        join(page, room)
        join(page, other)
        first = post(author.page, room, "Morning! The **staging** deploy is done, give it a spin.")
        post(author.page, room, f"@{name} can you check the `read_seq` backfill?", reply_to=first)
        post(author.page, other, "unread elsewhere")
        page.goto(f"/rooms/{room}/")
        expect(page.locator("#conn-state")).to_have_attribute("data-state", "live")
        send(page, "On it. > 38 s on a copy of prod")
        expect(page.locator("#messages li.msg.mine[data-seq]")).to_have_count(1)

        dark = background_luminance(page) < 0.3
        assert dark == (scheme == "dark")
        # Nothing wider than the window: no sideways scrolling at 360 px.
        assert page.evaluate("document.documentElement.scrollWidth") <= SIZES[size]["width"]
        sidebar = page.locator("#sidebar")
        toggle = page.locator("#drawer-toggle")
        shot(page, f"room-{SIZES[size]['width']}-{scheme}")
        if size == "wide":
            expect(sidebar).to_be_visible()
            expect(toggle).to_be_hidden()
            expect(page.locator(".people")).to_be_visible()
            return
        # Narrow: the sidebar is a drawer behind a labelled button.
        expect(sidebar).to_be_hidden()
        expect(toggle).to_be_visible()
        expect(toggle).to_have_attribute("aria-expanded", "false")
        toggle.click()
        expect(sidebar).to_be_visible()
        expect(toggle).to_have_attribute("aria-expanded", "true")
        expect(page.locator(f'#room-nav a[data-slug="{room}"]')).to_be_focused()
        page.wait_for_timeout(400)  # the drawer's slide-in
        shot(page, f"drawer-360-{scheme}")
        page.keyboard.press("Escape")
        expect(sidebar).to_be_hidden()
        expect(toggle).to_be_focused()
        # Choosing a room in the drawer switches to it and closes the drawer.
        toggle.click()
        page.locator(f'#room-nav a[data-slug="{other}"]').click()
        expect(page.locator("#room-name")).to_have_text(other)
        expect(sidebar).to_be_hidden()
        expect(page.locator("#messages")).to_contain_text("unread elsewhere")
    finally:
        context.close()


def test_new_messages_are_announced_and_controls_are_labelled(chat_user, make_room):
    room = make_room("a11y")
    alice = chat_user("alice")
    bob = chat_user("bob")
    alice.open_room(room)
    bob.open_room(room)
    text = unique("announce me")
    send(alice.page, text)
    expect(line_of(bob.page, text)).to_have_count(1)
    announcer = bob.page.locator("#announcer")
    expect(announcer).to_have_attribute("aria-live", "polite")
    expect(announcer).to_contain_text(f"{alice.name}: {text}")
    # One's own messages are not read out again.
    expect(alice.page.locator("#announcer")).not_to_contain_text(text)

    page = bob.page
    line_of(page, text).hover()
    unnamed = page.evaluate(
        """() => [...document.querySelectorAll('button, a, textarea, input')]
            .filter((n) => n.offsetParent !== null)
            .filter((n) => !(n.getAttribute('aria-label') || n.textContent.trim()
                             || n.getAttribute('placeholder') || n.labels?.length))
            .map((n) => n.outerHTML.slice(0, 80))"""
    )
    assert unnamed == []
    # Actions are buttons, never clickable divs or spans.
    clickable = "[onclick], div[role=button], span[role=button]"
    assert page.evaluate(f"document.querySelectorAll({clickable!r}).length") == 0
    expect(page.get_by_role("list", name="Messages")).to_be_visible()
    expect(page.get_by_role("navigation", name="Your rooms")).to_be_visible()
    expect(page.get_by_role("textbox", name="Message")).to_be_visible()


def test_character_count_near_the_limit(chat_user, make_room):
    room = make_room("count")
    alice = chat_user("alice")
    page = alice.open_room(room)
    box = page.locator("#composer textarea")
    limit = int(box.get_attribute("maxlength"))
    count = page.locator("#char-count")
    box.fill("short")
    expect(count).to_be_hidden()
    box.fill("x" * (limit - 50))
    expect(count).to_be_visible()
    expect(count).to_have_text("50 characters left")
    box.evaluate("node => node.removeAttribute('maxlength')")
    box.fill("x" * (limit + 5))
    expect(count).to_have_text("5 characters over the limit")
    expect(count).to_have_class(re.compile(r"\bover\b"))
    box.fill("")
    expect(count).to_be_hidden()
