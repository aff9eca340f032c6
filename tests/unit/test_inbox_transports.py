"""/ws/me/, /events/me/, /poll/me/ on real Twisted HTTP channels (chat/live/inbox_web.py,
inbox_poll.py): who may open one, what goes over each, the poll sessions' bounds, and
the room paths still served next to them."""

from __future__ import annotations

import json

import pytest
from conftest import FakeLive, Peer, WSPeer
from live_fakes import ALICE, BOB
from test_inbox import Django, say
from test_read_tracker import RunStore
from twisted.web.resource import Resource
from twisted.web.server import Site

from chat.live import inbox_poll
from chat.live.inbox import InboxHub
from chat.live.inbox_poll import InboxPollResource, PollSessions
from chat.live.inbox_web import InboxEventStreamResource, InboxWebSocketResource, LiveRoutes
from chat.live.longpoll import LongPollResource
from chat.live.publish import AccessChange
from chat.live.sse import EventStreamResource
from chat.live.websocket import WebSocketResource


class InboxLive(FakeLive):
    def __init__(self, clock, hub, authorizer, limit, django_side) -> None:
        super().__init__(clock, hub, authorizer, limit)
        run_store = RunStore()
        self.inbox = InboxHub(
            clock,
            hub,
            run_store,
            member_rooms=django_side.member_rooms,
            recount=django_side.recount,
            check=django_side.check,
        )
        self.inbox_polls = PollSessions(clock, self.inbox)

    def site(self) -> Site:
        root = Resource()
        root.putChild(b"ws", LiveRoutes(WebSocketResource(self), InboxWebSocketResource(self)))
        root.putChild(
            b"events", LiveRoutes(EventStreamResource(self), InboxEventStreamResource(self))
        )
        root.putChild(b"poll", LiveRoutes(LongPollResource(self), InboxPollResource(self)))
        return Site(root, reactor=self.reactor, timeout=None)


@pytest.fixture
def django_side(store):
    side = Django(store)
    side.members["lobby"] = {ALICE.id: 0, BOB.id: 0}
    return side


@pytest.fixture
def ilive(clock, hub, authorizer, django_side):
    authorizer.sessions.update({"sa": ALICE, "sb": BOB})
    return InboxLive(clock, hub, authorizer, 50, django_side)


def open_me(peer: WSPeer, **kwargs) -> WSPeer:
    # WSPeer.open targets /ws/rooms/<slug>/: the same handshake, to /ws/me/.
    headers = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": WSPeer.KEY,
        **kwargs.pop("headers", {}),
    }
    from wsproto import ConnectionType
    from wsproto.connection import Connection

    peer.request("/ws/me/", headers=headers, **kwargs)
    peer.client = Connection(ConnectionType.CLIENT)
    peer._read = 0
    peer.frames = []
    return peer


def test_a_signed_in_user_gets_a_hello_then_activity(ilive, clock, hub, store):
    peer = open_me(WSPeer(ilive), session="sa")
    clock.advance(0)
    assert peer.upgraded
    (hello,) = peer.of_type("hello")
    assert hello["user"] == "alice" and [r["slug"] for r in hello["rooms"]] == ["lobby"]
    say(hub, store, 1)
    (activity,) = peer.of_type("activity")
    assert (activity["seq"], activity["unread"]) == (1, 1)


def test_anonymous_and_foreign_origins_are_refused(ilive, clock):
    for session, headers in ((None, {}), ("sa", {"Origin": "http://evil.example"})):
        peer = open_me(WSPeer(ilive), session=session, headers=headers)
        clock.advance(0)
        assert peer.response()[0] == 403
    peer = Peer(ilive).request("/events/me/")
    clock.advance(0)
    assert peer.response()[0] == 403
    peer = Peer(ilive).request("/poll/me/")
    clock.advance(0)
    assert peer.response()[0] == 403


def test_frames_sent_on_the_inbox_are_bad_requests_and_a_flood_closes_it(ilive, clock):
    peer = open_me(WSPeer(ilive), session="sa")
    clock.advance(0)
    peer.send_json({"type": "read", "room": "lobby", "seq": 1})
    (error,) = peer.of_type("error")
    assert error["code"] == "bad_request"
    assert peer.close_code is None  # kept
    for _ in range(10):
        peer.send_json({"type": "send", "body": "x"})
    assert peer.close_code == 1008


def test_a_logout_closes_the_inbox_with_4403(ilive, clock):
    peer = open_me(WSPeer(ilive), session="sa")
    clock.advance(0)
    ilive.inbox.access_changed(AccessChange.session_ended("sa", ALICE.id))
    assert peer.close_code == 4403


def test_the_inbox_counts_under_the_per_user_cap(clock, hub, authorizer, django_side):
    authorizer.sessions["sa"] = ALICE
    live = InboxLive(clock, hub, authorizer, 1, django_side)
    first = open_me(WSPeer(live), session="sa")
    clock.advance(0)
    assert first.upgraded
    second = Peer(live).request("/events/me/", session="sa")
    clock.advance(0)
    assert second.response()[0] == 429


def test_room_paths_still_work_and_other_me_paths_are_404(ilive, clock, store):
    room = WSPeer(ilive).open("lobby", session="sa")
    clock.advance(0)
    assert room.upgraded and room.of_type("hello")[0]["room"] == "lobby"
    for path in ("/ws/me/extra/", "/events/me/x", "/poll/mee/"):
        peer = Peer(ilive).request(path, session="sa")
        clock.advance(0)
        assert peer.response()[0] == 404, path
    peer = Peer(ilive).request("/poll/me/", method="POST", session="sa")
    assert peer.response()[0] == 405


def test_sse_frames_have_event_types_and_no_ids(ilive, clock, hub, store):
    peer = Peer(ilive).request("/events/me/", session="sa")
    clock.advance(0)
    say(hub, store, 1)
    status, headers, body = peer.response()
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    assert b"id:" not in body
    chunks = [c for c in body.split(b"\n\n") if c.startswith(b"event:")]
    assert [c.split(b"\n")[0] for c in chunks] == [b"event: hello", b"event: activity"]
    assert json.loads(chunks[1].split(b"data: ", 1)[1])["unread"] == 1


def poll(live, query: str = "", session: str = "sa") -> Peer:
    return Peer(live).request(f"/poll/me/{query}", session=session)


def test_a_poll_without_a_session_gets_a_hello_and_a_token_at_once(ilive, clock):
    peer = poll(ilive)
    clock.advance(0)
    status, body = peer.json()
    assert status == 200
    assert [e["type"] for e in body["events"]] == ["hello"]
    assert len(body["session"]) == 22


def test_a_poll_with_its_session_waits_for_activity(ilive, clock, hub, store):
    first = poll(ilive)
    clock.advance(0)
    token = first.json()[1]["session"]
    held = poll(ilive, f"?session={token}&timeout=30")
    clock.advance(0)
    assert held.transport.value() == b""  # held
    say(hub, store, 1)
    say(hub, store, 2)
    clock.advance(0)
    status, body = held.json()
    assert status == 200 and body["session"] == token
    assert [(e["type"], e["seq"]) for e in body["events"]] == [("activity", 1), ("activity", 2)]
    quiet = poll(ilive, f"?session={token}&timeout=5")
    clock.advance(5)
    assert quiet.json()[1]["events"] == []


def test_bad_tokens_and_timeouts(ilive, clock):
    for query in ("?session=short", "?session=" + "x" * 80, "?session=%FF" * 1, "?timeout=-1"):
        peer = poll(ilive, query)
        clock.advance(0)
        assert peer.response()[0] == 400, query
    # Well formed but unknown (or another user's): a new session.
    bob = poll(ilive, session="sb")
    clock.advance(0)
    token = bob.json()[1]["session"]
    for query in ("?session=" + "A" * 22, f"?session={token}"):
        peer = poll(ilive, query)
        clock.advance(0)
        _status, body = peer.json()
        assert body["events"][0]["type"] == "hello" and body["session"] != token
        assert body["events"][0]["user"] == "alice"


def test_an_overflowing_session_is_reset_to_a_fresh_hello(ilive, clock, hub, store, monkeypatch):
    monkeypatch.setattr(inbox_poll, "MAX_QUEUED", 3)
    first = poll(ilive)
    clock.advance(0)
    token = first.json()[1]["session"]
    for seq in range(1, 6):
        say(hub, store, seq)
    again = poll(ilive, f"?session={token}")
    clock.advance(0)
    (hello,) = again.json()[1]["events"]
    assert hello["type"] == "hello" and hello["rooms"][0]["unread"] == 5


def test_an_unpolled_session_expires_and_sessions_per_user_are_bounded(ilive, clock, monkeypatch):
    first = poll(ilive)
    clock.advance(0)
    token = first.json()[1]["session"]
    clock.advance(inbox_poll.SESSION_IDLE + 1)
    assert token not in ilive.inbox_polls.by_token
    assert ilive.inbox.users == {}  # and its inbox with it
    for _ in range(inbox_poll.MAX_SESSIONS_PER_USER + 3):
        poll(ilive)
        clock.advance(0)
    assert len(ilive.inbox_polls.by_user[ALICE.id]) == inbox_poll.MAX_SESSIONS_PER_USER


def test_a_logout_answers_a_held_poll_403(ilive, clock):
    first = poll(ilive)
    clock.advance(0)
    token = first.json()[1]["session"]
    held = poll(ilive, f"?session={token}")
    clock.advance(0)
    ilive.inbox.access_changed(AccessChange.session_ended("sa", ALICE.id))
    assert held.response()[0] == 403
