"""The admin: rooms and members, and moderation by soft delete only.

alice and the lobby are tests/unit/conftest.py's.
"""

from __future__ import annotations

import pytest
from django.contrib import admin as django_admin
from django.test import RequestFactory

from chat import log
from chat.live import publish
from chat.live.records import SendRequest
from chat.models import Message, Room

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("plain_static_storage")]


@pytest.fixture
def published():
    """The events handed to the live hub, as the server's sink would receive them."""
    events: list[dict] = []
    publish.install(lambda func, *args: func(*args), events.append)
    yield events
    publish.uninstall()


@pytest.fixture
def lobby(lobby, alice):
    """tests/unit/conftest.py's lobby, with three messages of alice's."""
    room = lobby
    log.append_events(
        [SendRequest("lobby", alice.id, "alice", body, None) for body in ("one", "two", "three")]
    )
    room.refresh_from_db()
    return room


def message(room: Room, seq: int) -> Message:
    return Message.objects.get(room=room, seq=seq)


def room_form(**overrides) -> dict:
    data = {"name": "Book Club", "slug": "book-club", "description": "Chapter by chapter"}
    data.update(overrides)
    return data


# rooms


def test_create_a_room_through_the_admin_and_see_it_in_the_api(admin_client, client):
    response = admin_client.post("/admin/chat/room/add/", room_form(is_public="on"), follow=True)
    assert response.status_code == 200
    room = Room.objects.get(slug="book-club")
    assert (room.name, room.is_public, room.is_archived, room.last_seq) == (
        "Book Club",
        True,
        False,
        0,
    )
    listed = {r["slug"]: r for r in client.get("/api/rooms/").json()["rooms"]}
    assert listed["book-club"]["name"] == "Book Club"


def test_a_bad_slug_is_refused(admin_client):
    response = admin_client.post("/admin/chat/room/add/", room_form(slug="Not A Slug"))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["slug"]
    assert not Room.objects.exists()


def test_add_form_prepopulates_the_slug(admin_client):
    response = admin_client.get("/admin/chat/room/add/")
    assert response.status_code == 200
    assert "prepopulated" in response.content.decode()
    assert response.context["adminform"].form.fields["members"]  # filter_horizontal widget


def test_add_a_member_to_a_private_room(admin_client, client, alice):
    room = Room.objects.create(slug="secret", name="Secret", is_public=False)
    client.force_login(alice)
    assert "secret" not in [r["slug"] for r in client.get("/api/rooms/").json()["rooms"]]

    response = admin_client.post(
        f"/admin/chat/room/{room.pk}/change/",
        {"name": "Secret", "description": "", "members": [alice.pk]},
        follow=True,
    )

    assert response.status_code == 200
    assert list(room.members.all()) == [alice]
    assert "secret" in [r["slug"] for r in client.get("/api/rooms/").json()["rooms"]]
    assert client.get("/api/rooms/secret/messages/").status_code == 200


def test_slug_and_last_seq_cannot_be_changed(admin_client, lobby):
    admin_client.post(
        f"/admin/chat/room/{lobby.pk}/change/",
        {"name": "Lobby 2", "slug": "hijacked", "last_seq": "999", "is_public": "on"},
        follow=True,
    )
    lobby.refresh_from_db()
    assert lobby.name == "Lobby 2"
    assert (lobby.slug, lobby.last_seq) == ("lobby", 3)


def test_room_changelist_shows_counts(admin_client, lobby, alice, django_user_model):
    lobby.members.add(alice, django_user_model.objects.create_user("bob"))
    Room.objects.create(slug="empty", name="Empty")
    log.delete_message(message(lobby, 1).id)

    response = admin_client.get("/admin/chat/room/")
    assert response.status_code == 200

    request = RequestFactory().get("/admin/chat/room/")
    rows = django_admin.site.get_model_admin(Room).get_queryset(request)
    counts = {r.slug: (r.member_count, r.last_seq) for r in rows}
    # Messages are not counted per room (a walk of every log: chat/admin/room_admin.py);
    # the log's length is: three messages and the `deleted` event.
    assert counts == {"lobby": (2, 4), "empty": (0, 0)}
    assert admin_client.get("/admin/chat/room/?q=lob").context["cl"].result_count == 1
    assert admin_client.get("/admin/chat/room/?is_public__exact=0").context["cl"].result_count == 0


def test_a_room_with_a_log_cannot_be_deleted(admin_client, lobby):
    assert admin_client.get(f"/admin/chat/room/{lobby.pk}/delete/").status_code == 403
    assert (
        admin_client.post(f"/admin/chat/room/{lobby.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    response = admin_client.post(
        "/admin/chat/room/",
        {"action": "delete_selected", "_selected_action": [lobby.pk], "post": "yes"},
    )
    assert response.status_code in (200, 302)
    assert Room.objects.filter(pk=lobby.pk).exists()
    assert Message.objects.filter(room=lobby).count() == 3


def test_an_empty_room_can_be_deleted(admin_client):
    room = Room.objects.create(slug="typo", name="Typo")
    response = admin_client.post(f"/admin/chat/room/{room.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Room.objects.filter(pk=room.pk).exists()


# messages


def test_message_changelist_search_and_filters(admin_client, lobby):
    log.delete_message(message(lobby, 2).id)

    def count(query: str) -> int:
        # The rows shown: the changelist's count is an estimate (chat/admin/scale.py).
        response = admin_client.get(f"/admin/chat/message/?{query}")
        assert response.status_code == 200
        return len(response.context["cl"].result_list)

    assert count("") == 4
    assert count("q=three") == 1  # the full-text index: messages not deleted
    assert count("q=%40alice") == 3  # @alice: her messages (the `deleted` event too)
    assert count("room=lobby") == 4
    assert count("room=nowhere") == 0
    assert count("user=alice") == 3
    assert count("kind__exact=deleted") == 1
    assert count("deleted=yes") == 1
    assert count("deleted=no") == 3


def test_messages_cannot_be_added_or_edited(admin_client, lobby):
    target = message(lobby, 1)
    assert admin_client.get("/admin/chat/message/add/").status_code == 403
    view = admin_client.get(f"/admin/chat/message/{target.pk}/change/")
    assert view.status_code == 200  # read-only view
    assert not view.context["adminform"].form.fields  # every field is read-only
    response = admin_client.post(
        f"/admin/chat/message/{target.pk}/change/",
        {"body": "rewritten", "seq": "99", "kind": "deleted"},
    )
    assert response.status_code == 403
    target.refresh_from_db()
    assert (target.body, target.seq, target.kind) == ("one", 1, "message")


def test_delete_view_soft_deletes_and_publishes(
    admin_client, admin_user, client, lobby, published, django_capture_on_commit_callbacks
):
    target = message(lobby, 2)
    confirm = admin_client.get(f"/admin/chat/message/{target.pk}/delete/")
    assert confirm.status_code == 200
    assert "soft delete" in confirm.content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            f"/admin/chat/message/{target.pk}/delete/", {"post": "yes"}, follow=True
        )

    assert response.status_code == 200
    target.refresh_from_db()  # the row is still there
    assert target.deleted_at is not None
    assert target.body == "two"
    event_row = message(lobby, 4)
    assert (event_row.kind, event_row.target, event_row.user_id) == ("deleted", 2, admin_user.pk)
    assert published == [
        {"type": "deleted", "room": "lobby", "seq": 4, "target": 2, "user": "admin"}
    ]
    assert Message.objects.count() == 4

    history = client.get("/api/rooms/lobby/messages/").json()["events"]
    assert history[1]["seq"] == 2
    assert (history[1]["body"], history[1]["deleted"]) == ("", True)
    assert history[3] == {
        "type": "deleted",
        "room": "lobby",
        "seq": 4,
        "target": 2,
        "user": "admin",
    }


def test_deleted_messages_and_events_have_no_delete_view(admin_client, lobby):
    log.delete_message(message(lobby, 1).id)
    for seq in (1, 4):  # the deleted message, and the `deleted` event itself
        url = f"/admin/chat/message/{message(lobby, seq).pk}/delete/"
        assert admin_client.get(url).status_code == 403
        assert admin_client.post(url, {"post": "yes"}).status_code == 403
    assert Message.objects.filter(room=lobby).count() == 4


def test_bulk_action_soft_deletes_after_confirmation(
    admin_client, client, lobby, published, django_capture_on_commit_callbacks
):
    log.delete_message(message(lobby, 3).id)  # seq 4: a `deleted` event
    selected = [m.pk for m in Message.objects.filter(room=lobby)]  # seqs 1..4
    changelist = admin_client.get("/admin/chat/message/")
    actions = dict(changelist.context["action_form"].fields["action"].choices)
    assert actions == {"": "---------", "soft_delete_selected": "Delete selected messages (soft)"}

    confirm = admin_client.post(
        "/admin/chat/message/",
        {"action": "soft_delete_selected", "_selected_action": selected},
    )
    assert confirm.status_code == 200
    assert "soft delete" in confirm.content.decode()
    assert not Message.objects.filter(room=lobby, deleted_at__isnull=False).exclude(seq=3).exists()

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            "/admin/chat/message/",
            {"action": "soft_delete_selected", "_selected_action": selected, "post": "yes"},
            follow=True,
        )

    assert response.status_code == 200
    rows = {m.seq: m for m in Message.objects.filter(room=lobby)}
    assert sorted(rows) == [1, 2, 3, 4, 5, 6]  # nothing removed, two events appended
    assert all(rows[seq].deleted_at is not None for seq in (1, 2, 3))
    assert {(rows[s].kind, rows[s].target) for s in (5, 6)} == {("deleted", 1), ("deleted", 2)}
    assert rows[4].deleted_at is None  # a `deleted` event is not itself deleted
    assert sorted(e["target"] for e in published) == [1, 2]

    history = client.get("/api/rooms/lobby/messages/").json()["events"]
    assert [(e["seq"], e.get("body"), e.get("deleted")) for e in history[:3]] == [
        (1, "", True),
        (2, "", True),
        (3, "", True),
    ]


def test_default_bulk_delete_is_gone(admin_client, lobby):
    selected = [m.pk for m in Message.objects.filter(room=lobby)]
    admin_client.post(
        "/admin/chat/message/",
        {"action": "delete_selected", "_selected_action": selected, "post": "yes"},
    )
    assert Message.objects.filter(room=lobby).count() == 3
    assert not Message.objects.filter(deleted_at__isnull=False).exists()


def test_delete_queryset_is_soft(admin_user, lobby):
    """The hook Django's own delete paths call: no row may go away through it."""
    request = RequestFactory().post("/admin/chat/message/")
    request.user = admin_user
    model_admin = django_admin.site.get_model_admin(Message)
    model_admin.delete_queryset(request, Message.objects.filter(room=lobby, seq__lte=2))
    model_admin.delete_model(request, message(lobby, 3))
    assert Message.objects.filter(room=lobby).count() == 6
    assert Message.objects.filter(room=lobby, deleted_at__isnull=False).count() == 3
