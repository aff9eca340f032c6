"""Losing access (PROTOCOL.md "Losing access", guarantee 9), unit by unit, no sockets.

The hub on a fake clock with the in-memory store: an access change re-authorizes exactly
the connections it concerns and drops exactly those that may no longer read (live,
joining and replaying subscribers, held long-polls, long-poll leases). The Authorizer: a
change makes its answers stale at once, cached or still being read. The Django side: every
change access depends on is announced, after its commit, with the right scope. The store's
re-authorization read, on the database.
"""

from __future__ import annotations

import dataclasses

import pytest
from live_fakes import (
    ALICE,
    BOB,
    FakeStore,
    Recorder,
    RecordingBus,
    RecordingPresenceStore,
    fired,
)
from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock

from chat.live.access_watch import RECHECK_RETRY
from chat.live.auth import AUTH_CACHE_SECONDS, MAX_RESOLVES, Authorizer
from chat.live.events import OutboundEvent
from chat.live.hub import RoomHub
from chat.live.limits import LiveLimits
from chat.live.publish import AccessChange
from chat.live.ratelimit import RateLimiter
from chat.live.records import Access, RateLimit, RoomInfo, UserInfo
from chat.live.room import AccessRevoked
from chat.live.store import StoreUnavailable

LIMITS = LiveLimits()
CAROL = UserInfo(3, "carol")
SECRET = "secret"


# --------------------------------------------------------------------------- the hub


@pytest.fixture
def clock():
    return MemoryReactorClock()


@pytest.fixture
def store():
    store = FakeStore()
    store.log[SECRET] = []
    store.private[SECRET] = {ALICE.id, BOB.id}
    return store


@pytest.fixture
def bus():
    return RecordingBus()


@pytest.fixture
def authorizer(store, clock):
    return Authorizer(store, clock=clock.seconds)


@pytest.fixture
def hub(clock, store, bus, authorizer):
    return RoomHub(
        clock,
        store,
        bus=bus,
        presence=RecordingPresenceStore(),
        rate_limiter=RateLimiter(RateLimit(0, 10.0), clock=clock.seconds),
        max_message_chars=100,
        limits=dataclasses.replace(LIMITS),
        authorizer=authorizer,
    )


def load(hub: RoomHub, slug: str = SECRET):
    return fired(hub.room(RoomInfo(1, slug, slug != SECRET, False, 0)))


def held_poll(hub, room, user, session_key=None):
    """A long-poll held open; its outcome (an answer or a Failure) lands in the list."""
    outcome: list = []
    hub.poll(room, None, 25, user, session_key).addBoth(outcome.append)
    assert outcome == []
    return outcome


def remove(store, user: UserInfo, slug: str = SECRET) -> AccessChange:
    store.private[slug].discard(user.id)
    return AccessChange.room_changed(slug, (user.id,))


def test_a_removal_drops_exactly_the_removed_users_connections(hub, store, clock):
    room = load(hub)
    alice, bob, bob_again = Recorder(ALICE), Recorder(BOB), Recorder(BOB)
    for sub in (alice, bob, bob_again):
        hub.subscribe(room, sub, None)
    bob_poll, alice_poll = held_poll(hub, room, BOB), held_poll(hub, room, ALICE)
    hub.access_changed(remove(store, BOB))
    assert bob.dropped is None  # re-checked at the end of the reactor turn
    clock.advance(0)
    assert bob.dropped == bob_again.dropped == "revoked"
    assert alice.dropped is None and alice in room.subscribers
    assert room.subscribers == {alice}
    assert bob_poll[0].check(AccessRevoked) and alice_poll == []
    assert [w.user for w in room.waiters] == [ALICE]
    # One read, asking about the users the change named, and nobody else.
    assert store.rechecks == [({SECRET: {BOB.id}}, set())]
    # The others are told bob left; events go on to alice only.
    clock.advance(LIMITS.presence_interval)
    assert alice.of_type("presence")[-1]["users"] == ["alice"]
    hub.deliver(OutboundEvent(store.commit(1, SECRET)))
    assert alice.seqs == [1] and bob.seqs == []


def test_a_removal_ends_joining_and_replaying_subscribers_too(make_hub_with_ring, store, clock):
    hub = make_hub_with_ring
    room = load(hub)
    for seq in range(1, 6):
        hub.deliver(OutboundEvent(store.commit(seq, SECRET)))
    store.hold_reads = True
    replaying = Recorder(BOB)
    hub.subscribe(room, replaying, since=0)  # older than the ring: reading the store
    ahead = Recorder(BOB)
    hub.subscribe(room, ahead, since=99)  # ahead of the room: joining
    assert set(room.joining) == {replaying, ahead}
    hub.access_changed(remove(store, BOB))
    clock.advance(0)
    assert replaying.dropped == ahead.dropped == "revoked"
    assert room.joining == {}
    store.release()  # the replay's read comes back: nothing more for the revoked one
    assert replaying.seqs == []


@pytest.fixture
def make_hub_with_ring(clock, store, bus, authorizer):
    return RoomHub(
        clock,
        store,
        bus=bus,
        presence=RecordingPresenceStore(),
        rate_limiter=RateLimiter(RateLimit(0, 10.0), clock=clock.seconds),
        max_message_chars=100,
        limits=dataclasses.replace(LIMITS, ring_size=2),
        authorizer=authorizer,
    )


def test_a_removed_long_poll_user_leaves_presence_at_once(hub, store, clock):
    room = load(hub)
    watcher = Recorder(ALICE)
    hub.subscribe(room, watcher, None)
    # bob polled and got his answer: no request held, only his lease.
    answered = []
    hub.poll(room, None, 5, BOB).addBoth(answered.append)
    clock.advance(5)
    assert answered and "bob" in room.presence.counts
    clock.advance(LIMITS.presence_interval)
    assert watcher.of_type("presence")[-1]["users"] == ["alice", "bob"]
    hub.access_changed(remove(store, BOB))
    clock.advance(0)
    clock.advance(LIMITS.presence_interval)
    assert watcher.of_type("presence")[-1]["users"] == ["alice"]
    assert room.presence.leases == {} and watcher.dropped is None


def test_a_room_made_private_ends_its_anonymous_readers(hub, store, clock):
    store.log["lobby"] = []
    room = load(hub, "lobby")
    anonymous, alice, outsider = Recorder(None), Recorder(ALICE), Recorder(CAROL)
    for sub in (anonymous, alice, outsider):
        hub.subscribe(room, sub, None)
    anonymous_poll = held_poll(hub, room, None)
    store.private["lobby"] = {ALICE.id}
    hub.access_changed(AccessChange.room_changed("lobby"))
    clock.advance(0)
    assert anonymous.dropped == outsider.dropped == "revoked"
    assert anonymous_poll[0].check(AccessRevoked)
    assert alice.dropped is None and room.subscribers == {alice}
    ((asked, _sessions),) = store.rechecks
    assert asked == {"lobby": {None, ALICE.id, CAROL.id}}  # everyone here, once each


def test_a_deleted_room_ends_everyone_and_is_forgotten(hub, store, clock, bus):
    room = load(hub)
    alice = Recorder(ALICE)
    hub.subscribe(room, alice, None)
    poll = held_poll(hub, room, ALICE)
    del store.log[SECRET]
    store.recheck = HeldRecheck(store.recheck)
    hub.access_changed(AccessChange.room_changed(SECRET))
    clock.advance(0)
    late = Recorder(BOB)
    hub.subscribe(room, late, None)  # while the read runs
    store.recheck.release()
    assert alice.dropped == late.dropped == "revoked" and poll[0].check(AccessRevoked)
    assert SECRET not in hub.rooms and SECRET not in bus.followed
    assert clock.getDelayedCalls() == []


class HeldRecheck:
    """Wraps ``store.recheck`` so that its answers wait for ``release``."""

    def __init__(self, recheck) -> None:
        self.recheck = recheck
        self.held: list[tuple[defer.Deferred, defer.Deferred]] = []

    def __call__(self, rooms, sessions=()):
        d: defer.Deferred = defer.Deferred()
        self.held.append((d, self.recheck(rooms, sessions)))
        return d

    def release(self) -> None:
        held, self.held = self.held, []
        for d, answer in held:
            answer.chainDeferred(d)


def test_someone_who_joins_while_the_read_runs_is_not_judged_by_it(hub, store, clock):
    room = load(hub)
    bob = Recorder(BOB)
    hub.subscribe(room, bob, None)
    store.recheck = HeldRecheck(store.recheck)
    hub.access_changed(remove(store, BOB))
    clock.advance(0)
    carol = Recorder(CAROL)  # let in on an answer read after the change
    hub.subscribe(room, carol, None)
    store.recheck.release()
    assert bob.dropped == "revoked" and carol.dropped is None


def test_a_change_that_removes_nobody_ends_nothing(hub, store, clock):
    room = load(hub)
    alice, bob = Recorder(ALICE), Recorder(BOB)
    hub.subscribe(room, alice, None)
    hub.subscribe(room, bob, None)
    store.private[SECRET].add(CAROL.id)  # carol added: nobody loses anything
    hub.access_changed(AccessChange.room_changed(SECRET, (CAROL.id,)))
    hub.access_changed(AccessChange.room_changed(SECRET))  # e.g. the description saved
    clock.advance(0)
    assert alice.dropped is None and bob.dropped is None
    assert len(store.rechecks) == 1  # the two changes of one turn: one read


def test_a_change_of_a_room_this_process_does_not_hold_costs_nothing(hub, store, clock):
    room = load(hub)
    hub.subscribe(room, Recorder(ALICE), None)
    hub.access_changed(AccessChange.room_changed("elsewhere"))
    hub.access_changed(AccessChange.room_changed("elsewhere", (ALICE.id,)))
    assert not [c for c in clock.getDelayedCalls() if c.func == hub.access._recheck]
    clock.advance(0)
    assert store.rechecks == []


def test_a_change_heard_while_the_room_loads_is_checked_once_it_is_loaded(hub, store, clock):
    pending = defer.Deferred()
    store.room = lambda slug: pending
    bob = Recorder(BOB)
    # bob's answer was read before his removal; the room is still loading.
    hub.room(RoomInfo(1, SECRET, False, False, 0)).addCallback(
        lambda room: hub.subscribe(room, bob, None)
    )
    hub.access_changed(remove(store, BOB))
    clock.advance(0)
    assert store.rechecks == [] and bob.dropped is None
    pending.callback(RoomInfo(1, SECRET, False, False, 0))
    clock.advance(0)
    assert bob.dropped == "revoked"


def test_a_failed_check_keeps_connections_and_is_retried(hub, store, clock):
    room = load(hub)
    bob = Recorder(BOB)
    hub.subscribe(room, bob, None)
    store.fail_rechecks = True
    hub.access_changed(remove(store, BOB))
    clock.advance(0)
    assert bob.dropped is None and len(store.rechecks) == 1  # the database is down
    store.fail_rechecks = False
    clock.advance(RECHECK_RETRY * 0.9)
    assert bob.dropped is None and len(store.rechecks) == 1
    clock.advance(RECHECK_RETRY * 0.2)
    assert bob.dropped == "revoked"


def test_the_room_check_finds_a_change_no_notice_reported(hub, store, clock):
    """A removal made by a process without a reactor (manage.py shell), or heard while the
    bus was away: the periodic room check re-authorizes every live connection."""
    room = load(hub)
    alice, bob = Recorder(ALICE), Recorder(BOB)
    hub.subscribe(room, alice, None)
    hub.subscribe(room, bob, None)
    store.run = CountingRun()
    fired(hub.authorizer.access("s-bob", SECRET))  # "bob may read", cached
    store.private[SECRET].discard(BOB.id)  # and nobody said so
    clock.advance(0)
    assert bob.dropped is None
    hub.check_rooms()
    clock.advance(0)
    assert bob.dropped == "revoked" and alice.dropped is None
    fired(hub.authorizer.access("s-bob", SECRET))
    assert store.run.calls == 2  # what the check found makes the cached answer stale


def test_a_part_of_the_room_check_rechecks_the_rooms_of_that_part_only(hub, store, clock):
    from chat.live.parts import in_part

    store.log["lobby"] = []
    rooms = {slug: load(hub, slug) for slug in (SECRET, "lobby")}
    for room in rooms.values():
        hub.subscribe(room, Recorder(ALICE), None)
    checked = {}
    for part in range(5):
        before = len(store.rechecks)
        hub.check_rooms(part, 5)
        clock.advance(0)
        checked[part] = {slug for asked, _ in store.rechecks[before:] for slug in asked}
    # Each room is re-checked by its part alone: once a round of five.
    for slug in rooms:
        assert [k for k in range(5) if slug in checked[k]] == [
            k for k in range(5) if in_part(slug, k, 5)
        ]


def test_an_empty_room_costs_the_room_check_no_access_read(hub, store, clock):
    load(hub)
    hub.check_rooms()
    clock.advance(0)
    assert store.rechecks == []


def test_a_logout_ends_exactly_that_sessions_connections(hub, store, clock, authorizer):
    room = load(hub)
    store.log["lobby"] = []
    lobby = load(hub, "lobby")
    phone, laptop = Recorder(BOB, "s-phone"), Recorder(BOB, "s-laptop")
    elsewhere = Recorder(BOB, "s-phone")
    unknown = Recorder(BOB)  # a transport that does not tell its session
    alice = Recorder(ALICE, "s-alice")
    for sub in (phone, laptop, unknown, alice):
        hub.subscribe(room, sub, None)
    hub.subscribe(lobby, elsewhere, None)
    phone_poll = held_poll(hub, room, BOB, "s-phone")
    laptop_poll = held_poll(hub, room, BOB, "s-laptop")
    hub.access_changed(AccessChange.session_ended("s-phone", BOB.id))
    # No read: the session has ended, whatever the rule says.
    assert phone.dropped == elsewhere.dropped == unknown.dropped == "revoked"
    assert phone_poll[0].check(AccessRevoked)
    assert laptop.dropped is None and alice.dropped is None and laptop_poll == []
    clock.advance(0)
    assert store.rechecks == []


def test_a_deactivated_account_loses_every_room(hub, store, clock):
    store.log["lobby"] = []
    secret, lobby = load(hub), load(hub, "lobby")
    in_secret, in_lobby, alice = Recorder(BOB), Recorder(BOB), Recorder(ALICE)
    hub.subscribe(secret, in_secret, None)
    hub.subscribe(lobby, in_lobby, None)
    hub.subscribe(lobby, alice, None)
    store.inactive.add(BOB.id)
    hub.access_changed(AccessChange.accounts_changed((BOB.id,)))
    clock.advance(0)
    assert in_secret.dropped == in_lobby.dropped == "revoked"
    assert alice.dropped is None
    assert store.rechecks == [({SECRET: {BOB.id}, "lobby": {BOB.id}}, set())]


def test_an_account_change_ends_the_sessions_that_no_longer_sign_it_in(hub, store, clock):
    """A password change signs out every other session of the account."""
    room = load(hub)
    kept, signed_out = Recorder(BOB, "s-kept"), Recorder(BOB, "s-old")
    hub.subscribe(room, kept, None)
    hub.subscribe(room, signed_out, None)
    store.sessions = {"s-kept": BOB.id, "s-old": None}
    hub.access_changed(AccessChange.accounts_changed((BOB.id,)))
    clock.advance(0)
    assert signed_out.dropped == "revoked" and kept.dropped is None
    assert store.rechecks == [({SECRET: {BOB.id}}, {"s-kept", "s-old"})]


def test_a_change_made_here_is_applied_here_and_announced_to_the_others(hub, store, bus, clock):
    room = load(hub)
    bob = Recorder(BOB)
    hub.subscribe(room, bob, None)
    change = remove(store, BOB)
    hub.announce(change)
    clock.advance(0)
    assert bob.dropped == "revoked" and bus.announced == [change]
    # One heard from another process is applied, and not announced again.
    bob_again = Recorder(BOB)
    hub.subscribe(room, bob_again, None)
    hub.access_changed(change)
    clock.advance(0)
    assert bob_again.dropped == "revoked" and bus.announced == [change]


def test_a_transport_that_unsubscribes_after_a_drop_does_not_leave_twice(hub, store, clock):
    room = load(hub)
    watcher, bob, bob_again = Recorder(ALICE), Recorder(BOB), Recorder(BOB)
    for sub in (watcher, bob, bob_again):
        hub.subscribe(room, sub, None)
    hub.access_changed(remove(store, BOB))
    clock.advance(0)
    hub.unsubscribe(room, bob)  # as a transport noticing its closed connection might
    hub.unsubscribe(room, bob)
    assert room.presence.counts == {"alice": 1}
    store.private[SECRET].add(BOB.id)  # let back in
    back = Recorder(BOB)
    hub.subscribe(room, back, None)
    assert room.presence.counts == {"alice": 1, "bob": 1}


def test_a_bus_reconnect_makes_every_cached_answer_stale(hub, store, clock, authorizer):
    store.run = CountingRun()
    fired(authorizer.access("s-bob", SECRET))
    fired(authorizer.access("s-bob", SECRET))
    assert store.run.calls == 1
    hub.bus_reconnected()
    fired(authorizer.access("s-bob", SECRET))
    assert store.run.calls == 2


# --------------------------------------------------------------------------- the Authorizer


class CountingRun:
    """``store.run`` for the Authorizer: answers at once, or holds the reads open."""

    def __init__(self, hold: bool = False) -> None:
        self.calls = 0
        self.hold = hold
        self.held: list[tuple[defer.Deferred, tuple]] = []
        self.can_read = True

    def __call__(self, fn, session_key, slug):
        self.calls += 1
        user = BOB if session_key else None
        access = Access(RoomInfo(1, slug, False, False, 0), user, self.can_read)
        if self.hold:
            d: defer.Deferred = defer.Deferred()
            self.held.append((d, (session_key, slug)))
            return d
        return defer.succeed(access)

    def release(self) -> None:
        held, self.held = self.held, []
        for d, (session_key, slug) in held:
            user = BOB if session_key else None
            d.callback(Access(RoomInfo(1, slug, False, False, 0), user, self.can_read))


class RunStore:
    def __init__(self, run: CountingRun) -> None:
        self.run = run


@pytest.fixture
def run():
    return CountingRun()


@pytest.fixture
def auth(run, clock):
    return Authorizer(RunStore(run), clock=clock.seconds)


@pytest.mark.parametrize(
    "change",
    [
        AccessChange.room_changed(SECRET),
        AccessChange.room_changed(SECRET, (BOB.id,)),
        AccessChange.accounts_changed((BOB.id,)),
        AccessChange.session_ended("s-bob", BOB.id),
    ],
)
def test_a_change_makes_the_cached_answers_it_concerns_stale_at_once(auth, run, change):
    fired(auth.access("s-bob", SECRET))
    fired(auth.access("s-bob", SECRET))
    assert run.calls == 1  # cached
    auth.invalidate(change)
    fired(auth.access("s-bob", SECRET))
    assert run.calls == 2  # read afresh, not after AUTH_CACHE_SECONDS


@pytest.mark.parametrize(
    "change",
    [
        AccessChange.room_changed("elsewhere"),
        AccessChange.accounts_changed((ALICE.id,)),
        AccessChange.session_ended("s-alice", ALICE.id),
    ],
)
def test_a_change_leaves_the_answers_it_does_not_concern_cached(auth, run, change):
    fired(auth.access("s-bob", SECRET))
    auth.invalidate(change)
    fired(auth.access("s-bob", SECRET))
    assert run.calls == 1


def test_an_answer_read_while_a_change_was_heard_is_read_again(clock):
    run = CountingRun(hold=True)
    auth = Authorizer(RunStore(run), clock=clock.seconds)
    answers = []
    auth.access("s-bob", SECRET).addCallback(answers.append)
    auth.invalidate(AccessChange.room_changed(SECRET, (BOB.id,)))  # while it reads
    run.can_read = False  # the read in flight may have seen the database before
    run.release()
    assert answers == [] and run.calls == 2  # not answered: read again
    run.release()
    assert answers[0].can_read is False


def test_an_answer_overtaken_again_and_again_is_unavailable_not_stale(clock):
    run = CountingRun(hold=True)
    auth = Authorizer(RunStore(run), clock=clock.seconds)
    outcome = []
    auth.access("s-bob", SECRET).addBoth(outcome.append)
    for _ in range(MAX_RESOLVES):
        auth.invalidate(AccessChange.room_changed(SECRET))
        run.release()
    assert outcome[0].check(StoreUnavailable) and run.calls == MAX_RESOLVES


def test_a_change_of_another_room_does_not_overtake_a_read(clock):
    run = CountingRun(hold=True)
    auth = Authorizer(RunStore(run), clock=clock.seconds)
    answers = []
    auth.access("s-bob", SECRET).addCallback(answers.append)
    auth.invalidate(AccessChange.room_changed("elsewhere"))
    run.release()
    assert answers and run.calls == 1


def test_membership_changes_of_others_do_not_overtake_a_read(clock):
    """People joining a busy public room (sending joins it) change only their own access:
    a read of bob's, in flight through any number of them, is answered, not re-read."""
    run = CountingRun(hold=True)
    auth = Authorizer(RunStore(run), clock=clock.seconds)
    answers = []
    auth.access("s-bob", SECRET).addCallback(answers.append)
    for user_id in range(100, 100 + 2 * MAX_RESOLVES):
        auth.invalidate(AccessChange.room_changed(SECRET, (user_id,)))
    run.release()
    assert answers and answers[0].user == BOB and run.calls == 1
    fired(auth.access("s-bob", SECRET))
    assert run.calls == 1  # and the cached answer stays


def test_a_membership_change_of_the_reader_makes_its_cached_answer_stale(auth, run):
    fired(auth.access("s-bob", SECRET))
    auth.invalidate(AccessChange.room_changed(SECRET, (BOB.id,)))
    fired(auth.access("s-bob", SECRET))
    assert run.calls == 2


def test_an_ended_session_is_read_as_anonymous(auth, run):
    auth.invalidate(AccessChange.session_ended("s-bob", BOB.id))
    assert fired(auth.access("s-bob", SECRET)).user is None  # not bob, even if Django
    assert fired(auth.access("s-alice", SECRET)).user == BOB  # has not deleted it yet


def test_changes_are_forgotten_once_no_answer_can_predate_them(auth, run, clock):
    for n in range(100):
        auth.invalidate(AccessChange.room_changed(f"room-{n}"))
    assert len(auth._rooms) == 100
    clock.advance(AUTH_CACHE_SECONDS + 1)
    auth.invalidate(AccessChange.room_changed("last"))
    assert list(auth._rooms) == ["last"]


def test_a_change_is_kept_while_a_read_that_predates_it_runs(clock):
    run = CountingRun(hold=True)
    auth = Authorizer(RunStore(run), clock=clock.seconds)
    answers = []
    auth.access("s-bob", SECRET).addCallback(answers.append)
    auth.invalidate(AccessChange.room_changed(SECRET))
    clock.advance(AUTH_CACHE_SECONDS * 3)  # a very slow database
    auth.invalidate(AccessChange.room_changed("other"))  # would prune SECRET's change
    run.release()
    assert answers == [] and run.calls == 2  # still known to be overtaken


# --------------------------------------------------------------------------- Django side


@pytest.fixture
def announced():
    """The changes handed to the live hub, as the server's sink would receive them."""
    from chat.live import publish

    changes: list[AccessChange] = []
    publish.install(lambda func, *args: func(*args), lambda event: None, changes.append)
    yield changes
    publish.uninstall()


@pytest.fixture
def people(django_user_model):
    from chat.models import Room

    alice = django_user_model.objects.create_user("alice", password="pw-alice-1")
    bob = django_user_model.objects.create_user("bob", password="pw-bob-1")
    room = Room.objects.create(slug=SECRET, name="Secret", is_public=False)
    room.members.add(alice, bob)
    return alice, bob, room


@pytest.mark.django_db
def test_membership_changes_are_announced_after_the_commit(
    people, announced, django_capture_on_commit_callbacks
):
    alice, bob, room = people
    with django_capture_on_commit_callbacks(execute=True):
        room.members.remove(bob)
        assert announced == []  # not before the commit: a rollback would end nothing
    assert announced == [AccessChange.room_changed(SECRET, (bob.pk,))]
    announced.clear()
    with django_capture_on_commit_callbacks(execute=True):
        bob.chat_rooms.add(room)  # from the other side
        room.members.set([bob])  # alice removed
        room.members.clear()
    assert announced == [
        AccessChange.room_changed(SECRET, (bob.pk,)),
        AccessChange.room_changed(SECRET, (alice.pk,)),
        AccessChange.room_changed(SECRET),
    ]
    announced.clear()
    room.members.add(alice)
    with django_capture_on_commit_callbacks(execute=True):
        alice.chat_rooms.clear()
    assert announced == [AccessChange.room_changed(SECRET, (alice.pk,))]


@pytest.mark.django_db
def test_a_removed_members_next_send_is_refused_by_the_append_itself(people):
    """Whatever transport it comes on, before its connection is closed: the log checks the
    rule inside the appending transaction."""
    from chat import log
    from chat.live.records import SendRequest

    alice, bob, room = people
    sends = [SendRequest(SECRET, u.pk, u.username, "hi", None) for u in (bob, alice)]
    assert [r.error for r in log.append_events(sends)] == [None, None]
    room.members.remove(bob)
    assert [r.error for r in log.append_events(sends)] == ["forbidden", None]


@pytest.mark.django_db
def test_a_change_rolled_back_is_not_announced(people, announced):
    from django.db import transaction

    _alice, bob, room = people
    with pytest.raises(RuntimeError), transaction.atomic():
        room.members.remove(bob)
        raise RuntimeError("rolled back")
    assert announced == []


@pytest.mark.django_db
def test_room_flags_and_deletion_are_announced_and_other_edits_are_not(
    people, announced, django_capture_on_commit_callbacks
):
    from chat.models import Room

    _alice, _bob, room = people
    with django_capture_on_commit_callbacks(execute=True):
        room.description = "only the description"
        room.save()
    assert announced == []
    for field, value in (("is_public", True), ("is_archived", True)):
        with django_capture_on_commit_callbacks(execute=True):
            setattr(room, field, value)
            room.save()
        assert announced == [AccessChange.room_changed(SECRET)], field
        announced.clear()
    with django_capture_on_commit_callbacks(execute=True):
        Room.objects.create(slug="fresh", name="Fresh")  # a cached 404 must go
        Room.objects.get(slug="fresh").delete()
    assert announced == [AccessChange.room_changed("fresh")] * 2


@pytest.mark.django_db
def test_account_changes_are_announced_and_a_login_is_not(
    people, announced, django_capture_on_commit_callbacks, client
):
    alice, bob, _room = people
    with django_capture_on_commit_callbacks(execute=True):
        client.force_login(bob)  # saves last_login only
        bob.first_name = "Bob"
        bob.save()
    assert announced == []
    with django_capture_on_commit_callbacks(execute=True):
        bob.is_active = False
        bob.save()
    assert announced == [AccessChange.accounts_changed((bob.pk,))]
    announced.clear()
    with django_capture_on_commit_callbacks(execute=True):
        alice.set_password("a new one")
        alice.save()
        bob_id = bob.pk
        bob.delete()
    assert announced == [
        AccessChange.accounts_changed((alice.pk,)),
        AccessChange.accounts_changed((bob_id,)),
    ]


@pytest.mark.django_db
def test_a_logout_announces_its_session(
    people, announced, client, django_capture_on_commit_callbacks
):
    _alice, bob, _room = people
    client.force_login(bob)
    session_key = client.session.session_key
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/accounts/logout/")
    assert response.status_code in (200, 302)
    assert announced == [AccessChange.session_ended(session_key, bob.pk)]


@pytest.mark.django_db
def test_the_admin_change_form_announces_a_removal(
    people, announced, admin_client, settings, django_capture_on_commit_callbacks
):
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    alice, bob, room = people
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            f"/admin/chat/room/{room.pk}/change/",
            {"name": "Secret", "description": "", "members": [alice.pk]},  # not public
        )
    assert response.status_code == 302, response.content[:500]
    assert AccessChange.room_changed(SECRET, (bob.pk,)) in announced


@pytest.mark.django_db
def test_a_process_without_a_reactor_writes_the_change_down(settings):
    from chat.live import publish
    from chat.models import AccessNotice

    publish.uninstall()
    settings.REDIS_URL = None
    publish.announce_access(AccessChange.room_changed(SECRET))  # for the servers to read
    assert [n.change["room"] for n in AccessNotice.objects.all()] == [SECRET]


def test_changes_cross_processes_as_json_unchanged():
    for change in (
        AccessChange.room_changed(SECRET, (3, 1)),
        AccessChange.room_changed(SECRET),
        AccessChange.accounts_changed((1,)),
        AccessChange.session_ended("key", None),
    ):
        assert AccessChange.from_json(change.as_json()) == change


# --------------------------------------------------------------------------- the store's read


@pytest.mark.django_db(transaction=True)
def test_the_recheck_read_applies_the_rule_to_open_connections(people, client):
    from chat.live.store import _recheck
    from chat.models import Room

    alice, bob, _room = people
    carol = type(alice).objects.create_user("carol", password="pw-carol-1")
    Room.objects.create(slug="lobby", name="Lobby")
    client.force_login(bob)
    bob_session = client.session.session_key
    answer = _recheck(
        {SECRET: [None, alice.pk, bob.pk, carol.pk], "lobby": [None, carol.pk], "gone": [1]},
        [bob_session, "no-such-session"],
    )
    info, allowed = answer.rooms[SECRET]
    assert info.slug == SECRET and info.is_public is False
    assert allowed == {alice.pk, bob.pk}
    assert answer.rooms["lobby"][1] == {None, carol.pk}
    assert answer.rooms["gone"] == (None, frozenset())
    assert answer.sessions == {bob_session: bob.pk, "no-such-session": None}
    # A deactivated account reads nothing, and its session signs nobody in.
    type(bob).objects.filter(pk=bob.pk).update(is_active=False)
    answer = _recheck({SECRET: [alice.pk, bob.pk], "lobby": [bob.pk]}, [bob_session])
    assert answer.rooms[SECRET][1] == {alice.pk}
    assert answer.rooms["lobby"][1] == frozenset()
    assert answer.sessions == {bob_session: None}
