"""Search in a real browser: the header's box, the results page with its highlight, and
the link to the message's room."""

from __future__ import annotations

import re
import uuid

import pytest
from browser_helpers import join, post
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def test_the_header_box_finds_a_highlighted_message_linking_to_its_room(make_room, chat_user):
    slug = make_room("search")
    user = chat_user("seeker")
    page = user.page
    page.goto("/")
    join(page, slug)
    word = f"zebra{uuid.uuid4().hex[:8]}"
    seq = post(page, slug, f"<b>not bold</b> the {word} crossed")
    post(page, slug, "unrelated chatter")

    box = page.get_by_role("search").get_by_label("Search messages")
    box.fill(word.upper())
    box.press("Enter")
    expect(page).to_have_url(re.compile(r"/search/\?q="))
    results = page.locator(".search-result")
    expect(results).to_have_count(1)
    result = results.first
    expect(result.locator("mark")).to_have_text(word)
    expect(result.locator(".search-text")).to_contain_text("<b>not bold</b>")
    assert result.locator("b").count() == 0
    link = result.locator("a.search-link")
    expect(link).to_have_attribute("href", f"/rooms/{slug}/?at={seq}")
    link.click()
    expect(page).to_have_url(re.compile(rf"/rooms/{slug}/\?at={seq}$"))
    # The room opens at that message: flashed and focused.
    line = page.locator(f'#messages li[data-seq="{seq}"]')
    expect(line).to_have_class(re.compile(r"\bflash\b"))
    expect(line).to_be_focused()


@pytest.mark.parametrize("where", ["search", "room", "list"])
def test_the_header_with_its_box_fits_a_narrow_window(make_room, chat_user, where):
    slug = make_room("narrow")
    user = chat_user("narrow")
    page = user.page
    page.set_viewport_size({"width": 360, "height": 740})
    if where == "room":
        user.open_room(slug)
    else:
        page.goto("/search/?q=anything" if where == "search" else "/")
    box = page.locator("header").get_by_role("search")
    expect(box).to_be_visible()
    assert box.bounding_box()["width"] >= 80
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
