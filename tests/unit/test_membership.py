"""chat/membership.py and its hooks in chat/signals.py: a read position per membership.

Runs on SQLite, and on PostgreSQL with DATABASE_URL=postgres://... (test_on_postgres.py).
"""

from __future__ import annotations

import pytest
from django.db import transaction
from log_rows import append

from chat import membership
from chat.models import ReadPosition, Room

pytestmark = pytest.mark.django_db


def positions(room=None, user=None) -> dict[tuple[str, str], int]:
    rows = ReadPosition.objects.select_related("room", "user")
    if room is not None:
        rows = rows.filter(room=room)
    if user is not None:
        rows = rows.filter(user=user)
    return {(p.room.slug, p.user.username): p.read_seq for p in rows}


def test_adding_a_member_starts_their_position_at_last_seq(lobby, alice, bob):
    append(lobby, bob, 7)
    lobby.members.add(alice)
    assert positions(lobby) == {("lobby", "alice"): 7}


def test_adding_from_the_user_side_too(lobby, secret, alice, bob):
    append(lobby, alice, 3)
    append(secret, alice, 5)
    bob.chat_rooms.add(lobby, secret)
    assert positions(user=bob) == {("lobby", "bob"): 3, ("secret", "bob"): 5}


def test_the_position_reads_last_seq_from_the_database_not_a_stale_instance(lobby, alice, bob):
    stale = Room.objects.get(pk=lobby.pk)
    append(lobby, bob, 4)
    stale.members.add(alice)
    assert positions(lobby) == {("lobby", "alice"): 4}


def test_adding_a_member_again_keeps_their_position(lobby, alice, bob):
    lobby.members.add(alice)
    append(lobby, bob, 5)
    lobby.members.add(alice)
    lobby.members.set([alice, bob])
    assert positions(lobby) == {("lobby", "alice"): 0, ("lobby", "bob"): 5}


def test_removing_a_member_deletes_their_position(lobby, secret, alice, bob):
    lobby.members.add(alice, bob)
    lobby.members.remove(alice)
    assert positions() == {("lobby", "bob"): 0, ("secret", "alice"): 0}
    bob.chat_rooms.remove(lobby)
    assert positions() == {("secret", "alice"): 0}


def test_clear_from_either_side(lobby, secret, alice, bob):
    lobby.members.add(alice, bob)
    lobby.members.clear()
    assert positions() == {("secret", "alice"): 0}
    bob.chat_rooms.add(lobby, secret)
    bob.chat_rooms.clear()
    assert positions() == {("secret", "alice"): 0}


def test_set_replaces_positions_of_who_left_only(lobby, alice, bob, mallory):
    lobby.members.set([alice, bob])
    append(lobby, bob, 2)
    lobby.members.set([bob, mallory])
    assert positions(lobby) == {("lobby", "bob"): 0, ("lobby", "mallory"): 2}


def test_a_rolled_back_add_leaves_no_position(lobby, alice):
    with pytest.raises(RuntimeError), transaction.atomic():
        lobby.members.add(alice)
        raise RuntimeError
    assert positions() == {}


def test_join_a_public_room(lobby, attic, alice, bob):
    append(lobby, bob, 3)
    assert membership.join(lobby, alice) is True
    assert membership.join(lobby, alice) is False
    assert positions(lobby) == {("lobby", "alice"): 3}
    assert membership.join(attic, alice) is True  # archived is read-only, still listable


def test_join_refuses_private_direct_and_anonymous(secret, alice, mallory, db):
    from django.contrib.auth.models import AnonymousUser

    with pytest.raises(membership.NotAllowed):
        membership.join(secret, mallory)
    assert membership.join(secret, alice) is False  # already a member: nothing to do
    direct = Room.objects.create(slug="dm-1", name="dm", kind=Room.Kind.DIRECT, is_public=False)
    with pytest.raises(membership.NotAllowed):
        membership.join(direct, alice)
    with pytest.raises(membership.NotAllowed):
        membership.join(secret, AnonymousUser())
    with pytest.raises(membership.NotAllowed):
        membership.leave(secret, AnonymousUser())


def test_leave_public_and_private(lobby, secret, alice):
    membership.join(lobby, alice)
    assert membership.leave(lobby, alice) is True
    assert membership.leave(lobby, alice) is False
    assert membership.leave(secret, alice) is True
    assert not secret.members.filter(pk=alice.pk).exists()
    assert positions() == {}


def test_leaving_a_private_room_is_announced_as_an_access_change(
    secret, alice, monkeypatch, django_capture_on_commit_callbacks
):
    """The existing receiver still runs: live connections of alice to secret are ended."""
    seen = []
    monkeypatch.setattr("chat.signals.announce_access", seen.append)
    with django_capture_on_commit_callbacks(execute=True):
        membership.leave(secret, alice)
    assert [(c.kind, c.room, c.users) for c in seen] == [("room", "secret", (alice.id,))]


def test_deleting_a_room_or_a_user_deletes_positions(lobby, secret, alice, bob):
    lobby.members.add(alice, bob)
    lobby.delete()
    bob.delete()
    assert positions() == {("secret", "alice"): 0}
