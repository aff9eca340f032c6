"""What no notice reported, found for the inbox (chat/live/inbox_checks.py): at the room
check, a session that signs its user in no more ends that user's inbox streams on every
transport, and a room set changed behind the server's back sends ``rooms``; after a bus
outage every count is re-read at once and a changed one is sent. Then the store-thread
reads themselves (chat/live/inbox_reads.py) against the database."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from conftest import Peer, WSPeer
from live_fakes import ALICE, BOB, Recorder, fired
from test_inbox import CAROL, Django, open_stream, say
from test_inbox_transports import InboxLive, open_me, poll
from test_read_tracker import Positions, RunStore

from chat.live.inbox import InboxHub
from chat.live.reads import ReadTracker
from chat.live.records import ReadNotice, RoomInfo
from chat.live.store import StoreUnavailable


@pytest.fixture
def django_side(store):
    side = Django(store)
    side.members["lobby"] = {ALICE.id: 0, BOB.id: 0}
    store.sessions.update({"s-1": ALICE.id, "s-b": BOB.id, "sa": ALICE.id, "sb": BOB.id})
    return side


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


# -- the room check: sessions ------------------------------------------------------------


def test_a_deactivation_without_a_notice_ends_the_inbox_at_the_next_check(
    inbox, clock, store, django_side
):
    alice, alice_too = open_stream(inbox, clock), open_stream(inbox, clock, ALICE, "s-1")
    bob = open_stream(inbox, clock, BOB, "s-b")
    inbox.check()
    assert (alice.dropped, bob.dropped) == (None, None)  # everyone still signed in
    store.inactive.add(ALICE.id)  # QuerySet.update(is_active=False): no notice
    inbox.check()
    assert (alice.dropped, alice_too.dropped, bob.dropped) == ("revoked", "revoked", None)
    # One read per check, whatever the number of streams: every session and user at once.
    assert django_side.checks[-1] == (["s-1", "s-b"], [ALICE.id, BOB.id])
    assert len(django_side.checks) == 2


def test_a_part_of_the_check_reads_its_users_only_and_part_zero_names_every_key(
    inbox, clock, store, django_side
):
    from chat.live.parts import in_part

    alice, bob = open_stream(inbox, clock, ALICE, "s-1"), open_stream(inbox, clock, BOB, "s-b")
    kept = []
    asked = django_side.check
    django_side.check = lambda s, u, keep=None: kept.append(keep) or asked(s, u, keep)
    inbox.checks._check = django_side.check
    for part in range(5):
        inbox.check(part, 5)
    store.inactive.update({ALICE.id, BOB.id})
    for part in range(5):
        inbox.check(part, 5)
    users = [u for _s, users in django_side.checks for u in users]
    assert sorted(users) == sorted([ALICE.id, BOB.id] * 2)  # each once a round
    for _sessions, users in django_side.checks:  # a check asks of one part's users only
        assert len({k for k in range(5) for u in users if in_part(u, k, 5)}) == 1
    assert (alice.dropped, bob.dropped) == ("revoked", "revoked")
    # Once a round the store is told every live key, whatever part holds it (the memo of
    # chat/sessions.py keeps those and forgets the rest).
    named = [k for k in kept if k is not None]
    assert named == [["s-1", "s-b"]] * 2


def test_a_session_ended_elsewhere_or_signing_in_someone_else_ends_its_stream(inbox, clock, store):
    one, two = open_stream(inbox, clock), open_stream(inbox, clock, ALICE, "s-2")
    store.sessions["s-2"] = ALICE.id
    nobody = open_stream(inbox, clock, BOB, None)  # no session to check: nothing vouches
    store.sessions["s-1"] = BOB.id  # (a key can only sign in another user if reused)
    inbox.check()
    assert (one.dropped, two.dropped, nobody.dropped) == ("revoked", None, "revoked")


def test_a_user_found_lost_is_rechecked_in_the_rooms_too(inbox, clock, hub, store):
    """The room check does not re-check sessions; what the inbox finds, it tells the hub
    (as an account change), so that the user's room connections end as well."""
    room = fired(hub.room(store._info("lobby")))
    on_room, other = Recorder(ALICE, "s-1"), Recorder(BOB, "s-b")
    for subscriber in (on_room, other):
        hub.subscribe(room, subscriber, None)
    open_stream(inbox, clock)
    store.sessions["s-1"] = None  # logged out with no notice heard here
    inbox.check()
    clock.advance(0)  # the hub's re-check, at the end of the turn
    assert store.rechecks[-1] == ({"lobby": {ALICE.id}}, {"s-1"})
    assert (on_room.dropped, other.dropped) == ("revoked", None)


def test_a_failed_check_ends_nothing_and_one_check_runs_at_a_time(inbox, clock, store):
    stream = open_stream(inbox, clock)
    inbox.store.hold_runs = True
    inbox.check()
    inbox.check()  # the first is still unanswered: not asked twice
    assert len(inbox.store.parked) == 1
    d, _fn, _args = inbox.store.parked.pop()
    d.errback(StoreUnavailable())
    assert stream.dropped is None
    inbox.store.hold_runs = False
    store.inactive.add(ALICE.id)
    inbox.check()  # the next one runs
    assert stream.dropped == "revoked"


def test_the_check_ends_every_transport_of_a_deactivated_user(
    clock, hub, authorizer, store, django_side
):
    authorizer.sessions.update({"sa": ALICE, "sb": BOB})
    live = InboxLive(clock, hub, authorizer, 50, django_side)
    ws = open_me(WSPeer(live), session="sa")
    sse = Peer(live).request("/events/me/", session="sa")
    first = poll(live)
    clock.advance(0)
    token = first.json()[1]["session"]
    held = poll(live, f"?session={token}&timeout=30")
    idle = poll(live)
    clock.advance(0)
    idle_token = idle.json()[1]["session"]
    bob = open_me(WSPeer(live), session="sb")
    clock.advance(0)
    assert ws.upgraded and held.transport.value() == b""
    store.inactive.add(ALICE.id)
    live.inbox.check()
    clock.advance(0)
    assert ws.close_code == 4403
    assert sse.response()[2].endswith(b"<end>")
    assert held.response()[0] == 403
    # A poll session not held at the time is dropped: its token opens a new session.
    assert idle_token not in live.inbox_polls.by_token
    assert ALICE.id not in live.inbox_polls.by_user
    assert bob.close_code is None


# -- the room check: room sets -------------------------------------------------------------


def test_a_membership_removed_without_a_notice_sends_rooms_at_the_check(
    inbox, clock, store, django_side
):
    store.log["attic"] = []
    django_side.members["attic"] = {ALICE.id: 0}
    stream = open_stream(inbox, clock)
    reads = django_side.member_reads
    inbox.check()
    assert django_side.member_reads == reads  # the sets agree: no room is re-read
    del django_side.members["attic"][ALICE.id]  # raw SQL: no notice
    inbox.check()
    clock.advance(0)
    (rooms,) = stream.of_type("rooms")
    assert [r["slug"] for r in rooms["rooms"]] == ["lobby"]
    clock.advance(0)
    assert "attic" not in inbox.followed
    django_side.members["attic"][ALICE.id] = 0  # and added back, as quietly
    inbox.check()
    clock.advance(0)
    assert [r["slug"] for r in stream.of_type("rooms")[-1]["rooms"]] == ["lobby", "attic"]


def test_a_check_that_raced_a_read_of_the_rooms_compares_nothing(inbox, clock, store, django_side):
    stream = open_stream(inbox, clock)
    store.log["attic"] = []
    inbox.store.hold_runs = True
    inbox.check()  # reads memberships: lobby only
    django_side.members["attic"] = {ALICE.id: 0}
    inbox.refresh(inbox.users[ALICE.id])  # a notice's read, after the check's
    inbox.store.hold_runs = False
    inbox.store.release_runs()
    clock.advance(0)
    assert [r["slug"] for r in stream.of_type("rooms")[-1]["rooms"]] == ["lobby", "attic"]
    assert django_side.member_reads == 2  # the hello and the notice's: the check's is stale


# -- after a bus outage ------------------------------------------------------------------


def test_after_a_bus_outage_every_count_is_reread_at_once_and_changes_are_sent(
    clock, hub, store, django_side
):
    run_store = RunStore()
    run_store.log = store.log
    asked: list[list[tuple[str, list[int]]]] = []

    def recount_rooms(requests):
        asked.append([(info.slug, ids) for info, ids in requests])
        return [django_side.recount(info, ids) for info, ids in requests]

    inbox = InboxHub(
        clock, hub, run_store, member_rooms=django_side.member_rooms, check=django_side.check
    )
    inbox._recount_rooms = recount_rooms
    store.log["attic"] = []
    django_side.members["attic"] = {ALICE.id: 0, CAROL.id: 0}
    django_side.members["lobby"][CAROL.id] = 0
    alice, carol = open_stream(inbox, clock), open_stream(inbox, clock, CAROL, "s-c")
    say(hub, store, 1)
    say(hub, store, 2)
    say(hub, store, 1, room="attic")
    assert [f["unread"] for f in alice.of_type("activity")] == [1, 2, 1]
    # While the bus was away alice read the lobby in another process; its notice is lost.
    django_side.members["lobby"][ALICE.id] = 2
    inbox.bus_reconnected()
    clock.advance(0)
    # One store call, one statement by default, for every (user, room) of the process.
    assert asked == [[("lobby", [ALICE.id, CAROL.id]), ("attic", [ALICE.id, CAROL.id])]]
    assert alice.of_type("read") == [
        {"type": "read", "room": "lobby", "seq": 2, "unread": 0, "mentions": 0}
    ]
    assert carol.of_type("read") == []  # nothing changed for her
    say(hub, store, 3)  # counted from the new position
    assert alice.of_type("activity")[-1]["unread"] == 1
    assert inbox.position(ALICE.id, "lobby") == 2


def test_after_a_bus_outage_events_during_the_reread_are_counted_once(
    inbox, clock, hub, store, django_side
):
    alice = open_stream(inbox, clock)
    say(hub, store, 1)
    django_side.members["lobby"][ALICE.id] = 1  # read elsewhere, notice lost
    inbox.store.hold_runs = True
    inbox.bus_reconnected()
    clock.advance(0)  # the recount is asked (and the check); their answers wait
    say(hub, store, 2)  # committed before the read runs: in its snapshot
    inbox.store.hold_runs = False
    inbox.store.release_runs()
    say(hub, store, 3)  # after it
    frames = [(f["type"], f["seq"], f["unread"]) for f in alice.frames[1:]]
    assert frames == [("activity", 1, 1), ("read", 1, 1), ("activity", 3, 2)]


def test_a_reconnect_clears_the_known_read_positions(clock, hub, store):
    positions = Positions()
    positions.members[("lobby", ALICE.id)] = 0
    run_store = RunStore()
    tracker = ReadTracker(clock, run_store, hub, SimpleNamespace(announce_read=lambda n: None))
    tracker._mark = positions.mark
    tracker.read_moved(ReadNotice(ALICE.id, "lobby", 5, 0, 0, 5))
    fired(tracker.read("lobby", ALICE, 4))
    assert positions.calls == []  # known: answered without the store
    tracker.bus_reconnected()
    d = tracker.read("lobby", ALICE, 4)
    clock.advance(0)
    fired(d)
    assert len(positions.calls) == 1  # asked of the database again


def test_the_service_runs_the_inbox_check_with_the_room_check(clock):
    from chat.live.records import RateLimit
    from chat.live.service import LiveService

    settings = SimpleNamespace(
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3"}},
        CHAT_RATE_LIMIT=RateLimit(20, 10.0),
        CHAT_MAX_MESSAGE_CHARS=4000,
        CHAT_REDIS_PREFIX="t",
        REDIS_URL=None,
        CHAT_ROOM_CHECK_SECONDS=5.0,
    )
    service = LiveService.from_settings(clock, settings)
    ran: list[tuple] = []
    service.hub.check_rooms = lambda *part: ran.append(("rooms", *part))
    service.inbox.check = lambda *part: ran.append(("inbox", *part))
    loop, seconds = service._loops[0]
    # In five parts, one a second: every room and inbox user is checked every 5 s.
    assert seconds == 1.0
    for _ in range(6):
        loop.f()
    parts = [(kind, k, 5) for k in (0, 1, 2, 3, 4, 0) for kind in ("rooms", "inbox")]
    assert ran == parts
    # A part whose inbox check is still being answered is asked again, not skipped.
    ran.clear()
    service.inbox.checks._checking = True
    loop.f()
    service.inbox.checks._checking = False
    loop.f()
    assert ran == [("rooms", 1, 5), ("inbox", 1, 5)]


def test_the_parts_of_the_room_check_cover_every_room_and_user_once():
    from chat.live.parts import in_part

    slugs = [f"room-{n}" for n in range(500)] + ["lobby", "général"]
    for keys in (slugs, list(range(1, 2000))):
        owners = [[k for k in range(5) if in_part(key, k, 5)] for key in keys]
        assert all(len(found) == 1 for found in owners)
        sizes = [sum(found == [k] for found in owners) for k in range(5)]
        assert min(sizes) > len(keys) / 5 * 0.7  # spread, not one part holding them all
    assert all(in_part(key, 0, 1) for key in slugs)


# -- the store-thread reads, on the database --------------------------------------------


@pytest.mark.django_db
def test_signed_in_answers_as_session_user_in_two_queries(
    django_user_model, client, django_assert_max_num_queries
):
    from django.contrib.sessions.models import Session
    from django.utils import timezone

    from chat.sessions import session_user, signed_in

    people = {
        name: django_user_model.objects.create_user(name, password="pw-check-5521")
        for name in ("ann", "ben", "cat", "dan", "eve", "fay")
    }
    keys = {}
    for name, user in people.items():
        client.force_login(user)
        keys[name] = client.session.session_key
        client.logout() if name == "fay" else client.cookies.clear()
    django_user_model.objects.filter(pk=people["ben"].pk).update(is_active=False)
    people["cat"].set_password("another-pw-7781")
    people["cat"].save()
    people["dan"].delete()
    Session.objects.filter(session_key=keys["eve"]).update(expire_date=timezone.now())
    asked = [*keys.values(), "no-such-session"]
    # Two, then each "no" (six) confirmed by session_user: its session and user, and for
    # the stale password hash Django's own flush of that session.
    with django_assert_max_num_queries(2 + 2 * 6 + 1):
        answer = signed_in(asked)
    expected = {}
    for key in asked:
        user = session_user(key)
        expected[key] = user.id if user is not None else None
    assert answer == expected
    assert answer[keys["ann"]] == people["ann"].pk
    assert [answer[keys[n]] for n in ("ben", "cat", "dan", "eve", "fay")] == [None] * 5
    # Everyone signed in: two queries however many sessions.
    with django_assert_max_num_queries(2):
        assert signed_in([keys["ann"]] * 3) == {keys["ann"]: people["ann"].pk}


@pytest.mark.django_db
def test_signed_in_remembers_only_what_did_not_change(django_user_model, client, monkeypatch):
    """The second check of the same streams reuses the decoded sessions and the password
    hashes (chat/live/inbox_reads.py ``_Memo``); whatever changed in between, by any
    route that sends no notice, is answered from the database as on the first check."""
    from django.contrib.auth.hashers import make_password
    from django.contrib.sessions.models import Session

    from chat import sessions
    from chat.sessions import signed_in

    people = {
        name: django_user_model.objects.create_user(name, password="pw-check-5521")
        for name in ("ann", "ben", "cat", "dan")
    }
    keys = {}
    for name, user in people.items():
        client.force_login(user)
        keys[name] = client.session.session_key
        client.cookies.clear()
    asked = list(keys.values())
    everyone = {keys[n]: people[n].pk for n in people}
    assert signed_in(asked, keep=asked) == everyone
    assert set(sessions._MEMO.claims) == set(asked)
    assert signed_in(asked) == everyone  # from the memo: the same answer
    # No notice for any of these: QuerySet.update() and a session row rewritten.
    django_user_model.objects.filter(pk=people["ben"].pk).update(is_active=False)
    django_user_model.objects.filter(pk=people["cat"].pk).update(
        password=make_password("changed-elsewhere-1")
    )
    ann_session = Session.objects.get(session_key=keys["ann"])
    Session.objects.filter(session_key=keys["dan"]).update(session_data=ann_session.session_data)
    answer = signed_in(asked, keep=asked)
    assert answer == {
        keys["ann"]: people["ann"].pk,
        keys["ben"]: None,
        keys["cat"]: None,
        keys["dan"]: people["ann"].pk,  # its row now claims ann, with ann's hash
    }
    # Bounded however many are asked about between checks: past the bound, it starts
    # again (the answers are the same).
    monkeypatch.setattr(sessions, "MEMO_SIZE", 2)
    monkeypatch.setattr(sessions._MEMO, "claims", {})
    assert signed_in(asked) == answer
    assert len(sessions._MEMO.claims) <= 2
    # Told what is still in use: the others are forgotten, the memo bounded by it.
    monkeypatch.setattr(sessions, "MEMO_SIZE", 50_000)
    signed_in([keys["ann"], keys["ben"]], keep=[keys["ann"]])
    assert set(sessions._MEMO.claims) == {keys["ann"]}
    assert set(sessions._MEMO.hashes) <= {people["ann"].pk}


@pytest.mark.django_db
def test_a_connects_session_is_answered_as_django_answers_it(
    django_user_model, client, settings, django_assert_max_num_queries
):
    """chat/sessions.py ``quick_user`` (two plain statements) says "yes" exactly when
    Django's ``get_user`` does, and leaves every "no" to it."""
    from importlib import import_module

    from django.contrib.auth import get_user
    from django.contrib.sessions.models import Session
    from django.http import HttpRequest
    from django.utils import timezone

    from chat.sessions import quick_user, session_user

    def django_says(key):
        request = HttpRequest()
        request.session = import_module(settings.SESSION_ENGINE).SessionStore(key)
        user = get_user(request)
        return (user.pk, user.get_username()) if user.is_authenticated else None

    people = {
        name: django_user_model.objects.create_user(name, password="pw-check-5521")
        for name in ("ann", "ben", "cat", "dan", "eve")
    }
    keys = {}
    for name, user in people.items():
        client.force_login(user)
        keys[name] = client.session.session_key
        client.cookies.clear()
    django_user_model.objects.filter(pk=people["ben"].pk).update(is_active=False)
    django_user_model.objects.filter(pk=people["cat"].pk).update(password="changed")
    people["dan"].delete()
    Session.objects.filter(session_key=keys["eve"]).update(expire_date=timezone.now())
    with django_assert_max_num_queries(2):
        found = quick_user(keys["ann"])
    assert (found.id, found.username) == (people["ann"].pk, "ann")
    for name in ("ben", "cat", "dan", "eve"):
        assert quick_user(keys[name]) is None, name  # left to Django
    for key in [*keys.values(), "no-such-session"]:
        user = session_user(key)
        expected = django_says(key)
        assert (None if user is None else (user.id, user.username)) == expected
    # A backend Django's own rule does not cover: never answered this way.
    settings.AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.AllowAllUsersModelBackend"]
    assert quick_user(keys["ann"]) is None


@pytest.mark.django_db
def test_signed_in_answers_tokens_in_one_more_query(
    django_user_model, client, django_assert_max_num_queries
):
    """A token's credential key (a client that opened its stream with a bearer token) is
    answered in bulk too: the room check asks for every live token every 5 s."""
    from django.utils import timezone

    from chat import tokens
    from chat.models import Token
    from chat.sessions import signed_in

    ann = django_user_model.objects.create_user("ann", password="pw-check-5521")
    ben = django_user_model.objects.create_user("ben", password="pw-check-5521")
    client.force_login(ann)
    session = client.session.session_key
    keys = [tokens.credential(tokens.make(user, "t")[1]) for user in (ann, ben, ben)]
    tokens.revoke(Token.objects.get(user=ben, digest=keys[2].split(":", 1)[1]))
    Token.objects.update(last_used_at=timezone.now())
    with django_assert_max_num_queries(3):
        answer = signed_in([session, *keys])
    assert answer == {session: ann.pk, keys[0]: ann.pk, keys[1]: ben.pk, keys[2]: None}


@pytest.mark.django_db
def test_member_slugs_and_recount_rooms_are_one_query_each(
    alice, bob, lobby, secret, django_assert_num_queries
):
    from chat.live.inbox_reads import check_streams, recount_rooms

    lobby.members.add(alice, bob)
    with django_assert_num_queries(1):
        assert check_streams([], [alice.pk, bob.pk]).rooms == {
            alice.pk: frozenset({"lobby", "secret"}),
            bob.pk: frozenset({"lobby"}),
        }
    rooms = [
        (RoomInfo(r.id, r.slug, r.is_public, False, 0), [alice.pk, bob.pk])
        for r in (lobby, secret)
    ]
    with django_assert_num_queries(1):
        (in_lobby, in_secret) = recount_rooms(rooms)
    assert set(in_lobby[1]) == {alice.pk, bob.pk}
    assert set(in_secret[1]) == {alice.pk}  # bob is no member: missing


def test_an_unanswered_recount_fails_every_room_asked_with_it(clock, hub, store, django_side):
    run_store = RunStore()
    inbox = InboxHub(clock, hub, run_store, check=django_side.check)
    inbox._recount_rooms = lambda asked: (_ for _ in ()).throw(StoreUnavailable())
    one = inbox.recount(RoomInfo(1, "lobby", True, False, 0), [ALICE.id])
    two = inbox.recount(RoomInfo(2, "attic", True, False, 0), [ALICE.id])
    clock.advance(0)
    assert fired(one).check(StoreUnavailable) and fired(two).check(StoreUnavailable)
