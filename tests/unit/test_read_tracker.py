"""ReadTracker (chat/live/reads.py): checks, coalescing, group commit, news of moves."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from live_fakes import ALICE, BOB, FakeStore, Recorder, RecordingBus, fired
from twisted.internet import defer

from chat.live.reads import ReadTracker, check_read_seq
from chat.live.records import ErrorCode, ReadNotice, UserInfo
from chat.live.store import StoreUnavailable


@dataclass(frozen=True)
class Result:  # chat.positions.ReadResult's shape
    read_seq: int
    unread: int
    mentions: int
    through: int
    moved: bool


class RunStore(FakeStore):
    """FakeStore with ``run``: synchronous, or parked while ``hold_runs``."""

    def __init__(self) -> None:
        super().__init__()
        self.hold_runs = False
        self.parked: list[tuple[defer.Deferred, object, tuple]] = []

    def run(self, fn, *args):
        if self.hold_runs:
            d: defer.Deferred = defer.Deferred()
            self.parked.append((d, fn, args))
            return d
        return defer.maybeDeferred(fn, *args)

    def release_runs(self) -> None:
        parked, self.parked = self.parked, []
        for d, fn, args in parked:
            defer.maybeDeferred(fn, *args).chainDeferred(d)


class BusWithReads(RecordingBus):
    def __init__(self) -> None:
        super().__init__()
        self.reads: list[ReadNotice] = []

    def announce_read(self, notice: ReadNotice) -> None:
        self.reads.append(notice)


class FakeInbox:
    def __init__(self) -> None:
        self.moved: list[ReadNotice] = []
        self.held: dict[tuple[int, str], int] = {}

    def read_moved(self, notice: ReadNotice) -> None:
        self.moved.append(notice)

    def position(self, user_id: int, slug: str) -> int | None:
        return self.held.get((user_id, slug))


class Positions:
    """mark_read_many over a dict, with its rules: members only, clamp, forward only."""

    def __init__(self, last_seq: int = 10) -> None:
        self.last_seq = last_seq
        self.members: dict[tuple[str, int], int] = {}  # (slug, user) -> read_seq
        self.calls: list[list[tuple]] = []
        self.fail: Exception | None = None

    def mark(self, items):
        self.calls.append(list(items))
        if self.fail is not None:
            raise self.fail
        out = []
        for slug, _room_id, user_id, seq in items:
            key = (slug, user_id)
            if key not in self.members:
                out.append(None)
                continue
            new = min(seq, self.last_seq)
            moved = new > self.members[key]
            if moved:
                self.members[key] = new
            read = self.members[key]
            out.append(Result(read, self.last_seq - read, 0, self.last_seq, moved))
        return out

    def positions(self, pairs):
        return {pair: 3 for pair in pairs if pair[1] in (ALICE.id, BOB.id)}


@pytest.fixture
def world(clock, hub):
    store = RunStore()
    bus = BusWithReads()
    inbox = FakeInbox()
    positions = Positions()
    positions.members = {("lobby", ALICE.id): 0, ("lobby", BOB.id): 0}
    tracker = ReadTracker(
        clock, store, hub, bus, inbox, mark=positions.mark, positions=positions.positions
    )
    return tracker, store, bus, inbox, positions


@pytest.mark.parametrize("seq", [-1, "5", 1.0, True, None, 2**63, [1], {"seq": 1}])
def test_a_seq_that_is_not_a_non_negative_integer_is_a_bad_request(world, seq):
    tracker, _store, _bus, _inbox, positions = world
    answer = fired(tracker.read("lobby", ALICE, seq))
    assert answer.error == ErrorCode.BAD_REQUEST
    assert check_read_seq(seq) is not None
    assert positions.calls == []


def test_anonymous_reads_are_forbidden_without_a_store_call(world):
    tracker, *_rest, positions = world
    assert fired(tracker.read("lobby", None, 3)).error == ErrorCode.FORBIDDEN
    assert positions.calls == []


def test_reads_of_one_turn_coalesce_into_one_write_of_the_highest_seq(world, clock):
    tracker, _store, _bus, _inbox, positions = world
    answers = [tracker.read("lobby", ALICE, seq) for seq in (5, 7, 3)]
    assert positions.calls == []  # written at the end of the turn
    clock.advance(0)
    assert positions.calls == [[("lobby", None, ALICE.id, 7)]]
    results = [fired(d) for d in answers]
    assert all(r.error is None for r in results)
    assert results[0].notice.read_seq == 7


def test_reads_of_many_users_share_one_transaction(world, clock):
    tracker, _store, _bus, _inbox, positions = world
    tracker.read("lobby", ALICE, 4)
    tracker.read("lobby", BOB, 6)
    clock.advance(0)
    assert len(positions.calls) == 1
    assert sorted(item[2:] for item in positions.calls[0]) == [(ALICE.id, 4), (BOB.id, 6)]


def test_one_write_in_flight_per_user_later_reads_raise_the_next_target(world, clock):
    tracker, store, _bus, _inbox, positions = world
    store.hold_runs = True
    first = tracker.read("lobby", ALICE, 2)
    clock.advance(0)
    assert len(store.parked) == 1
    later = [tracker.read("lobby", ALICE, seq) for seq in (5, 9, 8)]
    clock.advance(0)
    assert len(store.parked) == 1  # nothing more until the first is answered
    store.hold_runs = False
    store.release_runs()
    assert fired(first).notice.read_seq == 2
    assert positions.calls[-1] == [("lobby", None, ALICE.id, 9)]
    assert {fired(d).notice.read_seq for d in later} == {9}


def test_a_read_beyond_last_seq_is_clamped_and_a_step_back_changes_nothing(world, clock):
    tracker, _store, bus, _inbox, positions = world
    d = tracker.read("lobby", ALICE, 500)
    clock.advance(0)
    assert fired(d).notice.read_seq == 10
    # Known now: a read at or below it is answered at once, with no store call.
    calls = len(positions.calls)
    back = fired(tracker.read("lobby", ALICE, 4))
    assert back.error is None and back.notice is None
    assert len(positions.calls) == calls
    assert len(bus.reads) == 1


def test_a_non_members_read_is_forbidden(world, clock):
    tracker, *_rest = world
    stranger = UserInfo(99, "stranger")
    d = tracker.read("lobby", stranger, 3)
    clock.advance(0)
    assert fired(d).error == ErrorCode.FORBIDDEN


def test_a_move_reaches_the_users_room_connections_inbox_and_other_processes(
    world, clock, hub, store
):
    tracker, _store, bus, inbox, _positions = world
    room = fired(hub.room(store._info("lobby")))
    mine, other = Recorder(ALICE), Recorder(BOB)
    hub.subscribe(room, mine, None)
    hub.subscribe(room, other, None)
    d = tracker.read("lobby", ALICE, 6)
    clock.advance(0)
    notice = fired(d).notice
    assert notice == ReadNotice(ALICE.id, "lobby", 6, 4, 0, 10)
    assert mine.of_type("read") == [{"type": "read", "room": "lobby", "seq": 6}]
    assert other.of_type("read") == []
    assert inbox.moved == [notice]
    assert bus.reads == [notice]


def test_no_move_no_news(world, clock):
    tracker, _store, bus, inbox, positions = world
    positions.members[("lobby", ALICE.id)] = 8
    d = tracker.read("lobby", ALICE, 5)
    clock.advance(0)
    assert fired(d).notice is None
    assert bus.reads == [] and inbox.moved == []


def test_news_from_the_api_is_published_news_from_the_bus_is_not(world, hub, store):
    tracker, _store, bus, inbox, _positions = world
    fired(hub.room(store._info("lobby")))
    api = ReadNotice(ALICE.id, "lobby", 4, 0, 0, 4)
    tracker.heard(api)
    remote = ReadNotice(BOB.id, "lobby", 5, 0, 0, 5)
    tracker.read_moved(remote)
    assert inbox.moved == [api, remote]
    assert bus.reads == [api]


def test_an_unavailable_database_answers_unavailable(world, clock):
    tracker, _store, _bus, _inbox, positions = world
    positions.fail = StoreUnavailable()
    d = tracker.read("lobby", ALICE, 3)
    clock.advance(0)
    assert fired(d).error == ErrorCode.UNAVAILABLE
    positions.fail = None  # and the tracker goes on
    d = tracker.read("lobby", ALICE, 3)
    clock.advance(0)
    assert fired(d).error is None


def test_a_flood_of_reads_costs_one_write_per_commit(world, clock):
    tracker, store, _bus, _inbox, positions = world
    store.hold_runs = True
    for seq in range(1, 1001):
        tracker.read("lobby", ALICE, seq % 10)
    clock.advance(0)
    for _ in range(3):
        store.release_runs()
        clock.advance(0)
    assert len(positions.calls) <= 2


def test_position_comes_from_the_inbox_or_one_query_per_turn(world, clock, store):
    tracker, _store, _bus, inbox, _positions = world
    info = store._info("lobby")
    assert fired(tracker.position(info, None)) is None
    inbox.held[(ALICE.id, "lobby")] = 7
    assert fired(tracker.position(info, ALICE)) == 7
    asked = [tracker.position(info, BOB), tracker.position(info, UserInfo(50, "x"))]
    clock.advance(0)
    assert [fired(d) for d in asked] == [3, None]
