"""Moderation (PROTOCOL.md "Moderation"): ``POST /api/rooms/<slug>/moderation/`` for each
action and every bad input, the audit log, bans on every read path, moderators set in the
admin, the room object's ``is_moderator`` and ``slow_mode_seconds``, kicks carried as
``AccessChange.kicked`` (over the bus's JSON too) and ending connections in AccessWatch."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from chat import access, log, room_objects, services
from chat.live.publish import KICK, AccessChange
from chat.live.records import ErrorCode, SendRequest
from chat.models import Ban, Message, ModerationAction, Mute, Room

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("plain_static_storage")]

URL = "/api/rooms/lobby/moderation/"


@pytest.fixture
def announced():
    """The access changes handed to the live hub, as the server's sink receives them."""
    from chat.live import publish

    changes: list[AccessChange] = []
    publish.install(lambda func, *args: func(*args), lambda event: None, changes.append)
    yield changes
    publish.uninstall()


@pytest.fixture
def mod(lobby, alice, client):
    """alice moderates the lobby; bob is a member of it; the client is alice's."""
    lobby.moderators.add(alice)
    client.force_login(alice)
    return client


def post(client, payload, url=URL):
    body = payload if isinstance(payload, str | bytes) else json.dumps(payload)
    return client.post(url, body, content_type="application/json")


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code
    assert body["error"]["detail"]


def send(user, body="hi", room="lobby"):
    return log.append_events([SendRequest(room, user.id, user.username, body, None)])[0]


# -- the actions ---------------------------------------------------------------------


def test_mute_and_unmute(mod, lobby, alice, bob, django_capture_on_commit_callbacks):
    response = post(mod, {"action": "mute", "user": "bob", "minutes": 10, "reason": "flood"})
    assert response.status_code == 200, response.content
    answer = response.json()
    assert answer["action"]["action"] == "mute" and answer["action"]["user"] == "bob"
    assert answer["action"]["minutes"] == 10 and answer["action"]["reason"] == "flood"
    assert answer["room"]["slug"] == "lobby" and answer["room"]["is_moderator"] is True
    muted = Mute.objects.get(room=lobby, user=bob)
    assert muted.by == alice and muted.reason == "flood"
    refused = send(bob)
    assert refused.error == ErrorCode.FORBIDDEN and 590 <= refused.retry_after <= 600
    # Muting again replaces the mute (one row per room and user).
    assert post(mod, {"action": "mute", "user": "bob", "minutes": 1}).status_code == 200
    assert Mute.objects.filter(room=lobby, user=bob).count() == 1
    assert send(bob).retry_after <= 60
    assert post(mod, {"action": "unmute", "user": "bob"}).status_code == 200
    assert not Mute.objects.exists()
    assert send(bob).error is None
    actions = list(
        ModerationAction.objects.order_by("id").values_list("action", "value", "reason")
    )
    assert actions == [("mute", 10, "flood"), ("mute", 1, ""), ("unmute", None, "")]


def test_kick_removes_the_membership_and_announces_the_kick(
    mod, lobby, bob, announced, django_capture_on_commit_callbacks
):
    lobby.members.add(bob)
    announced.clear()
    with django_capture_on_commit_callbacks(execute=True):
        response = post(mod, {"action": "kick", "user": "bob", "reason": "off topic"})
    assert response.status_code == 200, response.content
    assert not lobby.members.filter(pk=bob.pk).exists()
    assert AccessChange.kicked("lobby", (bob.pk,)) in announced
    assert AccessChange.room_changed("lobby", (bob.pk,)) in announced  # the inbox drops it
    # A kicked user may read the public room again and rejoin it.
    assert access.may_read(lobby, bob.pk)
    assert send(bob).error is None
    row = ModerationAction.objects.get(action="kick")
    assert (row.target_user, row.reason) == (bob, "off topic")


def test_ban_refuses_the_room_until_unban(
    mod, lobby, bob, announced, django_capture_on_commit_callbacks
):
    lobby.members.add(bob)
    send(bob, "findme in the lobby")
    bob_client = Client()
    bob_client.force_login(bob)
    with django_capture_on_commit_callbacks(execute=True):
        assert post(mod, {"action": "ban", "user": "bob", "reason": "spam"}).status_code == 200
    assert AccessChange.kicked("lobby", (bob.pk,)) in announced
    assert Ban.objects.get(room=lobby, user=bob).reason == "spam"
    assert not lobby.members.filter(pk=bob.pk).exists()
    # Every read path refuses bob the room, public as it is.
    assert not access.may_read(lobby, bob.pk) and not access.may_post(lobby, bob.pk)
    assert (lobby.id, bob.pk) not in access.readers([(lobby, bob.pk)])
    assert (lobby.id, bob.pk) not in access.current_readers([(lobby, bob.pk)])
    assert lobby not in Room.objects.visible_to(bob)
    assert send(bob).error == ErrorCode.FORBIDDEN
    assert_error(bob_client.get("/api/rooms/lobby/messages/"), 403, "forbidden")
    assert_error(bob_client.get("/api/rooms/lobby/"), 403, "forbidden")
    assert_error(bob_client.post("/api/rooms/lobby/join/"), 403, "forbidden")
    assert "lobby" not in [r["slug"] for r in bob_client.get("/api/rooms/").json()["rooms"]]
    found = bob_client.get("/api/search/?q=findme").json()
    assert found.get("results") == [], found  # search reads the rooms visible_rooms allows
    assert mod.get("/api/search/?q=findme").json()["results"]  # alice still finds it
    assert bob_client.get("/rooms/lobby/").status_code in (403, 404)
    announced.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert post(mod, {"action": "unban", "user": "bob"}).status_code == 200
    assert announced == [AccessChange.room_changed("lobby", (bob.pk,))]
    assert access.may_read(lobby, bob.pk) and send(bob).error is None
    assert [a for (a,) in ModerationAction.objects.order_by("id").values_list("action")] == [
        "ban",
        "unban",
    ]


def test_a_ban_holds_in_a_private_room_and_for_anonymous_pairs_costs_nothing(
    lobby, secret, alice, bob, django_assert_num_queries
):
    secret.members.add(bob)
    Ban.objects.create(room=secret, user=bob)
    pairs = [(secret, bob.pk), (secret, alice.pk), (lobby, bob.pk), (lobby, None)]
    with django_assert_num_queries(1):  # memberships and bans in one statement
        allowed = access.readers(pairs)
    assert allowed == {(secret.id, alice.pk), (lobby.id, bob.pk), (lobby.id, None)}
    with django_assert_num_queries(0):
        access.readers([(lobby, None)])


def test_slow_mode(mod, lobby, bob, announced, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = post(mod, {"action": "slow_mode", "seconds": 30})
    assert response.status_code == 200
    assert response.json()["room"]["slow_mode_seconds"] == 30
    assert response.json()["action"]["seconds"] == 30
    assert AccessChange.room_changed("lobby") in announced  # the inboxes' room objects
    lobby.refresh_from_db()
    assert lobby.slow_mode_seconds == 30 and lobby.last_seq == 0
    assert send(bob).error is None
    second = send(bob)
    assert second.error == ErrorCode.RATE_LIMITED and second.retry_after == 30
    assert post(mod, {"action": "slow_mode", "seconds": 0}).status_code == 200
    assert send(bob).error is None
    assert ModerationAction.objects.filter(action="slow_mode").count() == 2


def test_staff_moderate_every_room_and_direct_rooms_only_staff(client, alice, bob, lobby):
    alice.is_staff = True
    alice.save()
    client.force_login(alice)
    assert post(client, {"action": "mute", "user": "bob", "minutes": 5}).status_code == 200
    direct = Room.objects.create(slug="dm-x", name="x", kind=Room.Kind.DIRECT, is_public=False)
    direct.members.add(bob)
    direct.moderators.add(bob)  # no effect: a direct room has no moderators but staff
    assert not access.may_moderate(direct, bob.pk)
    assert access.may_moderate(direct, alice.pk)


# -- bad input -------------------------------------------------------------------------


def test_a_non_moderator_and_anonymous_are_refused(client, lobby, bob, mallory):
    assert_error(post(client, {"action": "kick", "user": "bob"}), 403, "forbidden")
    client.force_login(mallory)
    for payload in (
        {"action": "kick", "user": "bob"},
        {"action": "slow_mode", "seconds": 10},
        {"action": "mute", "user": "nobody-at-all", "minutes": 5},  # no user-existence leak
        "not json",
    ):
        assert_error(post(client, payload), 403, "forbidden")
    assert not ModerationAction.objects.exists() and not Mute.objects.exists()


def test_a_moderator_of_another_room_may_not(client, lobby, alice, bob):
    other = Room.objects.create(slug="other", name="Other")
    other.moderators.add(alice)
    client.force_login(alice)
    assert_error(post(client, {"action": "kick", "user": "bob"}), 403, "forbidden")
    assert (
        post(client, {"action": "kick", "user": "bob"}, "/api/rooms/other/moderation/").status_code
        == 200
    )


def test_unknown_room_and_private_room(mod, secret):
    assert_error(
        post(mod, {"action": "kick", "user": "bob"}, "/api/rooms/nope/moderation/"),
        404,
        "not_found",
    )
    secret.members.clear()
    assert_error(
        post(mod, {"action": "kick", "user": "bob"}, "/api/rooms/secret/moderation/"),
        403,
        "forbidden",
    )


def test_unknown_user(mod):
    assert_error(post(mod, {"action": "ban", "user": "ghost"}), 404, "not_found")
    assert not ModerationAction.objects.exists()


def test_moderators_staff_and_oneself_cannot_be_punished(mod, lobby, alice, bob, mallory):
    lobby.moderators.add(bob)
    mallory.is_staff = True
    mallory.save()
    for name in ("bob", "mallory", "alice"):
        for action in ({"action": "mute", "minutes": 5}, {"action": "kick"}, {"action": "ban"}):
            assert_error(post(mod, {**action, "user": name}), 403, "forbidden")
    assert not Mute.objects.exists() and not Ban.objects.exists()
    assert not ModerationAction.objects.exists()
    # Lifting is not punishing: unmute and unban of anyone is fine.
    assert post(mod, {"action": "unmute", "user": "bob"}).status_code == 200


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"action": "explode", "user": "bob"},
        {"action": ["mute"], "user": "bob"},
        {"action": "mute", "user": "bob"},
        {"action": "mute", "user": "bob", "minutes": 0},
        {"action": "mute", "user": "bob", "minutes": 525_601},
        {"action": "mute", "user": "bob", "minutes": "10"},
        {"action": "mute", "user": "bob", "minutes": 1.5},
        {"action": "mute", "user": "bob", "minutes": True},
        {"action": "mute", "user": "bob", "minutes": -3},
        {"action": "mute", "user": "bob", "minutes": 5, "reason": 7},
        {"action": "mute", "user": "bob", "minutes": 5, "reason": "x" * 501},
        {"action": "mute", "user": "bob", "minutes": 5, "reason": "nul\x00"},
        {"action": "mute", "user": "bob", "minutes": 5, "reason": "\ud800"},
        {"action": "kick"},
        {"action": "kick", "user": ""},
        {"action": "kick", "user": 12},
        {"action": "kick", "user": None},
        {"action": "kick", "user": "b" * 151},
        {"action": "slow_mode"},
        {"action": "slow_mode", "seconds": -1},
        {"action": "slow_mode", "seconds": 21_601},
        {"action": "slow_mode", "seconds": "30"},
        {"action": "slow_mode", "seconds": None},
    ],
)
def test_malformed_requests_are_400_and_change_nothing(mod, lobby, bob, payload):
    assert_error(post(mod, payload), 400, "bad_request")
    assert not ModerationAction.objects.exists() and not Mute.objects.exists()
    lobby.refresh_from_db()
    assert lobby.slow_mode_seconds == 0


@pytest.mark.parametrize("raw", ["", "[]", "[1,2]", "{", "null", '"mute"', '{"action": NaN}'])
def test_bodies_that_are_no_json_object_are_400(mod, raw):
    assert_error(post(mod, raw), 400, "bad_request")


def test_wrong_method_and_oversized_body(mod, settings):
    response = mod.get(URL)
    assert response.status_code == 405 and response["Allow"] == "POST"
    big = json.dumps(
        {"action": "ban", "user": "bob", "reason": "x" * (settings.CHAT_MAX_FRAME_BYTES + 10)}
    )
    assert_error(post(mod, big), 413, "too_large")


def test_csrf_is_checked(lobby, alice):
    lobby.moderators.add(alice)
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(alice)
    assert_error(post(strict, {"action": "slow_mode", "seconds": 5}), 403, "forbidden")


# -- deletions by moderators, the audit log --------------------------------------------


def test_a_moderators_delete_over_the_api_is_audited(mod, lobby, alice, bob):
    message = send(bob, "spam")
    response = mod.delete(f"/api/rooms/lobby/messages/{message.seq}/")
    assert response.status_code == 200, response.content
    row = ModerationAction.objects.get()
    assert (row.action, row.actor, row.target_user, row.target_seq) == (
        "delete",
        alice,
        bob,
        message.seq,
    )


def test_the_admins_delete_is_audited_in_its_transaction(lobby, alice, bob):
    message = send(bob, "spam")
    row = Message.objects.get(room=lobby, seq=message.seq)
    assert services.delete_message(row.pk, by_user_id=alice.pk)["type"] == "deleted"
    audit = ModerationAction.objects.get()
    assert (audit.actor, audit.target_user, audit.target_seq) == (alice, bob, message.seq)
    mine = send(alice, "mine")
    services.delete_message(Message.objects.get(room=lobby, seq=mine.seq).pk, alice.pk)
    assert ModerationAction.objects.count() == 1  # one's own is no moderation


# -- the admin -------------------------------------------------------------------------


def test_moderators_set_in_the_admin_take_effect_at_once(
    admin_client, lobby, bob, announced, django_capture_on_commit_callbacks
):
    victim = send(lobby.members.model.objects.create_user("carol"), "hello")
    form = {
        "name": lobby.name,
        "description": "",
        "is_public": "on",
        "slow_mode_seconds": "0",
        "moderators": [bob.pk],
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"/admin/chat/room/{lobby.pk}/change/", form)
    assert response.status_code == 302, response.content[:2000]
    assert list(lobby.moderators.all()) == [bob]
    assert AccessChange.room_changed("lobby", (bob.pk,)) in announced
    assert access.may_moderate(lobby, bob.pk)
    bob_client = Client()
    bob_client.force_login(bob)
    assert bob_client.get("/api/rooms/lobby/").json()["is_moderator"] is True
    deleted = bob_client.delete(f"/api/rooms/lobby/messages/{victim.seq}/")
    assert deleted.status_code == 200, deleted.content
    announced.clear()
    form["moderators"] = []
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(f"/admin/chat/room/{lobby.pk}/change/", form)
    assert not access.may_moderate(lobby, bob.pk)
    assert AccessChange.room_changed("lobby", (bob.pk,)) in announced


def test_admin_pages_show_moderation(admin_client, mod, lobby, bob):
    post(mod, {"action": "mute", "user": "bob", "minutes": 30, "reason": "calm down"})
    post(mod, {"action": "ban", "user": "bob", "reason": "<script>x</script>"})
    page = admin_client.get(f"/admin/chat/room/{lobby.pk}/change/").content.decode()
    assert "moderators" in page and "slow_mode_seconds" in page
    assert "muted until" in page and "banned" in page and "calm down" in page
    assert "<script>x</script>" not in page and "&lt;script&gt;" in page
    assert "/admin/chat/moderationaction/?room__id__exact=" in page
    audit = admin_client.get("/admin/chat/moderationaction/")
    assert audit.status_code == 200 and audit.context["cl"].result_count == 2
    assert (
        admin_client.get("/admin/chat/moderationaction/?action__exact=ban")
        .context["cl"]
        .result_count
        == 1
    )
    assert (
        admin_client.get(f"/admin/chat/moderationaction/?room__id__exact={lobby.pk}").status_code
        == 200
    )
    assert admin_client.get("/admin/chat/moderationaction/add/").status_code == 403
    row = ModerationAction.objects.first()
    assert (
        admin_client.post(
            f"/admin/chat/moderationaction/{row.pk}/delete/", {"post": "yes"}
        ).status_code
        == 403
    )
    assert admin_client.get("/admin/chat/mute/").status_code == 200
    assert admin_client.get("/admin/chat/ban/").status_code == 200
    assert admin_client.get("/admin/chat/ban/add/").status_code == 403


def test_lifting_a_ban_in_the_admin_is_an_audited_unban(
    admin_client, mod, lobby, bob, announced, django_capture_on_commit_callbacks
):
    post(mod, {"action": "ban", "user": "bob"})
    ban = Ban.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"/admin/chat/ban/{ban.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Ban.objects.exists()
    assert ModerationAction.objects.filter(action="unban", target_user=bob).exists()
    assert AccessChange.room_changed("lobby", (bob.pk,)) in announced


# -- the room object ---------------------------------------------------------------------


def test_the_room_object_tells_moderators_and_slow_mode_in_fixed_queries(
    lobby, alice, bob, django_user_model
):
    made = [
        Room.objects.create(slug=f"r{i}", name=f"R{i}", slow_mode_seconds=i) for i in range(15)
    ]
    for room in made[:5]:
        room.moderators.add(alice)
    alice.chat_rooms.add(*made)
    with CaptureQueriesContext(connection) as queries:
        shown = {r["slug"]: r for r in room_objects.visible(alice)}
    assert len(queries) == 2  # the rooms (with moderates as a column), the counts
    assert [shown[f"r{i}"]["is_moderator"] for i in range(15)] == [True] * 5 + [False] * 10
    assert shown["r7"]["slow_mode_seconds"] == 7 and shown["lobby"]["is_moderator"] is False
    mine = {r["slug"]: r for r in room_objects.member_rooms(alice.pk, is_staff=False)}
    assert mine["r0"]["is_moderator"] is True and mine["r9"]["is_moderator"] is False
    assert room_objects.one(made[0], alice)["is_moderator"] is True
    assert room_objects.one(made[0], bob)["is_moderator"] is False
    assert "is_moderator" not in room_objects.one(made[0], None)


# -- the kick notice -------------------------------------------------------------------


def test_a_kick_crosses_the_bus_as_json():
    change = AccessChange.kicked("lobby", (9, 3))
    assert change.kind == KICK and change.users == (3, 9)
    assert AccessChange.from_json(json.loads(json.dumps(change.as_json()))) == change
    for bad in (
        {"kind": "kick", "room": "lobby", "users": []},
        {"kind": "kick", "room": None, "users": [1]},
        {"kind": "kick", "room": "lobby", "users": [True]},
        {"kind": "kick", "room": "lobby", "users": "1"},
    ):
        assert AccessChange.from_json(bad) is None


# -- the live side: a kick ends connections at once, with no read ----------------------


class RecordingAuthorizer:
    def __init__(self) -> None:
        self.changes: list[AccessChange] = []

    def invalidate(self, change: AccessChange) -> None:
        self.changes.append(change)


def test_a_kick_ends_the_users_connections_to_a_public_room_at_once(clock, store, bus):
    import dataclasses

    from live_fakes import ALICE, BOB, Recorder, RecordingPresenceStore, fired

    from chat.live.hub import RoomHub
    from chat.live.limits import LiveLimits
    from chat.live.ratelimit import RateLimiter
    from chat.live.records import RateLimit, RoomInfo
    from chat.live.room import AccessRevoked

    authorizer = RecordingAuthorizer()
    hub = RoomHub(
        clock,
        store,
        bus=bus,
        presence=RecordingPresenceStore(),
        rate_limiter=RateLimiter(RateLimit(0, 10.0), clock=clock.seconds),
        max_message_chars=100,
        limits=dataclasses.replace(LiveLimits()),
        authorizer=authorizer,
    )
    store.log["lobby"] = []
    room = fired(hub.room(RoomInfo(1, "lobby", True, False, 0)))
    alice, bob, bob_again = Recorder(ALICE), Recorder(BOB), Recorder(BOB)
    for sub in (alice, bob, bob_again):
        hub.subscribe(room, sub, None)
    held: list = []
    hub.poll(room, None, 25, BOB).addBoth(held.append)
    hub.access_changed(AccessChange.kicked("lobby", (BOB.id,)))
    # At once, in this reactor turn, with no store read: the public room's rule would
    # let bob read on, so a re-check alone would not end anything.
    assert bob.dropped == bob_again.dropped == "revoked"
    assert held and held[0].check(AccessRevoked)
    assert alice.dropped is None and room.subscribers == {alice}
    assert authorizer.changes == [AccessChange.room_changed("lobby", (BOB.id,))]
    # Nothing of bob's is left to re-check: no store read at all.
    clock.advance(0)
    assert store.rechecks == []
    assert "bob" not in room.presence.leases
    # A kick in a room this process does not hold costs nothing.
    hub.access_changed(AccessChange.kicked("elsewhere", (BOB.id,)))
    clock.advance(0)


def test_the_admins_room_form_keeps_slow_mode_when_not_posted_and_bounds_it(
    admin_client, lobby, alice
):
    from django.contrib import admin as django_admin
    from django.test import RequestFactory

    lobby.slow_mode_seconds = 20
    lobby.save(update_fields=["slow_mode_seconds"])
    form = {"name": lobby.name, "description": "", "is_public": "on"}
    assert admin_client.post(f"/admin/chat/room/{lobby.pk}/change/", form).status_code == 302
    lobby.refresh_from_db()
    assert lobby.slow_mode_seconds == 20
    too_long = {**form, "slow_mode_seconds": "21601"}
    response = admin_client.post(f"/admin/chat/room/{lobby.pk}/change/", too_long)
    assert (
        response.status_code == 200
        and "slow_mode_seconds" in response.context["adminform"].form.errors
    )
    # A room loaded before a send commits is saved without writing its stale last_seq back.
    lobby.moderators.add(alice)  # not slowed
    stale = Room.objects.get(pk=lobby.pk)
    send(alice, "committed meanwhile")
    request = RequestFactory().post("/")
    request.user = alice
    django_admin.site.get_model_admin(Room).save_model(request, stale, None, change=True)
    lobby.refresh_from_db()
    assert lobby.last_seq == 1
    assert send(alice, "next").seq == 2
