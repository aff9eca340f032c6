"""Direct messages (PROTOCOL.md "Rooms, membership and permissions", ``POST /api/dms/``,
``/dm/<username>/``): the API, the page, the rules the admin keeps, races, and privacy on
every read path for a third user and for anonymous.

alice, bob and mallory are tests/unit/conftest.py's; carol is mallory's role here (the
third user). Runs on PostgreSQL too: ``DATABASE_URL=postgres://... pytest this file``.
"""

from __future__ import annotations

import json
import re
import threading

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client

from chat import access, dms, log, room_objects
from chat.live.auth import _resolve_access
from chat.live.inbox_reads import member_rooms_of, member_slugs
from chat.live.records import SendRequest
from chat.models import Message, ReadPosition, Room
from chat.slug import SLUG_PATTERN

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("plain_static_storage")]

URL = "/api/dms/"


def open_dm(client: Client, user) -> object:
    body = user if isinstance(user, str | bytes) else json.dumps(user)
    return client.post(URL, body, content_type="application/json")


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["detail"]


def send(room: Room, user, body: str) -> int:
    result = log.append_events([SendRequest(room.slug, user.id, user.username, body, None)])[0]
    assert result.error is None, result
    return result.seq


@pytest.fixture
def carol(mallory):
    return mallory


@pytest.fixture
def as_alice(client, alice):
    client.force_login(alice)
    return client


@pytest.fixture
def as_bob(bob):
    c = Client()
    c.force_login(bob)
    return c


@pytest.fixture
def as_carol(carol):
    c = Client()
    c.force_login(carol)
    return c


@pytest.fixture
def dm(as_alice, bob) -> Room:
    response = open_dm(as_alice, {"user": "bob"})
    assert response.status_code == 201
    return Room.objects.get(slug=response.json()["slug"])


# -- the API ------------------------------------------------------------------------


def test_open_creates_then_finds_the_same_room_from_either_side(as_alice, as_bob, alice, bob):
    first = open_dm(as_alice, {"user": "bob"})
    assert first.status_code == 201
    room = first.json()
    assert room["slug"] == f"dm-{min(alice.pk, bob.pk)}-{max(alice.pk, bob.pk)}"
    assert re.fullmatch(SLUG_PATTERN, room["slug"])
    assert (room["kind"], room["is_public"], room["is_archived"]) == ("direct", False, False)
    assert (room["name"], room["is_member"], room["read_seq"], room["unread"]) == (
        "bob",
        True,
        0,
        0,
    )
    assert room["is_moderator"] is False

    again = open_dm(as_alice, {"user": "bob"})
    other_side = open_dm(as_bob, {"user": "alice"})
    assert (again.status_code, other_side.status_code) == (200, 200)
    assert again.json()["slug"] == other_side.json()["slug"] == room["slug"]
    assert other_side.json()["name"] == "alice"
    assert Room.objects.filter(kind=Room.Kind.DIRECT).count() == 1
    members = set(Room.objects.get(slug=room["slug"]).members.values_list("pk", flat=True))
    assert members == {alice.pk, bob.pk}


def test_a_new_direct_room_counts_from_zero_for_both(dm, alice, bob, as_bob):
    positions = dict(ReadPosition.objects.filter(room=dm).values_list("user_id", "read_seq"))
    assert positions == {alice.pk: 0, bob.pk: 0}
    send(dm, alice, "hello bob")
    send(dm, alice, "are you there?")
    shown = as_bob.get(f"/api/rooms/{dm.slug}/").json()
    assert (shown["unread"], shown["read_seq"], shown["last_seq"]) == (2, 0, 2)
    # Opening it again resets nothing.
    assert open_dm(as_bob, {"user": "alice"}).json()["unread"] == 2


def test_notes_to_self_is_a_room_of_one(as_alice, alice):
    response = open_dm(as_alice, {"user": "alice"})
    assert response.status_code == 201
    room = Room.objects.get(slug=response.json()["slug"])
    assert room.slug == f"dm-{alice.pk}-{alice.pk}"
    assert list(room.members.values_list("pk", flat=True)) == [alice.pk]
    assert response.json()["name"] == "alice"
    assert open_dm(as_alice, {"user": "alice"}).status_code == 200


def test_username_is_matched_exactly_then_ignoring_case(as_alice, bob):
    assert open_dm(as_alice, {"user": "BOB"}).json()["name"] == "bob"


def test_unknown_or_inactive_user_is_404_and_makes_nothing(as_alice, bob):
    assert_error(open_dm(as_alice, {"user": "nobody"}), 404, "not_found")
    bob.is_active = False
    bob.save()
    assert_error(open_dm(as_alice, {"user": "bob"}), 404, "not_found")
    assert not Room.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[1, 2]",
        '"bob"',
        "{}",
        json.dumps({"user": None}),
        json.dumps({"user": 7}),
        json.dumps({"user": ["bob"]}),
        json.dumps({"user": {"name": "bob"}}),
        json.dumps({"user": ""}),
        json.dumps({"user": "b" * 5000}),
        '{"user": "\\ud800"}',
        json.dumps({"user": "bo\x00b"}),
        b"\xff\xfe",
    ],
)
def test_malformed_bodies_are_400_and_make_nothing(as_alice, bob, body):
    assert_error(open_dm(as_alice, body), 400, "bad_request")
    assert not Room.objects.exists()


def test_oversized_body_is_413(as_alice, bob, settings):
    body = json.dumps({"user": "bob", "pad": "x" * settings.CHAT_MAX_FRAME_BYTES})
    assert_error(open_dm(as_alice, body), 413, "too_large")
    assert not Room.objects.exists()


def test_anonymous_is_403(client, bob):
    assert_error(open_dm(client, {"user": "bob"}), 403, "forbidden")
    assert not Room.objects.exists()


def test_csrf_is_checked_for_session_users(alice, bob):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(alice)
    assert_error(open_dm(strict, {"user": "bob"}), 403, "forbidden")
    assert not Room.objects.exists()


@pytest.mark.parametrize("method", ["get", "put", "delete", "patch"])
def test_other_methods_are_405_with_allow(as_alice, method):
    response = getattr(as_alice, method)(URL)
    assert_error(response, 405, "bad_request")
    assert response["Allow"] == "POST"


def test_a_removed_member_is_put_back_when_they_open_it(dm, alice, as_alice):
    dm.members.remove(alice)
    assert open_dm(as_alice, {"user": "bob"}).status_code == 200
    assert alice in dm.members.all()


# -- races ------------------------------------------------------------------------


def test_create_or_get_after_someone_else_made_it_reads_theirs(alice, bob):
    # The path of the loser of a race: the insert hits the unique slug.
    theirs, made = dms.create_or_get(bob, alice)
    assert made
    mine, made = dms.create_or_get(alice, bob)
    assert (mine.pk, made) == (theirs.pk, False)
    assert Room.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_simultaneous_opens_make_one_room(django_user_model):
    if connection.vendor == "sqlite" and connection.settings_dict["NAME"].startswith(
        ("file:memorydb", ":memory:")
    ):
        # Threads share SQLite's in-memory test database through a shared cache whose
        # table locks fail instead of waiting: the race is run on PostgreSQL (DATABASE_URL).
        pytest.skip("the race needs a database with real concurrent connections")
    users = [django_user_model.objects.create_user(f"racer{i}") for i in range(2)]
    rounds, per_round = 5, 6

    def racer(me, other, barrier, answers: list, failures: list) -> None:
        try:
            barrier.wait()
            room, made = dms.open_direct(me, other)
            answers.append((room.pk, made))
        except BaseException as error:  # reported below, not lost in the thread
            failures.append(error)
        finally:
            connection.close()

    for r in range(rounds):
        first, second = users if r % 2 else users[::-1]
        barrier = threading.Barrier(per_round)
        answers: list[tuple[int, bool]] = []
        failures: list[BaseException] = []
        threads = [
            threading.Thread(
                target=racer,
                args=((first, second) if i % 2 else (second, first))
                + (barrier, answers, failures),
            )
            for i in range(per_round)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not failures, failures
        assert len({pk for pk, _ in answers}) == 1
        assert sum(made for _, made in answers) <= 1
        room = Room.objects.get(kind=Room.Kind.DIRECT)
        assert set(room.members.values_list("pk", flat=True)) == {u.pk for u in users}
        if r % 2 == 0:
            Message.objects.filter(room=room).delete()
            room.delete()  # the next round races for a fresh room again


# -- the page ------------------------------------------------------------------------


def test_dm_page_opens_the_room(as_alice, alice, bob):
    response = as_alice.get("/dm/bob/")
    assert response.status_code == 302
    slug = dms.direct_slug(alice.pk, bob.pk)
    assert response["Location"] == f"/rooms/{slug}/"
    page = as_alice.get(response["Location"])
    assert page.status_code == 200
    html = page.content.decode()
    assert "<title>bob · Parley</title>" in html
    assert '<span id="room-name">bob</span>' in html
    assert 'placeholder="Message bob"' in html
    # The sidebar has it under "Direct messages".
    assert "Direct messages" in html and f'data-slug="{slug}"' in html
    assert as_alice.get("/dm/bob/")["Location"] == f"/rooms/{slug}/"


def test_dm_page_anonymous_goes_to_login(client, bob):
    response = client.get("/dm/bob/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/dm/bob/")
    assert not Room.objects.exists()


def test_dm_page_unknown_user_is_404(as_alice):
    assert as_alice.get("/dm/nobody/").status_code == 404
    assert as_alice.post("/dm/nobody/").status_code == 404
    assert as_alice.put("/dm/nobody/").status_code == 405
    assert not Room.objects.exists()


def test_dm_page_from_another_site_asks_first(alice, bob):
    # A page elsewhere sending its visitors to /dm/<its author>/ must not learn who they
    # are from a new room: the link asks, and only the button (a CSRF-checked POST) makes it.
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    asked = browser.get("/dm/bob/", headers={"Sec-Fetch-Site": "cross-site"})
    assert asked.status_code == 200
    assert b"Open the conversation" in asked.content
    assert browser.head("/dm/bob/").status_code == 200
    assert not Room.objects.exists()
    assert browser.post("/dm/bob/").status_code == 403  # no CSRF token: Django refuses
    assert not Room.objects.exists()
    token = browser.cookies["csrftoken"].value
    made = browser.post("/dm/bob/", {"csrfmiddlewaretoken": token})
    assert made.status_code == 302
    slug = dms.direct_slug(alice.pk, bob.pk)
    assert made["Location"] == f"/rooms/{slug}/"
    # Once it exists, a link from anywhere just opens it.
    again = browser.get("/dm/bob/", headers={"Sec-Fetch-Site": "cross-site"})
    assert again["Location"] == f"/rooms/{slug}/"
    # From this site, or typed by hand, the link opens (and makes) it at once.
    other = Client()
    other.force_login(bob)
    assert other.get("/dm/alice/", headers={"Sec-Fetch-Site": "same-origin"}).status_code == 302


def test_room_list_leaves_direct_rooms_to_the_sidebar(dm, as_alice):
    assert dm.slug not in as_alice.get("/").content.decode()


# -- privacy: every read path, for a third user and for anonymous --------------------


def test_a_third_user_reads_nothing_of_it(dm, alice, carol, as_carol):
    seq = send(dm, alice, "secret plans for bob")
    slug = dm.slug
    for path in (
        f"/api/rooms/{slug}/",
        f"/api/rooms/{slug}/messages/",
        f"/api/rooms/{slug}/messages/{seq}/",
    ):
        assert_error(as_carol.get(path), 403, "forbidden")
    for path, body in (
        (f"/api/rooms/{slug}/messages/", {"body": "let me in", "client_id": "c1"}),
        (f"/api/rooms/{slug}/read/", {"seq": 1}),
        (f"/api/rooms/{slug}/join/", None),
        (f"/api/rooms/{slug}/leave/", None),
        (f"/api/rooms/{slug}/messages/{seq}/reactions/", {"emoji": "👍", "op": "add"}),
    ):
        response = as_carol.post(path, json.dumps(body or {}), content_type="application/json")
        assert_error(response, 403, "forbidden")
    assert as_carol.get(f"/rooms/{slug}/").status_code == 403
    assert slug not in json.dumps(as_carol.get("/api/rooms/").json())
    assert slug not in json.dumps(as_carol.get("/api/me/").json())
    assert slug not in as_carol.get("/").content.decode()
    assert as_carol.get("/api/search/", {"q": "secret plans"}).json()["results"] == []
    assert slug not in as_carol.get("/search/", {"q": "secret plans"}).content.decode()
    # The live side's doors: the handshake's access read, the inbox's rooms.
    session = as_carol.session.session_key
    assert _resolve_access(session, slug).can_read is False
    assert slug not in json.dumps(member_rooms_of(carol.pk))
    assert slug not in member_slugs([carol.pk]).get(carol.pk, frozenset())
    assert carol not in dm.members.all()
    # Staff are no readers of other people's conversations either.
    carol.is_staff = True
    carol.save()
    assert_error(as_carol.get(f"/api/rooms/{slug}/messages/"), 403, "forbidden")
    # While its members do read it.
    mine = Client()
    mine.force_login(alice)
    assert mine.get("/api/search/", {"q": "secret plans"}).json()["results"][0]["room"] == slug


def test_anonymous_reads_nothing_of_it(dm, alice):
    client = Client()  # the ``client`` fixture is alice's here (``dm`` signed it in)
    seq = send(dm, alice, "hush")
    slug = dm.slug
    for path in (
        f"/api/rooms/{slug}/",
        f"/api/rooms/{slug}/messages/",
        f"/api/rooms/{slug}/messages/{seq}/",
    ):
        assert_error(client.get(path), 403, "forbidden")
    page = client.get(f"/rooms/{slug}/")
    assert page.status_code == 302 and page["Location"].startswith("/accounts/login/")
    assert slug not in json.dumps(client.get("/api/rooms/").json())
    assert slug not in client.get("/").content.decode()
    assert _resolve_access(None, slug).can_read is False


def test_members_cannot_join_or_leave_it(dm, as_alice, alice):
    for action in ("join", "leave"):
        response = as_alice.post(f"/api/rooms/{dm.slug}/{action}/")
        assert_error(response, 403, "forbidden")
    assert alice in dm.members.all()


def test_members_see_it_named_by_the_other(dm, alice, bob):
    assert [r["name"] for r in member_rooms_of(alice.pk) if r["slug"] == dm.slug] == ["bob"]
    assert [r["name"] for r in room_objects.member_rooms(bob.pk) if r["slug"] == dm.slug] == [
        "alice"
    ]
    assert access.may_read(dm, alice.pk) and access.may_post(dm, bob.pk)


# -- the rules the admin keeps ---------------------------------------------------------


def test_admin_lists_direct_rooms_but_keeps_them_to_two(dm, admin_client, alice, bob, carol):
    assert dm.slug in admin_client.get("/admin/chat/room/?kind__exact=direct").content.decode()
    form = dms.RoomForm(
        instance=dm,
        data={
            "name": dm.name,
            "slug": dm.slug,
            "kind": "direct",
            "members": [alice.pk, bob.pk, carol.pk],
            "slow_mode_seconds": 0,
        },
    )
    assert not form.is_valid()
    assert "members" in form.errors
    for extra, field in (
        ({"is_public": "on"}, "is_public"),
        ({"is_archived": "on"}, "is_archived"),
    ):
        data = {"name": dm.name, "slug": dm.slug, "kind": "direct", "members": [alice.pk]}
        data["slow_mode_seconds"] = 0
        form = dms.RoomForm(instance=dm, data={**data, **extra})
        assert not form.is_valid() and field in form.errors
    data = {"name": dm.name, "slug": dm.slug, "kind": "direct", "members": [alice.pk]}
    form = dms.RoomForm(
        instance=dm, data={**data, "moderators": [alice.pk], "slow_mode_seconds": 0}
    )
    assert not form.is_valid() and "moderators" in form.errors
    assert set(dm.members.all()) == {alice, bob}


def test_ordinary_rooms_may_not_take_a_dm_slug(db):
    form = dms.RoomForm(
        data={"name": "Sneaky", "slug": "dm-1-2", "kind": "room", "slow_mode_seconds": 0}
    )
    assert not form.is_valid() and "slug" in form.errors
    form = dms.RoomForm(
        data={"name": "Fine", "slug": "dmz", "kind": "room", "slow_mode_seconds": 0}
    )
    assert form.is_valid(), form.errors


def test_slug_helpers():
    assert dms.direct_slug(9, 3) == dms.direct_slug(3, 9) == "dm-3-9"
    assert dms.participants("dm-3-9") == (3, 9)
    for slug in ("dm-0-1", "dm-3", "dm-a-b", "dm-3-9-1", "lobby"):
        assert dms.participants(slug) is None
    huge = dms.direct_slug(10**20, 10**20 + 1)
    assert re.fullmatch(SLUG_PATTERN, huge)


def test_user_model_usernames_fit_the_api_limit():
    field = get_user_model()._meta.get_field("username")
    assert field.max_length < 5000


def test_the_admin_pages_apply_the_rules(dm, admin_client, alice, bob, carol):
    made = admin_client.post(
        "/admin/chat/room/add/",
        {"name": "Sneaky", "slug": "dm-1-2", "slow_mode_seconds": 0, "is_public": "on"},
    )
    assert made.status_code == 200  # the form again, with its error
    assert "kept for direct messages" in made.content.decode()
    assert not Room.objects.filter(name="Sneaky").exists()
    changed = admin_client.post(
        f"/admin/chat/room/{dm.pk}/change/",
        {"name": dm.name, "members": [alice.pk, bob.pk, carol.pk], "slow_mode_seconds": 0},
    )
    assert changed.status_code == 200
    assert "nobody else can be added" in changed.content.decode()
    assert set(dm.members.all()) == {alice, bob}
