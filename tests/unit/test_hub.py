"""The hub's ordering, replay, presence and long-poll logic, on a fake clock, no sockets.

The store is an in-memory stand-in whose reads can be held open, so the tests can put
live events exactly in the window between a replay's read and its answer. The clock, the
store, the bus and ``hub``/``make_hub`` are tests/unit/conftest.py's.
"""

from __future__ import annotations

import pytest
from live_fakes import (
    ALICE,
    BOB,
    Recorder,
    event,
    fired,
)
from twisted.internet import defer

from chat.live.events import OutboundEvent
from chat.live.hub import RoomHub
from chat.live.limits import LiveLimits
from chat.live.records import RoomInfo, SendResult, UserInfo

LIMITS = LiveLimits()


@pytest.fixture
def published(bus):
    return bus.published


def load(hub: RoomHub, slug: str = "lobby"):
    return fired(hub.room(RoomInfo(1, slug, True, False, 0)))


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
    clock.advance(LIMITS.gap_wait / 2)
    assert sub.seqs == []
    clock.advance(LIMITS.gap_wait)
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


def test_resume_older_than_the_ring_reads_the_store_and_holds_live_events(make_hub, store):
    hub = make_hub(ring_size=3)
    room = load(hub)
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


def test_resume_reads_long_ranges_page_by_page(make_hub, store):
    hub = make_hub(poll_max_events=4)
    room = load(hub)
    for seq in range(1, 21):
        store.commit(seq)
    room.last_seq = 20  # the room was loaded after these were committed
    sub = Recorder()
    hub.subscribe(room, sub, since=0)
    assert sub.seqs == list(range(1, 21))
    assert store.reads == 5  # 20 events, 4 a page
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


def test_presence_lists_users_and_follows_joins_and_leaves(hub, clock):
    room = load(hub)
    a, b, anonymous = Recorder(ALICE), Recorder(BOB), Recorder(None)
    hub.subscribe(room, a, None)
    hub.subscribe(room, anonymous, None)
    hub.subscribe(room, b, None)
    clock.advance(LIMITS.presence_interval)  # changes are broadcast at most this often
    assert a.of_type("presence")[-1]["users"] == ["alice", "bob"]
    assert anonymous.of_type("presence")[-1]["users"] == ["alice", "bob"]
    second_alice = Recorder(ALICE)
    hub.subscribe(room, second_alice, None)
    hub.unsubscribe(room, second_alice)  # alice still has a connection
    clock.advance(LIMITS.presence_interval)
    assert a.of_type("presence")[-1]["users"] == ["alice", "bob"]
    hub.unsubscribe(room, b)
    clock.advance(LIMITS.presence_interval)
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
    clock.advance(LIMITS.typing_interval + 0.1)
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
    result = fired(d)
    assert isinstance(result, SendResult), result
    return result


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
    room = load(hub)
    sub = Recorder()
    hub.subscribe(room, sub, None)
    for n in range(3):
        assert results_of(hub.send("lobby", ALICE, f"m{n}", f"c{n}")).seq == n + 1
    assert [e["seq"] for e in published] == [1, 2, 3]
    assert sub.seqs == [1, 2, 3]  # delivered here without waiting for the bus
    appended = len(store.appended)
    limited = results_of(hub.send("lobby", ALICE, "one too many", "c9"))
    assert limited.error == "rate_limited"
    assert limited.retry_after == pytest.approx(3.4)  # 3 a 10 s: a token every 3.33 s
    assert len(store.appended) == appended  # refused without asking the store
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
    clock.advance(LIMITS.room_idle + 1)
    assert "lobby" not in hub.rooms


def test_a_newcomer_gets_presence_right_after_hello_including_itself(hub, clock):
    room = load(hub)
    a = Recorder(ALICE)
    hub.subscribe(room, a, None)
    assert [e.type for e in a.events] == ["presence"]
    assert a.of_type("presence")[0]["users"] == ["alice"]
    b = Recorder(BOB)
    hub.subscribe(room, b, None)  # within the presence interval of alice's join
    assert b.of_type("presence") == [
        {"type": "presence", "room": "lobby", "users": ["alice", "bob"]}
    ]
    clock.advance(LIMITS.presence_interval)
    assert a.of_type("presence")[-1]["users"] == ["alice", "bob"]
    # The coalesced broadcast skips bob, who was sent that very list when he joined.
    assert len(b.of_type("presence")) == 1


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


def test_the_presence_list_is_rebuilt_when_it_changes(hub, clock):
    room = load(hub)
    first, second = Recorder(None), Recorder(None)
    hub.subscribe(room, first, None)
    hub.subscribe(room, second, None)
    assert first.events[-1] is second.events[-1]  # one frame for joins with no change
    alice = Recorder(ALICE)
    hub.subscribe(room, alice, None)
    assert second.of_type("presence")[-1]["users"] == ["alice"]
    hub.set_remote_presence("lobby", frozenset({"zed"}))
    clock.advance(LIMITS.presence_interval)
    assert second.of_type("presence")[-1]["users"] == ["alice", "zed"]
    hub.unsubscribe(room, alice)
    clock.advance(LIMITS.presence_interval)
    assert second.of_type("presence")[-1]["users"] == ["zed"]


def test_catch_up_reads_what_the_bus_never_brought_page_by_page(make_hub, store):
    hub = make_hub(poll_max_events=3)
    room = load(hub)
    sub = Recorder()
    hub.subscribe(room, sub, None)
    for seq in range(1, 8):
        store.commit(seq)  # committed elsewhere; nothing came over the bus
    hub.catch_up("lobby")
    assert sub.seqs == list(range(1, 8))


# -- the write path over the rate limit (issue 9) -----------------------------------------


def test_a_flood_over_the_limit_costs_no_store_call(hub, store, clock):
    load(hub)
    for n in range(3):
        results_of(hub.send("lobby", ALICE, f"m{n}", f"c{n}"))
    appended = len(store.appended)
    for n in range(1000):
        result = results_of(hub.send("lobby", ALICE, "flood", f"flood-{n}"))
        assert result.error == "rate_limited" and result.retry_after > 0
        result = results_of(hub.send("lobby", ALICE, "flood", None))
        assert result.error == "rate_limited"
    assert len(store.appended) == appended
    assert store.reads == 0
    clock.advance(result.retry_after)  # the wait it was told is enough
    assert results_of(hub.send("lobby", ALICE, "after the wait", "c-after")).created


def test_a_resend_over_the_limit_gets_its_seq_without_the_store(hub, store):
    load(hub)
    seqs = [results_of(hub.send("lobby", ALICE, f"m{n}", f"c{n}")).seq for n in range(3)]
    assert results_of(hub.send("lobby", ALICE, "over", "c-new")).error == "rate_limited"
    appended = len(store.appended)
    resend = results_of(hub.send("lobby", ALICE, "the rest is ignored", "c1"))
    assert (resend.seq, resend.created, resend.error) == (seqs[1], False, None)
    assert len(store.appended) == appended
    # Keyed by room and user: bob's c1 and alice's c1 elsewhere are other sends.
    assert results_of(hub.send("lobby", BOB, "bob's own", "c1")).seq == 4
    store.log["other"] = []
    assert results_of(hub.send("other", ALICE, "other room", "c1")).error == "rate_limited"


def test_resends_do_not_count_against_the_limit(hub, store):
    load(hub)
    first = results_of(hub.send("lobby", ALICE, "once", "c0"))
    for _ in range(5):
        assert results_of(hub.send("lobby", ALICE, "again", "c0")).seq == first.seq
    assert len(store.appended) == 1  # answered from the acks, no store call
    assert results_of(hub.send("lobby", ALICE, "second", "c1")).created
    assert results_of(hub.send("lobby", ALICE, "third", "c2")).created
    assert results_of(hub.send("lobby", ALICE, "fourth", "c3")).error == "rate_limited"


def test_a_forgotten_ack_is_refused_over_the_limit_then_answered_by_the_store(
    make_hub, store, clock
):
    hub = make_hub(recent_acks=1)
    load(hub)
    seqs = [results_of(hub.send("lobby", ALICE, f"m{n}", f"c{n}")).seq for n in range(3)]
    assert len(hub.acks) == 1  # the bound holds: c0 and c1 are forgotten
    appended = len(store.appended)
    refused = results_of(hub.send("lobby", ALICE, "resend", "c0"))
    assert refused.error == "rate_limited" and refused.retry_after > 0
    assert len(store.appended) == appended
    clock.advance(refused.retry_after)
    resend = results_of(hub.send("lobby", ALICE, "resend", "c0"))
    assert (resend.seq, resend.created) == (seqs[0], False)  # the store knew it
    # ... and it was refunded: the token it took is back for a new send.
    assert results_of(hub.send("lobby", ALICE, "new", "c-new")).created


def test_a_send_is_delivered_here_and_published_once(hub, store, bus):
    room = load(hub)
    sub = Recorder()
    hub.subscribe(room, sub, None)
    result = results_of(hub.send("lobby", ALICE, "hello", "c0"))
    assert sub.seqs == [result.seq]
    assert [e["seq"] for e in bus.published] == [result.seq]
    hub.deliver(OutboundEvent(dict(bus.published[0])))  # the bus's echo
    assert sub.seqs == [result.seq]


# -- presence, coalesced (issue 9) ------------------------------------------------------


def test_a_hundred_joins_and_leaves_in_one_interval_are_a_couple_of_broadcasts(
    hub, clock, presence_store
):
    room = load(hub)
    watcher = Recorder(ALICE)
    hub.subscribe(room, watcher, None)
    clock.advance(LIMITS.presence_interval * 2)
    before, shared_before = len(watcher.of_type("presence")), len(presence_store.shared)
    visitors = [Recorder(UserInfo(100 + n, f"user{n:03}")) for n in range(100)]
    for n, visitor in enumerate(visitors):
        hub.subscribe(room, visitor, None)
        # A first connection gets the current list at once, itself in it.
        assert visitor.of_type("presence")[-1]["users"][-1] == f"user{n:03}"
        clock.advance(LIMITS.presence_interval / 400)
        if n % 2:
            hub.unsubscribe(room, visitor)
    clock.advance(LIMITS.presence_interval)
    broadcasts = watcher.of_type("presence")[before:]
    assert 1 <= len(broadcasts) <= 2, [b["users"][:3] for b in broadcasts]
    expected = ["alice", *(f"user{n:03}" for n in range(0, 100, 2))]
    assert broadcasts[-1]["users"] == expected
    assert len(presence_store.shared) - shared_before <= 2
    assert presence_store.shared[-1] == ("lobby", expected)


def test_one_account_toggling_is_at_most_one_broadcast_per_interval(hub, clock):
    room = load(hub)
    watcher = Recorder(ALICE)
    hub.subscribe(room, watcher, None)
    clock.advance(LIMITS.presence_interval * 2)
    before = len(watcher.of_type("presence"))
    toggles = 90  # 30 a second for 3 seconds
    for n in range(toggles):
        bob = Recorder(BOB)
        hub.subscribe(room, bob, None)
        clock.advance(1 / 60)
        if n < toggles - 1:  # bob stays after the last one
            hub.unsubscribe(room, bob)
        clock.advance(1 / 60)
    clock.advance(LIMITS.presence_interval)
    broadcasts = watcher.of_type("presence")[before:]
    assert len(broadcasts) <= 3 / LIMITS.presence_interval + 1
    assert broadcasts[-1]["users"] == ["alice", "bob"]


def test_a_join_after_a_quiet_interval_is_broadcast_at_once(hub, clock):
    room = load(hub)
    watcher = Recorder(ALICE)
    hub.subscribe(room, watcher, None)
    clock.advance(LIMITS.presence_interval)
    hub.subscribe(room, Recorder(BOB), None)
    assert watcher.of_type("presence")[-1]["users"] == ["alice", "bob"]


def test_remote_presence_is_coalesced_with_local_changes(hub, clock):
    room = load(hub)
    watcher = Recorder(ALICE)
    hub.subscribe(room, watcher, None)
    before = len(watcher.of_type("presence"))
    for n in range(20):
        hub.set_remote_presence("lobby", frozenset({f"far{n}"}))
    clock.advance(LIMITS.presence_interval)
    broadcasts = watcher.of_type("presence")[before:]
    assert len(broadcasts) <= 2
    assert broadcasts[-1]["users"] == ["alice", "far19"]


def test_a_long_poll_user_is_present_for_its_lease(hub, clock):
    room = load(hub)
    watcher = Recorder(ALICE)
    hub.subscribe(room, watcher, None)
    clock.advance(LIMITS.presence_interval)
    hub.poll(room, None, 5, BOB).addErrback(lambda f: None)
    assert watcher.of_type("presence")[-1]["users"] == ["alice", "bob"]
    clock.advance(5 + LIMITS.poll_lease_grace - 0.1)
    assert watcher.of_type("presence")[-1]["users"] == ["alice", "bob"]
    clock.advance(0.1)  # the lease ends: bob's departure is told an interval later
    assert watcher.of_type("presence")[-1]["users"] == ["alice", "bob"]
    clock.advance(LIMITS.presence_interval)
    assert watcher.of_type("presence")[-1]["users"] == ["alice"]


# -- the registry -------------------------------------------------------------------------


def test_a_live_room_is_followed_until_it_is_forgotten(hub, clock, bus, presence_store):
    room = load(hub)
    assert bus.followed == {"lobby"} and presence_store.watched == {"lobby"}
    sub = Recorder(ALICE)
    hub.subscribe(room, sub, None)
    clock.advance(LIMITS.room_idle * 2)
    assert "lobby" in hub.rooms  # not idle while someone is in it
    hub.unsubscribe(room, sub)
    clock.advance(LIMITS.room_idle + 1)
    assert "lobby" not in hub.rooms
    assert bus.followed == set() and presence_store.watched == set()
    assert presence_store.shared[-1] == ("lobby", [])  # alice left before it was forgotten
    assert clock.getDelayedCalls() == []  # no timer of the forgotten room is left


def test_a_bus_reconnect_catches_up_the_rooms_behind_the_database(hub, store):
    room = load(hub)
    sub = Recorder()
    hub.subscribe(room, sub, None)
    for seq in range(1, 4):
        store.commit(seq)  # published while the bus was away
    hub.bus_reconnected()
    assert sub.seqs == [1, 2, 3]
