"""The conversation in a real browser, two people in two browser contexts: editing,
deleting, reactions, replies, and the server's html (never the body as HTML)."""

from __future__ import annotations

import re

import pytest
from browser_helpers import api, post, seed, send, seq_of, shot, unique
from browser_helpers import line as line_of
from parley_testing import ServerProcess, create_user, wait_for_js
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("transport", ["ws", "longpoll"])
def test_edit_last_message_with_up_arrow_escape_cancels(chat_user, make_room, transport):
    room = make_room("edit")
    alice = chat_user("alice")
    bob = chat_user("bob")
    alice.open_room(room, transport=transport)
    bob.open_room(room)
    text = unique("frist draft")
    send(alice.page, text)
    expect(line_of(bob.page, text)).to_have_count(1)
    seq = seq_of(alice.page, text)
    box = alice.page.locator("#composer textarea")

    # Up in the empty composer edits the last own message; Escape gives the composer back.
    box.press("ArrowUp")
    editor = alice.page.locator(f'#messages li[data-seq="{seq}"] .msg-editor textarea')
    expect(editor).to_be_focused()
    expect(editor).to_have_value(text)
    editor.press("Escape")
    expect(editor).to_have_count(0)
    expect(box).to_be_focused()
    expect(line_of(alice.page, text).locator(".msg-edited")).to_be_hidden()

    box.press("ArrowUp")
    fixed = unique("first draft, fixed")
    editor.fill(fixed)
    editor.press("Enter")
    for page in (alice.page, bob.page):
        edited = page.locator(f'#messages li[data-seq="{seq}"]')
        expect(edited.locator(".msg-body")).to_have_text(fixed)
        expect(edited.locator(".msg-edited")).to_be_visible()
        expect(edited).not_to_have_class(re.compile(r"\bsaving\b"))
    # Only the author is offered Edit.
    expect(alice.page.locator(f'li[data-seq="{seq}"] [data-action=edit]')).to_have_count(1)
    expect(bob.page.locator(f'li[data-seq="{seq}"] [data-action=edit]')).to_have_count(0)
    expect(bob.page.locator(f'li[data-seq="{seq}"] [data-action=delete]')).to_have_count(0)

    # The edit is durable: a reload shows it from the server.
    bob.page.reload()
    expect(bob.page.locator(f'li[data-seq="{seq}"] .msg-body')).to_have_text(fixed)


def test_delete_own_message_after_confirming(chat_user, make_room):
    room = make_room("delete")
    alice = chat_user("alice")
    bob = chat_user("bob")
    alice.open_room(room)
    bob.open_room(room, transport="sse")
    text = unique("regrettable")
    send(alice.page, text)
    expect(line_of(bob.page, text)).to_have_count(1)
    seq = seq_of(alice.page, text)
    target = alice.page.locator(f'#messages li[data-seq="{seq}"]')

    target.hover()
    target.locator("[data-action=delete]").click()
    dialog = alice.page.locator("#confirm-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(text)
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    expect(target.locator(".msg-body")).to_have_text(text)

    target.hover()
    target.locator("[data-action=delete]").click()
    dialog.get_by_role("button", name="Delete").click()
    for page in (alice.page, bob.page):
        gone = page.locator(f'#messages li[data-seq="{seq}"]')
        expect(gone).to_have_class(re.compile(r"\bdeleted\b"))
        expect(gone.locator(".msg-body")).to_have_text("This message was deleted.")
        expect(page.locator("#messages")).not_to_contain_text(text)


def test_reactions_from_the_picker_and_by_toggling_a_chip(chat_user, make_room):
    room = make_room("react")
    alice = chat_user("alice")
    bob = chat_user("bob")
    alice.open_room(room)
    bob.open_room(room, transport="longpoll")
    text = unique("react to me")
    send(alice.page, text)
    target_bob = line_of(bob.page, text)
    expect(target_bob).to_have_count(1)

    target_bob.hover()
    target_bob.locator("[data-action=react]").click()
    picker = bob.page.locator("#emoji-picker")
    expect(picker).to_be_visible()
    shot(bob.page, "picker-1280-light")
    picker.locator("[data-emoji='🎉']").click()
    expect(picker).to_be_hidden()
    target_alice = line_of(alice.page, text)
    for target in (target_alice, target_bob):
        chip = target.locator(".reaction[data-emoji='🎉']")
        expect(chip.locator(".reaction-count")).to_have_text("1")
    party = ".reaction[data-emoji='🎉']"
    expect(target_bob.locator(party)).to_have_attribute("aria-pressed", "true")
    expect(target_alice.locator(party)).to_have_attribute("aria-pressed", "false")

    # Clicking a chip adds one's own reaction, clicking again takes it back.
    alice_chip = target_alice.locator(".reaction[data-emoji='🎉']")
    alice_chip.click()
    expect(alice_chip.locator(".reaction-count")).to_have_text("2")
    expect(alice_chip).to_have_attribute("aria-pressed", "true")
    expect(target_bob.locator(".reaction[data-emoji='🎉'] .reaction-count")).to_have_text("2")
    alice_chip.click()
    expect(alice_chip.locator(".reaction-count")).to_have_text("1")
    expect(alice_chip).to_have_attribute("aria-pressed", "false")

    # Any emoji can be typed; something that is not one emoji is refused in place.
    target_alice.hover()
    target_alice.locator("[data-action=react]").click()
    picker = alice.page.locator("#emoji-picker")
    picker.locator("input").fill("nope")
    picker.locator("input").press("Enter")
    expect(picker.locator(".picker-error")).to_be_visible()
    picker.locator("input").fill("🦄")
    picker.locator("input").press("Enter")
    expect(picker).to_be_hidden()
    for target in (target_alice, target_bob):
        expect(target.locator(".reaction[data-emoji='🦄'] .reaction-count")).to_have_text("1")
    # Escape closes the picker and gives focus back to its button.
    target_alice.hover()
    react_button = target_alice.locator("[data-action=react]")
    react_button.click()
    alice.page.keyboard.press("Escape")
    expect(picker).to_be_hidden()
    expect(react_button).to_be_focused()


def test_reply_shows_a_quote_that_jumps_to_the_original(chat_user, make_room):
    room = make_room("reply")
    alice = chat_user("alice")
    bob = chat_user("bob")
    alice.open_room(room)
    bob.open_room(room)
    question = unique("which port does it use?")
    send(alice.page, question)
    expect(line_of(bob.page, question)).to_have_count(1)
    original = bob.page.locator(f'#messages li[data-seq="{seq_of(bob.page, question)}"]')

    original.hover()
    original.locator("[data-action=reply]").click()
    bar = bob.page.locator("#reply-bar")
    expect(bar).to_be_visible()
    expect(bar).to_contain_text(alice.name)
    expect(bob.page.locator("#composer textarea")).to_be_focused()
    answer = unique("8000, the default")
    bob.page.keyboard.type(answer)
    bob.page.keyboard.press("Enter")
    expect(bar).to_be_hidden()
    for page in (alice.page, bob.page):
        quote = line_of(page, answer).locator(".reply-quote")
        expect(quote).to_contain_text(alice.name)
        expect(quote).to_contain_text(question)
    shot(alice.page, "reply-1280-light")

    # Escape drops a reply before it is sent.
    original.hover()
    original.locator("[data-action=reply]").click()
    expect(bar).to_be_visible()
    bob.page.locator("#composer textarea").press("Escape")
    expect(bar).to_be_hidden()


def test_reply_to_a_message_far_back_loads_it(chat_user, make_room, live_server: ServerProcess):
    room = make_room("farback")
    author = chat_user("author")
    reader = chat_user("reader")
    author.page.goto("/")
    first = post(author.page, room, "the very first message")
    seed(live_server, room, author.name, [f"filler {i}" for i in range(110)])
    reply = unique("answering the first one")
    seed(live_server, room, author.name, [reply], reply_to=first)

    page = reader.open_room(room)
    quote = line_of(page, reply).locator(".reply-quote")
    # The original is not on the page: its preview comes from GET .../messages/<seq>/.
    expect(page.locator(f'#messages li[data-seq="{first}"]')).to_have_count(0)
    expect(quote).to_contain_text("the very first message")
    quote.click()
    target = page.locator(f'#messages li[data-seq="{first}"]')
    expect(target).to_be_in_viewport()
    expect(target).to_be_focused()


def test_html_is_rendered_and_the_body_is_never_html(chat_user, make_room, live_server):
    room = make_room("markup")
    alice = chat_user("alice")
    bob = chat_user("bob")
    alice.open_room(room)
    bob.open_room(room)
    tag = unique("markup")
    text = f"**bold** and `code` <b>not bold</b> @{bob.name} {tag}"
    send(alice.page, text)
    for page, me in ((alice.page, False), (bob.page, True)):
        body = line_of(page, tag).locator(".msg-body")
        expect(body.locator("strong")).to_have_text("bold")
        expect(body.locator("code")).to_have_text("code")
        expect(body.locator("b")).to_have_count(0)
        expect(body).to_contain_text("<b>not bold</b>")
        mention = body.locator(f'.mention[data-user="{bob.name}"]')
        expect(mention).to_have_count(1)
        if me:
            expect(mention).to_have_class(re.compile(r"\bme\b"))
            expect(line_of(page, tag)).to_have_class(re.compile(r"\bmentions-me\b"))
    # The server's own page renders the same html.
    bob.page.reload()
    body = line_of(bob.page, tag).locator(".msg-body")
    expect(body.locator("strong")).to_have_text("bold")
    expect(body.locator("b")).to_have_count(0)

    # A message whose html is empty (an event from before html existed) shows its body
    # as text, markup and all.
    author = f"old-{tag.split()[-1]}"
    create_user(live_server, author, "pw-old")
    live_server.shell(
        "from django.contrib.auth.models import User; from django.db.models import F;"
        "from chat.models import Room, Message;"
        f"r = Room.objects.get(slug={room!r});"
        "Room.objects.filter(pk=r.pk).update(last_seq=F('last_seq') + 1); r.refresh_from_db();"
        f"u = User.objects.get(username={author!r});"
        f"Message.objects.create(room=r, seq=r.last_seq, user=u, body='<i>legacy</i> {tag}')",
    )
    bob.page.reload()
    legacy = line_of(bob.page, f"legacy</i> {tag}").locator(".msg-body")
    expect(legacy).to_have_text(f"<i>legacy</i> {tag}")
    expect(legacy.locator("i")).to_have_count(0)
    wait_for_js(bob.page, "typeof window.__pwned === 'undefined'")
    assert api(bob.page, "GET", f"/api/rooms/{room}/messages/")["events"]
