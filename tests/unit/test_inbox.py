"""The inbox's counts (chat/live/inbox.py, inbox_rooms.py) on the fake live core: what a
member sees for each event, recounts, reads, membership and access changes, and that a
process follows a room with one watcher however many members are connected."""

from __future__ import annotations

import json

import pytest
from live_fakes import ALICE, BOB, fired
from test_read_tracker import RunStore
from twisted.internet import defer

from chat.live.events import OutboundEvent
from chat.live.inbox import InboxHub
from chat.live.inbox_reads import StreamCheck
from chat.live.publish import AccessChange
from chat.live.records import ReadNotice, UserInfo
from chat.live.store import StoreUnavailable

CAROL = UserInfo(3, "carol")


class Stream:
    """An InboxStream that keeps the frames it was sent, parsed."""

    def __init__(self, user: UserInfo, session_key: str | None = "s-1") -> None:
        self.user = user
        self.session_key = session_key
        self.ready = False
        self.frames: list[dict] = []
        self.kinds: list[bytes] = []
        self.dropped: str | None = None

    def hello(self, payload: bytes) -> None:
        self.frames.append(json.loads(payload))

    def push(self, kind: bytes, payload: bytes) -> None:
        frame = json.loads(payload)
        assert frame["type"].encode() == kind
        self.kinds.append(kind)
        self.frames.append(frame)

    def drop(self, reason: str) -> None:
        self.dropped = reason

    def of_type(self, kind: str) -> list[dict]:
        return [f for f in self.frames if f["type"] == kind]


class Django:
    """What member_rooms and counts would read: the rooms' logs and each member's position."""

    def __init__(self, store) -> None:
        self.store = store
        self.members: dict[str, dict[int, int]] = {"lobby": {}}  # slug -> user -> read_seq
        self.usernames = {u.id: u.username for u in (ALICE, BOB, CAROL)}
        self.member_reads = 0
        self.recounts: list[tuple[str, list[int]]] = []
        self.hold_recounts = False
        self.held: list[tuple[defer.Deferred, object, list[int]]] = []
        self.checks: list[tuple[list[str], list[int]]] = []

    def last_seq(self, slug: str) -> int:
        log = self.store.log.get(slug, [])
        return log[-1]["seq"] if log else 0

    def count(self, slug: str, user_id: int) -> tuple[int, int, int]:
        read = self.members[slug][user_id]
        name = self.usernames[user_id]
        deleted = {e["target"] for e in self.store.log[slug] if e["type"] == "deleted"}
        live = [
            e
            for e in self.store.log[slug]
            if e["type"] == "message" and e["seq"] > read and e["seq"] not in deleted
        ]
        others = [e for e in live if e["user"] != name]
        return read, len(others), sum(name in e.get("mentions", ()) for e in others)

    def member_rooms(self, user_id: int) -> list[dict]:
        self.member_reads += 1
        rooms = []
        for slug, members in self.members.items():
            if user_id in members:
                read, unread, mentions = self.count(slug, user_id)
                rooms.append(
                    {"slug": slug, "name": slug, "last_seq": self.last_seq(slug)}
                    | {"read_seq": read, "unread": unread, "mentions": mentions}
                )
        return rooms

    def recount(self, info, user_ids: list[int]):
        self.recounts.append((info.slug, list(user_ids)))
        answer = (
            self.last_seq(info.slug),
            {
                u: self.count(info.slug, u)
                for u in user_ids
                if u in self.members.get(info.slug, {})
            },
        )
        return answer

    def check(
        self, sessions: list[str], user_ids: list[int], keep: list[str] | None = None
    ) -> StreamCheck:
        """inbox_reads.check_streams: the store's ``sessions`` say whom a session signs in
        (an account in its ``inactive``: nobody); memberships are ``members``."""
        self.checks.append((list(sessions), list(user_ids)))
        signed = {}
        for key in sessions:
            user_id = self.store.sessions.get(key)
            signed[key] = None if user_id in self.store.inactive else user_id
        rooms = {
            u: frozenset(slug for slug, members in self.members.items() if u in members)
            for u in user_ids
        }
        return StreamCheck(signed, {u: slugs for u, slugs in rooms.items() if slugs})


@pytest.fixture
def django_side(store):
    return Django(store)


@pytest.fixture
def inbox(clock, hub, django_side):
    run_store = RunStore()
    run_store.log = django_side.store.log
    return InboxHub(
        clock,
        hub,
        run_store,
        member_rooms=django_side.member_rooms,
        recount=django_side.recount,
        check=django_side.check,
    )


def say(hub, store, seq: int, user: str = "bob", room: str = "lobby", mentions=(), **extra):
    event = {
        "type": "message",
        "room": room,
        "seq": seq,
        "user": user,
        "body": f"m{seq}",
        "mentions": list(mentions),
        **extra,
    }
    store.log.setdefault(room, []).append(event)
    hub.deliver(OutboundEvent(event))
    return event


def act(hub, store, seq: int, kind: str, target: int, user: str = "bob", mentions=()):
    event = {"type": kind, "room": "lobby", "seq": seq, "target": target, "user": user}
    if kind == "edited":
        event["mentions"] = list(mentions)
    store.log["lobby"].append(event)
    hub.deliver(OutboundEvent(event))


def open_stream(inbox, clock, user=ALICE, session_key="s-1") -> Stream:
    stream = Stream(user, session_key)
    d = inbox.attach(stream)
    clock.advance(0)
    fired(d)
    inbox.start(stream)
    return stream


def test_the_hello_lists_the_member_rooms_with_their_counts(inbox, clock, hub, store, django_side):
    for seq in (1, 2, 3):
        say(hub, store, seq, mentions=["alice"] if seq == 3 else ())
    django_side.members["lobby"] = {ALICE.id: 1, BOB.id: 0}
    stream = open_stream(inbox, clock)
    (hello,) = stream.frames
    assert hello["type"] == "hello" and hello["user"] == "alice"
    (room,) = hello["rooms"]
    assert (room["slug"], room["read_seq"], room["unread"], room["mentions"]) == ("lobby", 1, 2, 1)
    assert room["last_seq"] == 3


def test_activity_counts_others_messages_and_mentions_not_ones_own(
    inbox, clock, hub, store, django_side
):
    django_side.members["lobby"] = {ALICE.id: 0, BOB.id: 0}
    stream = open_stream(inbox, clock)
    say(hub, store, 1)
    say(hub, store, 2, mentions=["alice"])
    say(hub, store, 3, user="alice")
    activity = stream.of_type("activity")
    assert activity == [
        {"type": "activity", "room": "lobby", "seq": 1, "user": "bob", "kind": "message"}
        | {"mention": False, "unread": 1, "mentions": 0},
        {"type": "activity", "room": "lobby", "seq": 2, "user": "bob", "kind": "message"}
        | {"mention": True, "unread": 2, "mentions": 1},
    ]


def test_an_event_at_or_below_the_snapshot_is_not_counted_twice(
    inbox, clock, hub, store, django_side
):
    django_side.members["lobby"] = {ALICE.id: 0, BOB.id: 0}
    room = fired(hub.room(store._info("lobby")))
    store.log["lobby"].append({"type": "message", "room": "lobby", "seq": 1, "user": "bob"})
    # Committed before the snapshot, delivered to this process after it.
    stream = open_stream(inbox, clock)
    assert stream.frames[0]["rooms"][0]["unread"] == 1
    hub.deliver(OutboundEvent(store.log["lobby"][0]))
    assert room.last_seq == 1
    assert stream.of_type("activity") == []
    assert django_side.recounts == []


def test_events_delivered_before_the_room_was_followed_are_recounted(
    inbox, clock, hub, store, django_side
):
    django_side.members["lobby"] = {ALICE.id: 0, BOB.id: 0}
    real = django_side.member_rooms

    def snapshot_then_two_messages(user_id):
        # The snapshot is read, then two messages come before the room is watched.
        rooms = real(user_id)
        say(hub, store, 1)
        say(hub, store, 2)
        return rooms

    inbox._member_rooms = snapshot_then_two_messages
    fired(hub.room(store._info("lobby")))
    stream = open_stream(inbox, clock)
    assert django_side.recounts == [("lobby", [ALICE.id])]
    assert stream.frames[0]["rooms"][0]["unread"] == 2
    assert stream.frames[0]["rooms"][0]["last_seq"] == 2


def test_deleting_an_unread_message_seen_here_is_counted_in_memory(
    inbox, clock, hub, store, django_side
):
    django_side.members["lobby"] = {ALICE.id: 0, BOB.id: 0}
    stream = open_stream(inbox, clock)
    say(hub, store, 1, mentions=["alice"])
    say(hub, store, 2)
    act(hub, store, 3, "deleted", target=1)
    assert stream.of_type("activity")[-1] == {
        "type": "activity",
        "room": "lobby",
        "seq": 3,
        "user": "bob",
        "kind": "deleted",
        "mention": True,
        "unread": 1,
        "mentions": 0,
    }
    assert django_side.recounts == []


def test_deleting_a_read_message_or_a_non_message_changes_nothing(
    inbox, clock, hub, store, django_side
):
    say(hub, store, 1)
    django_side.members["lobby"] = {ALICE.id: 1, BOB.id: 0}
    stream = open_stream(inbox, clock)
    act(hub, store, 2, "deleted", target=1)
    say(hub, store, 3)
    act(hub, store, 4, "reaction", target=3)
    act(hub, store, 5, "deleted", target=4)
    assert [f["seq"] for f in stream.of_type("activity")] == [3]
    assert django_side.recounts == []


def test_deleting_an_old_unread_message_is_a_recount(inbox, clock, hub, store, django_side):
    say(hub, store, 1, mentions=["alice"])
    say(hub, store, 2)
    django_side.members["lobby"] = {ALICE.id: 0, BOB.id: 0}
    stream = open_stream(inbox, clock)
    act(hub, store, 3, "deleted", target=1)
    assert stream.of_type("activity") == []  # owed until the recount answers
    clock.advance(0)
    assert django_side.recounts == [("lobby", [ALICE.id])]
    (frame,) = stream.of_type("activity")
    got = (frame["seq"], frame["kind"], frame["unread"], frame["mentions"])
    assert got == (3, "deleted", 1, 0)


def test_events_during_a_recount_are_replayed_onto_its_answer(clock, hub, store, django_side):
    run_store = RunStore()
    inbox = InboxHub(
        clock, hub, run_store, member_rooms=django_side.member_rooms, recount=django_side.recount
    )
    say(hub, store, 1)
    django_side.members["lobby"] = {ALICE.id: 0, BOB.id: 0}
    stream = open_stream(inbox, clock)
    run_store.hold_runs = True
    act(hub, store, 2, "deleted", target=1)
    clock.advance(0)  # the recount is asked; its answer waits
    say(hub, store, 3)  # read by the recount (committed before it runs)
    run_store.hold_runs = False
    run_store.release_runs()  # the recount sees seqs 1..3
    say(hub, store, 4)  # after it
    unread = [(f["seq"], f["unread"]) for f in stream.of_type("activity")]
    assert unread == [(2, 1), (4, 2)]


def test_an_edit_that_adds_or_removes_a_mention_moves_mentions(
    inbox, clock, hub, store, django_side
):
    django_side.members["lobby"] = {ALICE.id: 0, BOB.id: 0}
    stream = open_stream(inbox, clock)
    say(hub, store, 1)
    act(hub, store, 2, "edited", target=1, mentions=["alice"])
    act(hub, store, 3, "edited", target=1, mentions=["alice"])  # no change: no frame
    act(hub, store, 4, "edited", target=1, mentions=[])
    frames = [
        (f["seq"], f["kind"], f["mention"], f["mentions"]) for f in stream.of_type("activity")
    ]
    assert frames == [(1, "message", False, 0), (2, "edited", True, 1), (4, "edited", False, 0)]


def test_a_read_moves_the_counts_and_sends_a_read_frame(inbox, clock, hub, store, django_side):
    django_side.members["lobby"] = {ALICE.id: 0, BOB.id: 0}
    stream = open_stream(inbox, clock)
    say(hub, store, 1)
    say(hub, store, 2)
    inbox.read_moved(ReadNotice(ALICE.id, "lobby", 2, 0, 0, 2))
    assert stream.of_type("read") == [
        {"type": "read", "room": "lobby", "seq": 2, "unread": 0, "mentions": 0}
    ]
    inbox.read_moved(ReadNotice(ALICE.id, "lobby", 1, 1, 0, 1))  # older news
    assert len(stream.of_type("read")) == 1
    assert inbox.position(ALICE.id, "lobby") == 2


def test_a_read_counted_before_events_seen_here_adds_them(inbox, clock, hub, store, django_side):
    django_side.members["lobby"] = {ALICE.id: 0, BOB.id: 0}
    stream = open_stream(inbox, clock)
    for seq in (1, 2, 3):
        say(hub, store, seq, mentions=["alice"] if seq == 3 else ())
    # Read to 1 in another process whose counts were exact through 1 only.
    inbox.read_moved(ReadNotice(ALICE.id, "lobby", 1, 0, 0, 1))
    assert stream.of_type("read")[-1] | {} == {
        "type": "read",
        "room": "lobby",
        "seq": 1,
        "unread": 2,
        "mentions": 1,
    }


def test_one_watcher_per_room_however_many_members_and_none_once_they_leave(
    inbox, clock, hub, store, django_side
):
    django_side.members["lobby"] = {ALICE.id: 0, BOB.id: 0, CAROL.id: 0}
    streams = [open_stream(inbox, clock, user) for user in (ALICE, BOB, CAROL)]
    streams.append(open_stream(inbox, clock, ALICE, "s-2"))
    room = hub.rooms["lobby"]
    assert len(room.watchers) == 1
    say(hub, store, 1, user="carol")
    assert [len(s.of_type("activity")) for s in streams] == [1, 1, 0, 1]
    assert django_side.member_reads == 3  # alice's second stream: from memory
    for stream in streams:
        inbox.detach(stream)
    clock.advance(0)
    assert room.watchers == []
    assert inbox.followed == {} and inbox.users == {}


def test_a_thousand_members_get_their_own_counts_from_one_prefix(
    inbox, clock, hub, store, django_side
):
    users = [UserInfo(100 + i, f"u{i}") for i in range(1000)]
    django_side.usernames.update({u.id: u.username for u in users})
    django_side.members["lobby"] = {u.id: 0 for u in users}
    streams = [open_stream(inbox, clock, u) for u in users]
    say(hub, store, 1, user="u0", mentions=["u1"])
    assert streams[0].of_type("activity") == []
    assert streams[1].of_type("activity")[0]["mention"] is True
    assert streams[2].of_type("activity")[0] | {} == {
        "type": "activity",
        "room": "lobby",
        "seq": 1,
        "user": "u0",
        "kind": "message",
        "mention": False,
        "unread": 1,
        "mentions": 0,
    }


def test_a_membership_change_sends_rooms(inbox, clock, hub, store, django_side):
    django_side.members["lobby"] = {ALICE.id: 0}
    store.log["attic"] = []
    stream = open_stream(inbox, clock)
    django_side.members["attic"] = {ALICE.id: 0}
    inbox.access_changed(AccessChange.room_changed("attic", (ALICE.id,)))
    clock.advance(0)
    (rooms,) = stream.of_type("rooms")
    assert [r["slug"] for r in rooms["rooms"]] == ["lobby", "attic"]
    assert "attic" in inbox.followed
    del django_side.members["lobby"]
    inbox.access_changed(AccessChange.room_changed("lobby"))  # everyone: its members here
    clock.advance(0)
    assert [r["slug"] for r in stream.of_type("rooms")[-1]["rooms"]] == ["attic"]
    clock.advance(0)
    assert "lobby" not in inbox.followed
    # A change about others, or that changes nothing, sends nothing.
    inbox.access_changed(AccessChange.room_changed("attic", (BOB.id,)))
    inbox.access_changed(AccessChange.room_changed("attic", (ALICE.id,)))
    clock.advance(0)
    assert len(stream.of_type("rooms")) == 2


def test_a_logout_ends_the_streams_of_that_session_only(inbox, clock, django_side):
    django_side.members["lobby"] = {ALICE.id: 0}
    one, two = open_stream(inbox, clock), open_stream(inbox, clock, ALICE, "s-2")
    inbox.access_changed(AccessChange.session_ended("s-1", ALICE.id))
    assert (one.dropped, two.dropped) == ("revoked", None)


def test_an_account_change_rechecks_the_sessions_of_its_streams(inbox, clock, django_side):
    django_side.members["lobby"] = {ALICE.id: 0, BOB.id: 0}
    alice, bob = open_stream(inbox, clock), open_stream(inbox, clock, BOB, "s-b")
    django_side.store.sessions.update({"s-1": None, "s-b": BOB.id})  # alice's: nobody now
    inbox.access_changed(AccessChange.accounts_changed((ALICE.id,)))
    assert django_side.checks == [(["s-1"], [])]  # her sessions only, no memberships
    assert (alice.dropped, bob.dropped) == ("revoked", None)


def test_an_unavailable_database_fails_the_attach_and_the_next_one_retries(
    inbox, clock, django_side
):
    django_side.members["lobby"] = {ALICE.id: 0}
    real = django_side.member_rooms

    def down(user_id):
        raise StoreUnavailable()

    django_side.member_rooms = down
    inbox._member_rooms = down
    stream = Stream(ALICE)
    failure = fired(inbox.attach(stream))
    assert failure.check(StoreUnavailable)
    inbox.detach(stream)
    inbox._member_rooms = real
    assert open_stream(inbox, clock).frames[0]["type"] == "hello"


def test_a_stream_closed_before_its_user_was_known_detaches_quietly(inbox, clock):
    """An inbox WebSocket that closes during its handshake has no user yet; its wrap-up
    detaches it all the same (a soak run logged AttributeError from here)."""
    stream = Stream(ALICE)
    stream.user = None
    inbox.detach(stream)  # nothing to undo, and no error
    assert open_stream(inbox, clock).frames[0]["type"] == "hello"
