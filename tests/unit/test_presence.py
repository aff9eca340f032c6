"""Presence and typing of one room on their own: coalescing, leases, the typing throttle."""

from __future__ import annotations

import dataclasses

import pytest
from live_fakes import ALICE, BOB, Recorder
from twisted.internet.testing import MemoryReactorClock

from chat.live.limits import LiveLimits
from chat.live.presence import RoomPresence
from chat.live.records import UserInfo

LIMITS = LiveLimits()
INTERVAL = LIMITS.presence_interval


class Told:
    """What a RoomPresence broadcast and shared."""

    def __init__(self, clock, **limits) -> None:
        self.broadcasts: list[tuple[list[str], list]] = []
        self.shared: list[list[str]] = []
        self.leases_ended = 0
        self.presence = RoomPresence(
            "lobby",
            clock,
            dataclasses.replace(LIMITS, **limits),
            broadcast=lambda event, skip: self.broadcasts.append((event.event["users"], skip)),
            share=self.shared.append,
            lease_ended=self._lease_ended,
        )

    def _lease_ended(self) -> None:
        self.leases_ended += 1

    @property
    def lists(self) -> list[list[str]]:
        return [users for users, _skip in self.broadcasts]


@pytest.fixture
def clock():
    clock = MemoryReactorClock()
    clock.advance(1000)  # a real clock is far from zero; a fresh room has never flushed
    return clock


@pytest.fixture
def told(clock):
    return Told(clock)


def test_the_first_change_goes_out_at_once_and_the_next_at_the_end_of_the_interval(told, clock):
    presence = told.presence
    presence.join(Recorder(ALICE))
    assert told.lists == [["alice"]] and told.shared == [["alice"]]
    presence.join(Recorder(BOB))
    presence.join(Recorder(UserInfo(3, "carol")))
    assert told.lists == [["alice"]]
    clock.advance(INTERVAL - 0.01)
    assert told.lists == [["alice"]]
    clock.advance(0.01)
    assert told.lists == [["alice"], ["alice", "bob", "carol"]]
    assert told.shared == [["alice"], ["alice", "bob", "carol"]]


def test_a_reconnect_is_told_to_nobody(told, clock):
    """A departure waits an interval even after a quiet one, so a client that drops
    and comes back within it costs no broadcast (before: one at once, one after)."""
    presence = told.presence
    alice, bob = Recorder(ALICE), Recorder(BOB)
    presence.join(alice)
    presence.join(bob)
    clock.advance(10 * INTERVAL)
    sent = len(told.broadcasts)
    presence.leave(bob)
    clock.advance(INTERVAL / 2)
    presence.join(Recorder(BOB))  # back, on a new connection
    clock.advance(10 * INTERVAL)
    assert len(told.broadcasts) == sent
    presence.leave(alice)
    clock.advance(INTERVAL / 2)
    assert len(told.broadcasts) == sent  # a real departure: told an interval later
    clock.advance(INTERVAL / 2)
    assert told.lists[-1] == ["bob"]


def test_a_large_room_is_told_of_changes_less_often(clock):
    """Each broadcast is the whole list to everyone: in a room of 1,000 present, at most
    one per 4 intervals (250 users an interval), and never less often than 10 s."""
    told = Told(clock)
    presence = told.presence
    people = [Recorder(UserInfo(n, f"u{n:04}")) for n in range(1000)]
    for person in people:
        presence.join(person)
    assert len(told.broadcasts) == 1  # the first at once
    assert presence.interval() == 4 * INTERVAL
    clock.advance(INTERVAL)  # the joins after the first went out when there were two
    assert len(told.lists[-1]) == 1000
    presence.leave(people[0])
    clock.advance(3.9 * INTERVAL)
    assert len(told.broadcasts) == 2  # still within the stretched interval
    clock.advance(0.1 * INTERVAL)
    assert len(told.broadcasts) == 3 and "u0000" not in told.lists[-1]
    presence.set_remote(frozenset(f"r{n}" for n in range(100_000)))
    assert presence.interval() == LIMITS.presence_max_interval
    # A newcomer is still sent the list at once, whatever the interval.
    newcomer = Recorder(UserInfo(5000, "newcomer"))
    assert "u0001" in presence.join(newcomer).event["users"]


def test_a_leave_and_return_within_the_interval_costs_nothing(told, clock):
    presence = told.presence
    alice = Recorder(ALICE)
    presence.join(alice)
    clock.advance(INTERVAL / 2)
    for _ in range(50):
        presence.leave(alice)
        alice = Recorder(ALICE)
        presence.join(alice)
    clock.advance(INTERVAL * 3)
    assert told.lists == [["alice"]] and told.shared == [["alice"]]
    assert clock.getDelayedCalls() == []


def test_the_list_shared_with_other_processes_leaves_remote_users_out(told, clock):
    presence = told.presence
    presence.join(Recorder(ALICE))
    clock.advance(INTERVAL)
    presence.set_remote(frozenset({"zed"}))
    assert told.lists[-1] == ["alice", "zed"]
    assert told.shared == [["alice"]]  # the local list did not change: not shared again


def test_a_newcomer_sent_the_pending_list_is_skipped_by_its_broadcast(told, clock):
    presence = told.presence
    presence.join(Recorder(ALICE))
    bob = Recorder(BOB)
    assert presence.join(bob).event["users"] == ["alice", "bob"]
    carol = Recorder(UserInfo(3, "carol"))
    first_list = presence.join(Recorder(None))  # anonymous: no change, same list
    assert first_list.event["users"] == ["alice", "bob"]
    clock.advance(INTERVAL)
    (users, skip) = told.broadcasts[-1]
    assert users == ["alice", "bob"] and bob in skip and carol not in skip
    # Sent a list that changed again before the broadcast: not skipped.
    dave = Recorder(UserInfo(4, "dave"))
    presence.join(dave)
    presence.join(carol)
    clock.advance(INTERVAL)
    (users, skip) = told.broadcasts[-1]
    assert users == ["alice", "bob", "carol", "dave"]
    assert dave not in skip and carol in skip


def test_a_lease_is_renewed_by_each_poll_and_ends_the_user_when_it_runs_out(told, clock):
    presence = told.presence
    presence.lease("alice", 10)
    clock.advance(8)
    presence.lease("alice", 10)  # the next poll
    clock.advance(8)
    assert "alice" in presence.counts and told.leases_ended == 0
    clock.advance(2)
    assert "alice" not in presence.counts and told.leases_ended == 1
    assert presence.leases == {}
    assert told.lists == [["alice"]]
    clock.advance(INTERVAL)  # a departure is told an interval after it
    assert told.lists == [["alice"], []]


def test_typing_is_announced_once_per_interval_per_user(told, clock):
    presence = told.presence
    assert presence.typing("alice") is not None
    assert presence.typing("alice") is None
    assert presence.typing("bob") is not None  # another user is not throttled by alice
    clock.advance(LIMITS.typing_interval)
    event = presence.typing("alice")
    assert event.event == {"type": "typing", "room": "lobby", "user": "alice"}


def test_the_typing_throttle_forgets_users_who_stopped(told, clock):
    presence = told.presence
    for n in range(1000):
        presence.typing(f"user{n}")
    clock.advance(LIMITS.typing_interval * 2)
    presence.typing("alice")
    assert len(presence._typed_at) == 1


def test_clear_and_close_leave_nothing_pending(told, clock):
    presence = told.presence
    presence.join(Recorder(ALICE))
    presence.join(Recorder(BOB))  # a broadcast pending
    presence.lease("carol", 30)
    presence.clear()
    assert presence.counts == {} and presence.event().event["users"] == []
    presence.close()
    assert clock.getDelayedCalls() == []
    assert told.lists == [["alice"]]
