"""chat/room_objects.py: the PROTOCOL room object, the visible rooms, the member rooms."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.test.utils import CaptureQueriesContext
from log_rows import append

from chat import room_objects
from chat.counts import Counts
from chat.models import ReadPosition, Room

pytestmark = pytest.mark.django_db

PUBLIC_FIELDS = {
    *("slug", "name", "description", "kind", "is_public", "is_archived", "last_seq"),
    "slow_mode_seconds",
}
USER_FIELDS = {"is_member", "read_seq", "unread", "mentions", "is_moderator"}


def test_anonymous_sees_no_personal_fields(lobby):
    shown = room_objects.room_object(lobby, AnonymousUser())
    assert set(shown) == PUBLIC_FIELDS
    assert room_objects.room_object(lobby, None) == shown
    assert shown["kind"] == "room" and shown["slow_mode_seconds"] == 0


def test_a_member_sees_counts_and_the_snapshot_s_last_seq(lobby, alice):
    shown = room_objects.room_object(lobby, alice, Counts(lobby.id, 3, 4, 1, 7))
    assert set(shown) == PUBLIC_FIELDS | USER_FIELDS
    assert (shown["last_seq"], shown["read_seq"], shown["unread"], shown["mentions"]) == (
        7,
        3,
        4,
        1,
    )
    assert shown["is_member"] is True and shown["is_moderator"] is False


def test_a_non_member_has_null_position_and_zero_counts(lobby, alice):
    shown = room_objects.room_object(lobby, alice)
    assert shown["is_member"] is False
    assert (shown["read_seq"], shown["unread"], shown["mentions"]) == (None, 0, 0)


def test_staff_moderate_everywhere(lobby, alice):
    alice.is_staff = True
    assert room_objects.room_object(lobby, alice)["is_moderator"] is True


def test_visible_lists_readable_rooms_with_counts(rooms, alice, bob, mallory):
    rooms["lobby"].members.add(alice)
    append(rooms["lobby"], bob, 5, mentions=[alice])
    by_slug = {r["slug"]: r for r in room_objects.visible(alice)}
    assert list(by_slug) == ["attic", "lobby", "secret"]
    assert (by_slug["lobby"]["unread"], by_slug["lobby"]["mentions"]) == (5, 5)
    assert by_slug["secret"]["is_member"] is True and by_slug["attic"]["is_member"] is False
    assert [r["slug"] for r in room_objects.visible(mallory)] == ["attic", "lobby"]
    assert [r["slug"] for r in room_objects.visible(AnonymousUser())] == ["attic", "lobby"]


def test_visible_costs_two_queries_however_many_rooms(alice, bob, db):
    made = Room.objects.bulk_create(Room(slug=f"r{i:03}", name=f"R{i:03}") for i in range(60))
    alice.chat_rooms.add(*made[:40])
    for room in made[:10]:
        append(room, bob, 2)
    with CaptureQueriesContext(connection) as queries:
        shown = room_objects.visible(alice)
    assert len(queries) == 2  # the rooms, the counts
    assert len(shown) == 60 and sum(r["unread"] for r in shown) == 20


def test_member_rooms_are_the_members_rooms_only(rooms, alice, bob):
    rooms["lobby"].members.add(alice)
    append(rooms["lobby"], bob, 3)
    ReadPosition.objects.filter(user=alice, room=rooms["lobby"]).update(read_seq=1)
    shown = room_objects.member_rooms(alice.id)
    assert [r["slug"] for r in shown] == ["lobby", "secret"]
    assert (shown[0]["read_seq"], shown[0]["unread"], shown[0]["last_seq"]) == (1, 2, 3)
    assert room_objects.member_rooms(bob.id) == []


def test_member_rooms_last_seq_is_the_counts_snapshot(lobby, alice, bob, monkeypatch):
    """A message appended after the counts were read must not show in ``last_seq``: the
    inbox applies every event above it to the counts."""
    lobby.members.add(alice)
    append(lobby, bob, 2)
    real_counts = room_objects.counts

    def counts_then_append(user_id, room_ids=None):
        found = real_counts(user_id, room_ids)
        append(lobby, bob, 1)  # lands between the counts and the room rows
        return found

    monkeypatch.setattr(room_objects, "counts", counts_then_append)
    [shown] = room_objects.member_rooms(alice.id)
    assert (shown["last_seq"], shown["unread"]) == (2, 2)


def test_a_direct_room_is_named_by_the_other_member(alice, bob, db):
    dm = Room.objects.create(slug="dm-ab", name="-", kind=Room.Kind.DIRECT, is_public=False)
    dm.members.add(alice, bob)
    notes = Room.objects.create(slug="dm-a", name="-", kind=Room.Kind.DIRECT, is_public=False)
    notes.members.add(alice)
    assert {r["slug"]: r["name"] for r in room_objects.member_rooms(alice.id)} == {
        "dm-ab": "bob",
        "dm-a": "alice",
    }
    assert [r["name"] for r in room_objects.visible(bob)] == ["alice"]
    assert room_objects.one(dm, bob)["kind"] == "direct"
