"""Moderation in a real browser, three people in one room: a moderator mutes bob from his
message's menu (bob sees the notice and cannot send), kicks carol from the people list
(her page says so instead of reconnecting), and sets slow mode from the header."""

from __future__ import annotations

import re

import pytest
from browser_helpers import line, send, shot, unique
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def test_a_moderator_mutes_and_kicks_from_the_room_page(chat_user, make_room, live_server):
    room = make_room("mod")
    alice, bob, carol = chat_user("alice"), chat_user("bob"), chat_user("carol")
    live_server.shell(
        "from django.contrib.auth.models import User; from chat.models import Room; "
        f"Room.objects.get(slug={room!r}).moderators.add(User.objects.get(username={alice.name!r}))",
    )
    for user in (alice, bob, carol):
        user.open_room(room)
    text = unique("buy cheap watches")
    send(bob.page, text)
    expect(line(alice.page, text)).to_have_count(1)

    # Only the moderator is offered the menu and the slow-mode control.
    expect(line(bob.page, text).locator("[data-action=moderate]")).to_have_count(0)
    expect(bob.page.locator("#slow-mode-select")).to_have_count(0)
    expect(alice.page.locator("#slow-mode-select")).to_be_visible()

    # alice mutes bob from his message's menu, with a reason.
    target = line(alice.page, text)
    target.hover()
    target.locator("[data-action=moderate]").click()
    dialog = alice.page.locator("#mod-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#mod-title")).to_have_text(f"Moderate {bob.name}")
    dialog.locator("input[name=reason]").fill("spam")
    shot(alice.page, "moderation-dialog")
    dialog.get_by_role("button", name="Mute 10 min").click()
    expect(dialog).to_be_hidden()
    expect(alice.page.locator("#toast")).to_contain_text(f"{bob.name} is muted")

    # bob's next send is refused: the notice, and no composer until the mute ends.
    refused = unique("am I muted")
    send(bob.page, refused)
    notice = bob.page.locator("#mod-notice")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("You are muted in this room for 10 more minutes")
    expect(bob.page.locator("#composer textarea")).to_be_disabled()
    expect(bob.page.locator("#messages li.failed", has_text=refused)).to_have_count(1)
    shot(bob.page, "moderation-muted")
    # The same notice on a phone, in the dark.
    bob.page.emulate_media(color_scheme="dark")
    bob.page.set_viewport_size({"width": 360, "height": 640})
    expect(notice).to_be_visible()
    shot(bob.page, "moderation-muted-360-dark")
    expect(line(alice.page, refused)).to_have_count(0)

    # Slow mode from the header; carol (a member: she has spoken) hears of it on her open
    # page (the inbox's rooms) and counts down after a send.
    hello = unique("carol joins")
    send(carol.page, hello)
    # Committed, so she is a member (sending joins, in the same transaction).
    expect(line(alice.page, hello)).to_have_count(1)
    alice.page.locator("#slow-mode-select").select_option("30")
    expect(alice.page.locator("#toast")).to_contain_text("Slow mode on")
    expect(carol.page.locator(".slow-mode")).to_have_text("Slow mode: 30 s")
    said = unique("carol says")
    send(carol.page, said)
    expect(line(alice.page, said)).to_have_count(1)
    button = carol.page.locator("#composer .send-button")
    expect(button).to_be_disabled()
    expect(button).to_have_text(re.compile(r"^(30|29|28) s$"))
    shot(carol.page, "moderation-slow")

    # alice kicks carol from the people list; carol's page says so, no reconnect loop.
    member = alice.page.locator(f'#presence .member-mod[data-user="{carol.name}"]')
    member.click()
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("button", name="Delete message")).to_be_hidden()
    alice.page.emulate_media(color_scheme="dark")
    shot(alice.page, "moderation-dialog-dark")
    dialog.get_by_role("button", name="Kick").click()
    expect(carol.page.locator("#conn-state")).to_have_attribute("data-state", "denied")
    gone = carol.page.locator("#mod-notice")
    expect(gone).to_be_visible()
    expect(gone).to_contain_text("You no longer have access to this room")
    expect(carol.page.locator("#composer textarea")).to_be_disabled()
    shot(carol.page, "moderation-kicked")

    # A moderator is not slowed.
    first = unique("slow one")
    send(alice.page, first)
    expect(line(alice.page, first)).to_have_count(1)
    expect(alice.page.locator("#composer .send-button")).to_be_enabled()
    shot(alice.page, "moderation-moderator")
