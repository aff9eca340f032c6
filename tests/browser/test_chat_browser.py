"""The room page in a real browser: chat.js over each transport against ``serve.py``.

Each test uses its own users, and its own room or unique message texts, so that tests
sharing the session's server do not see each other's messages.
"""

from __future__ import annotations

import re
import uuid

import pytest
from browser_helpers import send, unique
from parley_testing import ServerProcess, create_user, wait_for_js
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

HOSTILE = '<img src=x onerror="window.__pwned=1">'


def lines(page: Page, text: str):
    """The message lines whose text contains ``text``."""
    return page.locator("#messages li.msg", has_text=text)


def expect_delivered(page: Page, text: str) -> None:
    """Exactly one line with ``text``, confirmed by the log (a seq, not pending or failed)."""
    line = page.locator("#messages li.msg[data-seq]:not(.pending):not(.failed)", has_text=text)
    expect(line).to_have_count(1)
    expect(lines(page, text)).to_have_count(1)


def wait_live(page: Page, timeout: float | None = None) -> None:
    expect(page.locator("#conn-state")).to_have_attribute("data-state", "live", timeout=timeout)


def transport_of(page: Page) -> str:
    return page.evaluate("window.parley.transport()")


def test_two_users_chat_over_websocket_and_longpoll(chat_user):
    alice = chat_user("alice")
    bob = chat_user("bob")
    alice.open_room("lobby")
    bob.open_room("lobby", transport="longpoll")
    assert transport_of(alice.page) == "websocket"
    assert transport_of(bob.page) == "longpoll"
    expect(alice.page.locator("#conn-state")).to_have_text("live (websocket)")
    expect(bob.page.locator("#conn-state")).to_have_text("live (longpoll)")

    hello = unique("hello from alice")
    send(alice.page, hello)
    expect_delivered(bob.page, hello)
    expect_delivered(alice.page, hello)
    expect(lines(bob.page, hello).locator(".msg-user")).to_have_text(alice.name)

    reply = unique("hi alice, bob here")
    send(bob.page, reply)
    expect_delivered(alice.page, reply)
    expect_delivered(bob.page, reply)
    expect(lines(alice.page, reply).locator(".msg-user")).to_have_text(bob.name)
    # The composer was emptied by the send.
    expect(bob.page.locator("#composer textarea")).to_have_value("")


def test_hostile_body_is_shown_as_text(chat_user, make_room):
    room = make_room("xss")
    alice = chat_user("alice")
    bob = chat_user("bob")
    alice.open_room(room)
    bob.open_room(room, transport="sse")

    send(alice.page, HOSTILE)
    for page in (alice.page, bob.page):
        expect_delivered(page, HOSTILE)
        expect(lines(page, HOSTILE).locator(".msg-body")).to_have_text(HOSTILE)
        expect(page.locator("#messages img")).to_have_count(0)
        assert page.evaluate("typeof window.__pwned") == "undefined"

    # Rendered by the server this time, from the history.
    bob.page.reload()
    wait_live(bob.page)
    expect(lines(bob.page, HOSTILE).locator(".msg-body")).to_have_text(HOSTILE)
    expect(bob.page.locator("#messages img")).to_have_count(0)
    assert bob.page.evaluate("typeof window.__pwned") == "undefined"


def test_reload_keeps_history_without_duplicates(chat_user, make_room):
    room = make_room("reload")
    alice = chat_user("alice")
    page = alice.open_room(room)
    first = unique("before the reload")
    send(page, first)
    expect_delivered(page, first)
    seq = int(lines(page, first).get_attribute("data-seq"))

    page.reload()
    wait_live(page)
    expect_delivered(page, first)
    assert page.evaluate("window.parley.lastSeq()") >= seq

    # Resuming from the page's last seq replays nothing already on the page.
    second = unique("after the reload")
    send(page, second)
    expect_delivered(page, second)
    expect_delivered(page, first)
    assert int(lines(page, second).get_attribute("data-seq")) == seq + 1


def test_sse_user_receives_and_sends(chat_user, make_room):
    room = make_room("sse")
    alice = chat_user("alice")
    carol = chat_user("carol")
    alice.open_room(room)
    carol.open_room(room, transport="sse")
    assert transport_of(carol.page) == "sse"
    expect(carol.page.locator("#conn-state")).to_have_text("live (sse)")

    to_carol = unique("for carol over sse")
    send(alice.page, to_carol)
    expect_delivered(carol.page, to_carol)

    from_carol = unique("carol posts")
    send(carol.page, from_carol)
    expect_delivered(alice.page, from_carol)
    expect_delivered(carol.page, from_carol)


def test_message_deleted_in_admin_disappears_everywhere(
    chat_user, make_room, live_server: ServerProcess
):
    room = make_room("moderated")
    alice = chat_user("alice")
    bob = chat_user("bob")
    moderator = chat_user("mod", staff=True)
    alice.open_room(room)
    bob.open_room(room, transport="longpoll")

    doomed = unique("this will be removed")
    kept = unique("this one stays")
    send(alice.page, doomed)
    send(alice.page, kept)
    for page in (alice.page, bob.page):
        expect_delivered(page, doomed)
        expect_delivered(page, kept)
    seq = lines(alice.page, doomed).get_attribute("data-seq")
    message_id = live_server.shell(
        "from chat.models import Message;"
        f"print(Message.objects.get(room__slug={room!r}, seq={seq}).pk)",
    ).strip()

    admin = moderator.page
    admin.goto(f"/admin/chat/message/{message_id}/delete/")
    admin.get_by_role("button", name="Yes, delete it").click()
    expect(admin.locator(".messagelist")).to_contain_text("deleted successfully")

    for page in (alice.page, bob.page):
        line = page.locator(f'#messages li.msg[data-seq="{seq}"]')
        expect(line).to_have_class(re.compile(r"\bdeleted\b"))
        expect(line.locator(".msg-body")).to_have_text("This message was deleted.")
        expect(page.locator("#messages")).not_to_contain_text(doomed)
        expect_delivered(page, kept)


def test_typing_and_presence(chat_user, make_room):
    room = make_room("typing")
    alice = chat_user("alice")
    bob = chat_user("bob")
    alice.open_room(room)
    bob.open_room(room)

    for page in (alice.page, bob.page):
        expect(page.locator("#presence li", has_text=alice.name)).to_have_count(1)
        expect(page.locator("#presence li", has_text=bob.name)).to_have_count(1)

    alice.page.locator("#composer textarea").press_sequentially("typing something")
    expect(bob.page.locator("#typing")).to_have_text(f"{alice.name} is typing…")
    # Nobody is told about their own typing; the notice goes away by itself.
    expect(alice.page.locator("#typing")).to_have_text("")
    expect(bob.page.locator("#typing")).to_have_text("", timeout=10_000)


def test_enter_sends_and_shift_enter_adds_a_line(chat_user, make_room):
    room = make_room("lines")
    alice = chat_user("alice")
    page = alice.open_room(room)
    tag = uuid.uuid4().hex[:8]
    box = page.locator("#composer textarea")
    box.press_sequentially(f"first line {tag}")
    box.press("Shift+Enter")
    box.press_sequentially("second line")
    expect(box).to_have_value(f"first line {tag}\nsecond line")
    box.press("Enter")
    expect_delivered(page, tag)
    body = lines(page, tag).locator(".msg-body")
    assert body.text_content() == f"first line {tag}\nsecond line"


def test_too_long_message_is_marked_failed(chat_user, make_room):
    room = make_room("limits")
    alice = chat_user("alice")
    page = alice.open_room(room)
    box = page.locator("#composer textarea")
    limit = int(box.get_attribute("maxlength"))
    # The textarea stops typing at the limit; a modified page (or another client) may not.
    box.evaluate("node => node.removeAttribute('maxlength')")
    too_long = unique("x" * (limit + 10))
    box.fill(too_long)
    box.press("Enter")
    failed = page.locator("#messages li.msg.failed")
    expect(failed).to_have_count(1)
    expect(failed.locator(".msg-ts")).to_contain_text("not sent")
    assert failed.get_attribute("data-seq") is None
    expect(page.locator("#messages li.msg.pending")).to_have_count(0)

    # The connection is still usable afterwards.
    ok = unique("short enough")
    send(page, ok)
    expect_delivered(page, ok)


def test_anonymous_reader_sees_live_messages_but_cannot_post(chat_user, make_room, new_context):
    room = make_room("readonly")
    alice = chat_user("alice")
    reader = new_context().new_page()
    reader.goto(f"/rooms/{room}/")
    wait_live(reader)
    expect(reader.locator("#composer textarea")).to_be_disabled()
    expect(reader.locator("#composer button[type=submit]")).to_be_disabled()

    alice.open_room(room)
    text = unique("for everyone")
    send(alice.page, text)
    expect_delivered(reader, text)


def test_older_history_loads_on_scroll_to_top(make_room, new_context, live_server):
    room = make_room("history")
    author = f"author-{uuid.uuid4().hex[:8]}"
    create_user(live_server, author, "pw-history")
    count = 130
    live_server.shell(
        "from django.contrib.auth.models import User; from chat import log;"
        "from chat.live import records;"
        f"u = User.objects.get(username={author!r});"
        "log.append_events(["
        f"records.SendRequest({room!r}, u.id, u.username, f'history {{i}}', None)"
        f" for i in range(1, {count + 1})])",
    )
    page = new_context().new_page()
    page.goto(f"/rooms/{room}/")
    wait_live(page)
    messages = page.locator("#messages")
    all_lines = messages.locator("li.msg")
    expect(all_lines.last.locator(".msg-body")).to_have_text(f"history {count}")
    shown = all_lines.count()
    assert shown < count

    # Each scroll to the top prepends one page, keeping the reader's place.
    while all_lines.count() < count:
        before = all_lines.count()
        top_line = all_lines.first.get_attribute("data-seq")
        messages.evaluate("node => { node.scrollTop = 0; }")
        expect(all_lines).not_to_have_count(before)
        assert messages.evaluate("node => node.scrollTop") > 0
        expect(page.locator(f'#messages li.msg[data-seq="{top_line}"]')).to_be_in_viewport()

    expect(all_lines).to_have_count(count)
    seqs = [int(s) for s in all_lines.evaluate_all("ls => ls.map(l => l.dataset.seq)")]
    assert seqs == list(range(1, count + 1))
    expect(all_lines.first.locator(".msg-body")).to_have_text("history 1")


def test_reconnects_after_restart_and_resends_queued_message(make_server, chat_user, make_room):
    server = make_server(name="restarted")
    room = make_room("restart", server=server)
    alice = chat_user("alice", server=server)
    bob = chat_user("bob", server=server)
    alice.open_room(room)
    bob.open_room(room, transport="sse")
    seen = unique("before the restart")
    send(alice.page, seen)
    expect_delivered(bob.page, seen)

    server.kill()
    expect(alice.page.locator("#conn-state")).to_have_attribute("data-state", "reconnecting")
    queued = unique("typed while the server was down")
    send(alice.page, queued)
    expect(lines(alice.page, queued)).to_have_class(re.compile(r"\bpending\b"))

    server.restart()
    for page in (alice.page, bob.page):
        # The backoff may be several seconds long by the time the server is back.
        wait_live(page, timeout=45_000)
        expect_delivered(page, queued)
        expect_delivered(page, seen)
    # A fallback taken while the server was down does not stick once it is back.
    wait_for_js(alice.page, "window.parley.transport() === 'websocket'")


def test_falls_back_to_sse_when_websocket_is_blocked(chat_user, make_room):
    room = make_room("fallback")
    alice = chat_user("alice")
    bob = chat_user("bob")
    # Like a proxy that accepts the upgrade and then drops it: the socket never says hello.
    alice.page.route_web_socket(re.compile(r"/ws/"), lambda ws: ws.close())
    alice.open_room(room)
    assert transport_of(alice.page) == "sse"
    expect(alice.page.locator("#conn-state")).to_have_text("live (sse)")
    bob.open_room(room)

    text = unique("reaches the fallback")
    send(bob.page, text)
    expect_delivered(alice.page, text)
    reply = unique("sent from the fallback")
    send(alice.page, reply)
    expect_delivered(bob.page, reply)
    assert transport_of(alice.page) == "sse"
