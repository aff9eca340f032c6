"""The hub's write path for edits, deletions and reactions, and the ring's current state.

Every write frame goes through ``RoomHub.submit``: validated before the store sees it,
rate-limited like a send, idempotent by client_id; and a replay from the ring shows each
message as the log now has it (chat/live/ring.py), like a replay from the
database (chat/history.py, tests/unit/test_log_writes.py).
"""

from __future__ import annotations

import pytest
from live_fakes import ALICE, Recorder, fired

from chat.live.events import OutboundEvent
from chat.live.records import RoomInfo, WriteKind
from chat.live.ring import current_state


def load(hub, slug: str = "lobby"):
    return fired(hub.room(RoomInfo(1, slug, True, False, 0)))


def message(seq: int, **fields) -> dict:
    base = {"type": "message", "room": "lobby", "seq": seq, "user": "alice", "body": "hi"}
    return {**base, "html": "hi", "mentions": [], "edited_at": None, "reactions": [], **fields}


@pytest.mark.parametrize(
    ("frame", "detail"),
    [
        ({"type": "edit", "target": 1}, "body"),
        ({"type": "edit", "target": "1", "body": "x"}, "target"),
        ({"type": "edit", "target": True, "body": "x"}, "target"),
        ({"type": "edit", "target": 0, "body": "x"}, "target"),
        ({"type": "edit", "target": 2**63, "body": "x"}, "target"),
        ({"type": "edit", "target": 1.0, "body": "x"}, "target"),
        ({"type": "delete"}, "target"),
        ({"type": "react", "target": 1, "emoji": "👍👍", "op": "add"}, "emoji"),
        ({"type": "react", "target": 1, "emoji": "a", "op": "add"}, "emoji"),
        ({"type": "react", "target": 1, "emoji": "", "op": "add"}, "emoji"),
        ({"type": "react", "target": 1, "emoji": ["👍"], "op": "add"}, "emoji"),
        ({"type": "react", "target": 1, "emoji": "👍", "op": "toggle"}, "op"),
        ({"type": "react", "target": 1, "emoji": "👍"}, "op"),
        ({"type": "send", "body": "x", "reply_to": "4"}, "reply_to"),
        ({"type": "send", "body": "x", "reply_to": -1}, "reply_to"),
        ({"type": "send", "body": "x", "client_id": "\ud800"}, "client_id"),
        ({"type": "shout", "body": "x"}, "Unknown frame type"),
        ({"type": 7, "body": "x"}, "Unknown frame type"),
    ],
)
def test_malformed_writes_never_reach_the_store(hub, store, frame, detail):
    result = fired(hub.submit("lobby", ALICE, frame))
    assert result.error == "bad_request" and detail in result.detail
    assert store.appended == []


def test_an_edit_that_is_too_long_is_too_large(hub, store):
    result = fired(hub.submit("lobby", ALICE, {"type": "edit", "target": 1, "body": "x" * 5000}))
    assert result.error == "too_large" and store.appended == []


def test_anonymous_writes_are_forbidden(hub, store):
    frame = {"type": "react", "target": 1, "emoji": "👍", "op": "add"}
    assert fired(hub.submit("lobby", None, frame)).error == "forbidden"
    assert store.appended == []


def test_a_valid_write_reaches_the_store_as_its_kind(hub, store):
    frame = {"type": "react", "target": 1, "emoji": "👍", "op": "remove", "client_id": "r"}
    assert fired(hub.submit("lobby", ALICE, frame)).seq == 1
    (request,) = store.appended
    assert (request.kind, request.target, request.emoji, request.op) == (
        WriteKind.REACT,
        1,
        "👍",
        "remove",
    )
    # The resend is answered from the hub's recent acks, not the store.
    assert fired(hub.submit("lobby", ALICE, frame)).seq == 1
    assert len(store.appended) == 1


def test_writes_of_every_kind_share_the_rate_limit(hub, store):
    """The hub's limit is 3 writes a 10 s (tests/unit/conftest.py)."""
    assert fired(hub.submit("lobby", ALICE, {"type": "send", "body": "a"})).seq == 1
    assert fired(hub.submit("lobby", ALICE, {"type": "edit", "target": 1, "body": "b"})).seq == 2
    react = {"type": "react", "target": 1, "emoji": "👍", "op": "add"}
    assert fired(hub.submit("lobby", ALICE, react)).seq == 3
    limited = fired(hub.submit("lobby", ALICE, {"type": "delete", "target": 1}))
    assert limited.error == "rate_limited" and limited.retry_after > 0
    assert len(store.appended) == 3


def test_current_state_follows_edits_reactions_and_deletion():
    m = message(1)
    edited = {"type": "edited", "target": 1, "body": "new", "html": "<em>new</em>"}
    m = current_state(m, {**edited, "mentions": ["bob"], "ts": "T2"})
    assert (m["body"], m["html"], m["mentions"], m["edited_at"]) == (
        "new",
        "<em>new</em>",
        ["bob"],
        "T2",
    )
    react = {"type": "reaction", "target": 1, "op": "add"}
    m = current_state(m, {**react, "emoji": "👍", "user": "bob"})
    m = current_state(m, {**react, "emoji": "🎉", "user": "alice"})
    m = current_state(m, {**react, "emoji": "👍", "user": "alice"})
    m = current_state(m, {**react, "emoji": "👍", "user": "alice"})  # already there
    assert m["reactions"] == [
        {"emoji": "👍", "users": ["bob", "alice"]},
        {"emoji": "🎉", "users": ["alice"]},
    ]
    m = current_state(m, {**react, "op": "remove", "emoji": "🎉", "user": "alice"})
    assert m["reactions"] == [{"emoji": "👍", "users": ["bob", "alice"]}]
    m = current_state(m, {"type": "deleted", "target": 1, "user": "alice"})
    assert m["deleted"] is True and (m["body"], m["html"], m["reactions"]) == ("", "", [])
    # Nothing brings a deleted message back.
    assert current_state(m, {**edited, "ts": "T3"}) == m


def test_current_state_does_not_change_the_event_it_was_given():
    m = message(1, reactions=[{"emoji": "👍", "users": ["bob"]}])
    react = {"type": "reaction", "target": 1, "op": "add", "emoji": "👍", "user": "carol"}
    current_state(m, react)
    assert m["reactions"] == [{"emoji": "👍", "users": ["bob"]}]


def test_a_replay_from_the_ring_shows_current_state(hub, store):
    room = load(hub)
    live = Recorder()
    hub.subscribe(room, live, None)
    hub.deliver(OutboundEvent(message(1)))
    hub.deliver(OutboundEvent(message(2)))
    edit = {"type": "edited", "room": "lobby", "seq": 3, "target": 1, "user": "alice"}
    hub.deliver(OutboundEvent({**edit, "body": "fixed", "html": "fixed", "mentions": []}))
    react = {"type": "reaction", "room": "lobby", "target": 2, "user": "bob", "op": "add"}
    hub.deliver(OutboundEvent({**react, "seq": 4, "emoji": "👍"}))
    hub.deliver(OutboundEvent({"type": "deleted", "room": "lobby", "seq": 5, "target": 99}))
    late = Recorder()
    hub.subscribe(room, late, 0)
    replayed = [e.event for e in late.events if e.seq is not None]
    assert [e["seq"] for e in replayed] == [1, 2, 3, 4, 5]
    assert replayed[0]["body"] == "fixed"
    assert replayed[1]["reactions"] == [{"emoji": "👍", "users": ["bob"]}]
    # Live subscribers got each event as it came: the original message, then the edit.
    assert live.events[1].event["body"] == "hi"
