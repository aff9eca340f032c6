"""One live room on its own: the seams of ordering, replay and long-poll that the hub's tests
reach only through the registry. Fake clock, in-memory store (tests/unit/conftest.py's),
no sockets.
"""

from __future__ import annotations

import dataclasses

import pytest
from live_fakes import ALICE, FakeStore, Recorder, event, fired

from chat.live.events import OutboundEvent
from chat.live.limits import LiveLimits
from chat.live.records import RoomInfo
from chat.live.room import LiveRoom


class Room:
    """A LiveRoom and what it told its hub."""

    def __init__(self, clock, store, **limits) -> None:
        self.shared: list[list[str]] = []
        self.idle_checks = 0
        self.limits = dataclasses.replace(LiveLimits(), **limits)
        self.room = LiveRoom(
            "lobby",
            clock,
            store,
            self.limits,
            share_presence=self.shared.append,
            maybe_idle=self._maybe_idle,
        )

    def _maybe_idle(self, room: LiveRoom) -> None:
        assert room is self.room
        self.idle_checks += 1


@pytest.fixture
def make_room(clock, store):
    def make(last_seq: int = 0, **limits) -> Room:
        made = Room(clock, store, **limits)
        made.room.start(RoomInfo(1, "lobby", True, False, last_seq))
        return made

    return make


def commit_and_receive(room: LiveRoom, store: FakeStore, *seqs: int) -> None:
    for seq in seqs:
        room.receive(OutboundEvent(store.commit(seq)))


def test_events_received_while_loading_are_put_in_order_at_start(clock, store):
    made = Room(clock, store)
    room = made.room
    store.commit(1)
    for seq in (3, 2, 2):
        room.receive(
            OutboundEvent(store.commit(seq) if seq > len(store.log["lobby"]) else event(seq))
        )
    assert not room.loaded and room.last_seq == 0
    room.start(RoomInfo(1, "lobby", True, False, 1))
    assert room.last_seq == 3
    assert [e.seq for e in room.ring] == [2, 3]


def test_a_replay_the_database_cannot_read_drops_the_subscriber(make_room, store):
    made = make_room(ring_size=2)
    room = made.room
    commit_and_receive(room, store, 1, 2, 3, 4)
    store.fail_reads = True
    sub = Recorder(ALICE)
    room.subscribe(sub, since=0)  # older than the ring: read from the store
    assert sub.dropped == "unavailable"
    assert sub not in room.subscribers and sub not in room.joining
    assert "alice" not in room.presence.counts
    assert made.idle_checks == 1


def test_a_joiner_that_falls_too_far_behind_is_dropped_as_slow(make_room, store):
    made = make_room(ring_size=2, max_join_hold=3)
    room = made.room
    commit_and_receive(room, store, 1, 2, 3)
    store.hold_reads = True
    slow, live = Recorder(), Recorder()
    room.subscribe(live, None)
    room.subscribe(slow, since=0)
    commit_and_receive(room, store, 4, 5, 6)
    assert slow.dropped is None  # three held: at the bound, not past it
    commit_and_receive(room, store, 7)
    assert slow.dropped == "slow" and slow not in room.joining
    store.release()  # the read it was waiting for comes back: nothing more for it
    assert slow.seqs == []
    assert live.seqs == [4, 5, 6, 7]


def test_more_events_behind_a_gap_than_max_held_are_read_at_once(make_room, store, clock):
    room = make_room(max_held=2).room
    sub = Recorder()
    room.subscribe(sub, None)
    for seq in (1, 2):
        store.commit(seq)  # never comes over the bus
    commit_and_receive(room, store, 3, 4)
    assert sub.seqs == [] and store.reads == 0  # waiting for the gap
    commit_and_receive(room, store, 5)
    assert sub.seqs == [1, 2, 3, 4, 5]  # no clock advance: filled at once
    assert clock.getDelayedCalls() == []


def test_a_failed_gap_read_is_retried_four_gap_waits_later(make_room, store, clock):
    made = make_room()
    room, wait = made.room, made.limits.gap_wait
    sub = Recorder()
    room.subscribe(sub, None)
    store.commit(1)
    commit_and_receive(room, store, 2)
    store.fail_reads = True
    clock.advance(wait)
    assert store.reads == 1 and sub.seqs == []
    store.fail_reads = False
    clock.advance(wait * 3.9)
    assert store.reads == 1  # the database is given room to recover
    clock.advance(wait * 0.2)
    assert sub.seqs == [1, 2]


def test_a_closed_room_leaves_no_timer_and_reads_nothing(make_room, store, clock):
    room = make_room().room
    store.commit(1)
    commit_and_receive(room, store, 2)  # a gap timer
    room.presence.lease("alice", 30)  # a lease timer
    room.close()
    assert clock.getDelayedCalls() == []
    room.catch_up()
    assert store.reads == 0


def test_catch_up_reads_to_the_end_page_by_page(make_room, store):
    room = make_room(poll_max_events=2).room
    sub = Recorder()
    room.subscribe(sub, None)
    for seq in range(1, 6):
        store.commit(seq)
    room.catch_up()
    assert sub.seqs == [1, 2, 3, 4, 5]
    assert store.reads == 3


def test_a_poll_from_the_ring_is_cut_at_poll_max_events(make_room, store):
    room = make_room(poll_max_events=2).room
    commit_and_receive(room, store, 1, 2, 3, 4)
    answer = fired(room.poll(0, 25, None))
    assert [e.seq for e in answer.events] == [1, 2] and answer.last_seq == 2
    assert store.reads == 0


def test_a_poll_older_than_the_ring_reads_the_store(make_room, store):
    room = make_room(ring_size=2).room
    commit_and_receive(room, store, 1, 2, 3, 4)
    answer = fired(room.poll(0, 25, None))
    assert [e.seq for e in answer.events] == [1, 2, 3, 4] and answer.last_seq == 4
    assert store.reads == 1


def test_ephemeral_events_answer_held_polls_with_the_cursor(make_room, store, clock):
    made = make_room()
    room = made.room
    commit_and_receive(room, store, 1)
    typer, other = Recorder(ALICE), Recorder()
    room.subscribe(typer, None)
    room.subscribe(other, None)
    answers = []
    room.poll(1, 25, None).addCallback(answers.append)
    room.typing(typer)
    assert [e.type for e in answers[0].events] == ["typing"]
    assert answers[0].last_seq == 1
    assert other.of_type("typing") and not typer.of_type("typing")
    assert not [c for c in clock.getDelayedCalls() if c.getTime() == 25]  # timer cancelled


def test_a_timed_out_poll_tells_the_hub_the_room_may_be_idle(make_room, clock):
    made = make_room()
    answers = []
    made.room.poll(None, 5, None).addCallback(answers.append)
    assert not made.room.is_empty()
    clock.advance(5)
    assert answers[0].events == [] and made.room.is_empty()
    assert made.idle_checks == 1
