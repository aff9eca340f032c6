"""The hub's ordering, replay, presence and long-poll logic, on a fake clock, no sockets.

The store is an in-memory stand-in whose reads can be held open, so the tests can put
live events exactly in the window between a replay's read and its answer.
"""

from __future__ import annotations

import pytest
from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock

from chat.live import hub as hub_module
from chat.live.events import OutboundEvent
from chat.live.hub import RoomHub
from chat.live.ratelimit import RateLimiter
from chat.live.records import RateLimit, RoomInfo, SendResult, UserInfo
from chat.live.store import StoreUnavailable

ALICE = UserInfo(1, "alice")
BOB = UserInfo(2, "bob")


def event(seq: int, room: str = "lobby") -> dict:
    return {"type": "message", "room": room, "seq": seq, "user": "alice", "body": f"m{seq}"}


class FakeStore:
    """The Store interface over a list; ``hold_reads`` parks reads until released."""

    def __init__(self) -> None:
        self.log: dict[str, list[dict]] = {"lobby": []}
        self.hold_reads = False
        self.held: list[tuple[defer.Deferred, list[dict]]] = []
        self.appended: list = []
        self.fail = False

    def commit(self, seq: int, room: str = "lobby") -> dict:
        item = event(seq, room)
        self.log.setdefault(room, []).append(item)
        return item

    def room(self, slug: str):
        if slug not in self.log:
            return defer.succeed(None)
        last = self.log[slug][-1]["seq"] if self.log[slug] else 0
        return defer.succeed(RoomInfo(1, slug, True, False, last))

    def read_since(self, room: RoomInfo, after: int, limit: int = 500):
        rows = [e for e in self.log[room.slug] if e["seq"] > after][:limit]
        if self.hold_reads:
            d: defer.Deferred = defer.Deferred()
            self.held.append((d, rows))
            return d
        return defer.succeed(rows)

    def release(self) -> None:
        held, self.held = self.held, []
        for d, rows in held:
            d.callback(rows)

    def append(self, request):
        self.appended.append(request)
        if self.fail:
            return defer.fail(StoreUnavailable())
        if request.lookup_only:
            return defer.succeed(SendResult(error="rate_limited"))
        seq = len(self.log[request.room]) + 1
        item = self.commit(seq, request.room)
        return defer.succeed(SendResult(seq=seq, event=item))


class Recorder:
    """A subscriber that remembers what it was sent."""

    transport_name = "test"

    def __init__(self, user: UserInfo | None = None) -> None:
        self.user = user
        self.hello: int | None = None
        self.events: list[OutboundEvent] = []
        self.dropped: str | None = None

    def started(self, last_seq: int) -> None:
        self.hello = last_seq

    def deliver(self, event: OutboundEvent) -> None:
        self.events.append(event)

    def drop(self, reason: str) -> None:
        self.dropped = reason

    @property
    def seqs(self) -> list[int]:
        return [e.seq for e in self.events if e.seq is not None]

    def of_type(self, kind: str) -> list[dict]:
        return [e.event for e in self.events if e.type == kind]


@pytest.fixture
def clock():
    return MemoryReactorClock()


@pytest.fixture
def store():
    return FakeStore()


@pytest.fixture
def published():
    return []


@pytest.fixture
def hub(clock, store, published):
    def publish(item, started=None):
        published.append(item)
        hub.deliver(OutboundEvent(item, started))

    hub = RoomHub(
        clock,
        store,
        publish=publish,
        rate_limiter=RateLimiter(RateLimit(3, 10.0), clock=clock.seconds),
        max_message_chars=100,
    )
    return hub


def load(hub: RoomHub, slug: str = "lobby"):
    d = hub.room(RoomInfo(1, slug, True, False, 0))
    result = []
    d.addCallback(result.append)
    assert result, "room did not load"
    return result[0]


def test_events_fan_out_in_seq_order_once(hub, store):
    room = load(hub)
    a, b = Recorder(), Recorder()
    hub.subscribe(room, a, None)
    hub.subscribe(room, b, None)
    for seq in (1, 2, 2, 3, 1):
        hub.deliver(
            OutboundEvent(store.commit(seq) if seq > len(store.log["lobby"]) else event(seq))
        )
    assert a.seqs == [1, 2, 3]
    assert b.seqs == [1, 2, 3]
    # The same bytes object goes to every subscriber: serialized once.
    assert a.events[-1] is b.events[-1]


def test_out_of_order_event_is_held_until_the_gap_arrives(hub, store):
    room = load(hub)
    sub = Recorder()
    hub.subscribe(room, sub, None)
    e1, e2, e3 = store.commit(1), store.commit(2), store.commit(3)
    hub.deliver(OutboundEvent(e3))
    hub.deliver(OutboundEvent(e2))
    assert sub.seqs == []
    hub.deliver(OutboundEvent(e1))
    assert sub.seqs == [1, 2, 3]


def test_missing_seq_is_read_from_the_store_after_the_gap_wait(hub, store, clock):
    room = load(hub)
    sub = Recorder()
    hub.subscribe(room, sub, None)
    store.commit(1)
    store.commit(2)
    e3 = store.commit(3)
    hub.deliver(OutboundEvent(e3))  # 1 and 2 never come over the bus
    clock.advance(hub_module.GAP_WAIT / 2)
    assert sub.seqs == []
    clock.advance(hub_module.GAP_WAIT)
    assert sub.seqs == [1, 2, 3]


def test_resume_from_the_ring_has_no_gap_and_no_duplicate(hub, store):
    room = load(hub)
    for seq in range(1, 6):
        hub.deliver(OutboundEvent(store.commit(seq)))
    sub = Recorder()
    hub.subscribe(room, sub, since=2)
    assert sub.hello == 5
    hub.deliver(OutboundEvent(store.commit(6)))
    assert sub.seqs == [3, 4, 5, 6]


def test_resume_older_than_the_ring_reads_the_store_and_holds_live_events(hub, store, monkeypatch):
    monkeypatch.setattr(hub_module, "RING_SIZE", 3)
    room = load(hub)
    room.ring = type(room.ring)(maxlen=3)
    for seq in range(1, 11):
        hub.deliver(OutboundEvent(store.commit(seq)))
    store.hold_reads = True
    sub = Recorder()
    hub.subscribe(room, sub, since=1)
    # Live events arrive while the old range is being read.
    hub.deliver(OutboundEvent(store.commit(11)))
    hub.deliver(OutboundEvent(store.commit(12)))
    assert sub.seqs == []
    store.release()
    hub.deliver(OutboundEvent(store.commit(13)))
    assert sub.seqs == list(range(2, 14))


def test_resume_reads_long_ranges_page_by_page(hub, store, monkeypatch):
    monkeypatch.setattr(hub_module, "POLL_MAX_EVENTS", 4)
    room = load(hub)
    for seq in range(1, 21):
        store.commit(seq)
    room.last_seq = 20  # the room was loaded after these were committed
    sub = Recorder()
    hub.subscribe(room, sub, since=0)
    assert sub.seqs == list(range(1, 21))
    assert sub in room.subscribers


def test_resume_from_a_seq_ahead_of_this_process_skips_what_the_client_has(hub, store):
    room = load(hub)
    sub = Recorder()
    hub.subscribe(room, sub, since=2)  # the client saw 1..2 elsewhere
    for seq in (1, 2, 3):
        hub.deliver(OutboundEvent(store.commit(seq)))
    assert sub.seqs == [3]
    assert sub in room.subscribers


def test_events_arriving_while_the_room_loads_are_not_lost(hub, store):
    store.commit(1)
    info = RoomInfo(1, "lobby", True, False, 0)
    pending = defer.Deferred()
    store.room = lambda slug: pending
    loaded = []
    hub.room(info).addCallback(loaded.append)
    # Committed after the room's last_seq was read, delivered before the read returns.
    hub.deliver(OutboundEvent(store.commit(2)))
    pending.callback(RoomInfo(1, "lobby", True, False, 1))
    room = loaded[0]
    assert room.last_seq == 2
    assert [e.seq for e in room.ring] == [2]


def test_presence_lists_users_and_follows_joins_and_leaves(hub):
    room = load(hub)
    a, b, anonymous = Recorder(ALICE), Recorder(BOB), Recorder(None)
    hub.subscribe(room, a, None)
    hub.subscribe(room, anonymous, None)
    hub.subscribe(room, b, None)
    assert a.of_type("presence")[-1]["users"] == ["alice", "bob"]
    assert anonymous.of_type("presence")[-1]["users"] == ["alice", "bob"]
    second_alice = Recorder(ALICE)
    hub.subscribe(room, second_alice, None)
    hub.unsubscribe(room, second_alice)  # alice still has a connection
    assert a.of_type("presence")[-1]["users"] == ["alice", "bob"]
    hub.unsubscribe(room, b)
    assert a.of_type("presence")[-1]["users"] == ["alice"]


def test_typing_is_throttled_and_not_echoed(hub, clock):
    room = load(hub)
    a, b = Recorder(ALICE), Recorder(BOB)
    hub.subscribe(room, a, None)
    hub.subscribe(room, b, None)
    hub.typing(room, a)
    hub.typing(room, a)
    assert len(b.of_type("typing")) == 1
    assert a.of_type("typing") == []
    clock.advance(hub_module.TYPING_INTERVAL + 0.1)
    hub.typing(room, a)
    assert len(b.of_type("typing")) == 2


def test_poll_answers_at_once_when_events_are_newer(hub, store):
    room = load(hub)
    for seq in range(1, 4):
        hub.deliver(OutboundEvent(store.commit(seq)))
    answers = []
    hub.poll(room, 1, 25, None).addCallback(answers.append)
    assert [e.seq for e in answers[0].events] == [2, 3]
    assert answers[0].last_seq == 3


def test_poll_waits_for_the_next_event_then_times_out_empty(hub, store, clock):
    room = load(hub)
    answers = []
    hub.poll(room, 0, 25, None).addCallback(answers.append)
    assert answers == []
    hub.deliver(OutboundEvent(store.commit(1)))
    assert [e.seq for e in answers[0].events] == [1]
    hub.poll(room, 1, 5, None).addCallback(answers.append)
    clock.advance(5.1)
    assert answers[1].events == [] and answers[1].last_seq == 1


def test_poll_ahead_of_the_room_does_not_get_an_event_it_has(hub, store):
    room = load(hub)
    answers = []
    hub.poll(room, 2, 25, None).addCallback(answers.append)
    hub.deliver(OutboundEvent(store.commit(1)))
    hub.deliver(OutboundEvent(store.commit(2)))
    assert answers == []
    hub.deliver(OutboundEvent(store.commit(3)))
    assert [e.seq for e in answers[0].events] == [3]


def test_cancelled_poll_is_forgotten(hub):
    room = load(hub)
    d = hub.poll(room, 0, 25, None)
    d.addErrback(lambda f: f.trap(defer.CancelledError))
    d.cancel()
    assert room.waiters == set()


def results_of(d: defer.Deferred) -> SendResult:
    out = []
    d.addCallback(out.append)
    return out[0]


@pytest.mark.parametrize(
    ("user", "body", "client_id", "code"),
    [
        (None, "hi", None, "forbidden"),
        (ALICE, "", None, "bad_request"),
        (ALICE, "   ", None, "bad_request"),
        (ALICE, 42, None, "bad_request"),
        (ALICE, "x" * 101, None, "too_large"),
        (ALICE, "hi", "c" * 65, "bad_request"),
        (ALICE, "hi", 7, "bad_request"),
    ],
)
def test_bad_sends_never_reach_the_store(hub, store, user, body, client_id, code):
    assert results_of(hub.send("lobby", user, body, client_id)).error == code
    assert store.appended == []


def test_send_publishes_after_commit_and_rate_limits(hub, store, published, clock):
    load(hub)
    for n in range(3):
        assert results_of(hub.send("lobby", ALICE, f"m{n}", f"c{n}")).seq == n + 1
    assert [e["seq"] for e in published] == [1, 2, 3]
    limited = results_of(hub.send("lobby", ALICE, "one too many", "c9"))
    assert limited.error == "rate_limited"
    assert store.appended[-1].lookup_only  # asked the store whether c9 is a resend
    assert results_of(hub.send("lobby", BOB, "bob is not limited", None)).seq == 4
    clock.advance(10)
    assert results_of(hub.send("lobby", ALICE, "later", "c10")).seq == 5


def test_send_when_the_database_is_down_is_unavailable(hub, store):
    store.fail = True
    assert results_of(hub.send("lobby", ALICE, "hi", None)).error == "unavailable"


def test_drop_all_ends_subscriptions_and_polls(hub):
    room = load(hub)
    sub = Recorder(ALICE)
    hub.subscribe(room, sub, None)
    answers = []
    hub.poll(room, None, 25, None).addCallback(answers.append)
    hub.drop_all("shutdown")
    assert sub.dropped == "shutdown"
    assert answers[0].events == []
    assert room.subscribers == set()


def test_idle_room_is_forgotten(hub, clock):
    room = load(hub)
    sub = Recorder()
    hub.subscribe(room, sub, None)
    hub.unsubscribe(room, sub)
    clock.advance(hub_module.ROOM_IDLE + 1)
    assert "lobby" not in hub.rooms


def test_a_newcomer_gets_presence_right_after_hello_including_itself(hub):
    room = load(hub)
    a = Recorder(ALICE)
    hub.subscribe(room, a, None)
    assert [e.type for e in a.events] == ["presence"]
    assert a.of_type("presence")[0]["users"] == ["alice"]
    b = Recorder(BOB)
    hub.subscribe(room, b, None)
    assert b.of_type("presence") == [
        {"type": "presence", "room": "lobby", "users": ["alice", "bob"]}
    ]
    assert a.of_type("presence")[-1]["users"] == ["alice", "bob"]


def test_replay_from_the_ring_shows_a_deleted_message_without_its_body(hub, store):
    room = load(hub)
    for seq in (1, 2):
        hub.deliver(OutboundEvent(store.commit(seq)))
    deleted = {"type": "deleted", "room": "lobby", "seq": 3, "target": 1}
    store.log["lobby"].append(deleted)
    hub.deliver(OutboundEvent(deleted))
    sub = Recorder()
    hub.subscribe(room, sub, since=0)
    replayed = [e.event for e in sub.events if e.seq is not None]
    assert replayed[0]["body"] == "" and replayed[0]["deleted"] is True
    assert replayed[1]["body"] == "m2" and "deleted" not in replayed[1]
    assert replayed[2] == deleted


def test_the_presence_list_is_rebuilt_when_it_changes(hub):
    room = load(hub)
    first, second = Recorder(None), Recorder(None)
    hub.subscribe(room, first, None)
    hub.subscribe(room, second, None)
    assert first.events[-1] is second.events[-1]  # one frame for joins with no change
    alice = Recorder(ALICE)
    hub.subscribe(room, alice, None)
    assert second.of_type("presence")[-1]["users"] == ["alice"]
    hub.set_remote_presence("lobby", frozenset({"zed"}))
    assert second.of_type("presence")[-1]["users"] == ["alice", "zed"]
    hub.unsubscribe(room, alice)
    assert second.of_type("presence")[-1]["users"] == ["zed"]


def test_catch_up_reads_what_the_bus_never_brought_page_by_page(hub, store, monkeypatch):
    monkeypatch.setattr(hub_module, "POLL_MAX_EVENTS", 3)
    room = load(hub)
    sub = Recorder()
    hub.subscribe(room, sub, None)
    for seq in range(1, 8):
        store.commit(seq)  # committed elsewhere; nothing came over the bus
    hub.catch_up("lobby")
    assert sub.seqs == list(range(1, 8))
