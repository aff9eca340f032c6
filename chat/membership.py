"""Membership of rooms ("in my sidebar", PROTOCOL.md "Rooms, membership and permissions").

Members are ``Room.members``: staff set them in the admin for private rooms, any signed-in
user joins or leaves a public room (``join``/``leave`` here, the API's
``/api/rooms/<slug>/join/`` and ``.../leave/``), and sending in a public room joins it
(chat/log.py does that one inside the append transaction, with raw inserts).

Every membership has a ReadPosition row, made at the room's ``last_seq`` when the user
becomes a member (nothing old counts as unread) and deleted when they stop being one. The
rows follow ``Room.members`` through ``m2m_changed`` (chat/signals.py calls
``members_added``/``members_removed``/``members_cleared`` here), so every way of changing
members (the admin's widget, ``room.members.add``, ``user.chat_rooms.remove``, a script)
keeps them, in the transaction of the change itself. Raw SQL on the membership table is
not seen (chat/log.py inserts the row itself); chat/counts.py reads a missing row as
"read through last_seq", which is what the row would hold.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import DEFAULT_DB_ALIAS, connections

from chat import access
from chat.counts import MEMBERS, POSITIONS, ROOMS
from chat.models import ReadPosition, Room


class NotAllowed(Exception):
    """The user may not join or leave this room; ``str()`` is the text for the client."""


def join(room: Room, user) -> bool:
    """Make ``user`` a member of the public room ``room``; False when they already were.

    Raises NotAllowed for an anonymous user, a private room (only staff or its moderators
    add members) and a direct room (its two members are fixed).
    """
    user_id = access.user_id_of(user)
    if user_id is None:
        raise NotAllowed("Sign in to join a room.")
    if room.kind != Room.Kind.ROOM:
        raise NotAllowed("A direct room cannot be joined.")
    if not room.is_public:
        if is_member(room.id, user_id):
            return False
        raise NotAllowed("Only staff or a moderator can add members to a private room.")
    if is_member(room.id, user_id):
        return False
    room.members.add(user_id)  # m2m_changed: the read position, the access notice
    return True


def leave(room: Room, user) -> bool:
    """End ``user``'s membership of ``room`` (public or private); False when there was none.

    Leaving a private room loses access to it (only staff or a moderator can add it
    back); the m2m_changed notice ends the user's live connections to it.
    """
    user_id = access.user_id_of(user)
    if user_id is None:
        raise NotAllowed("Sign in to leave a room.")
    if room.kind != Room.Kind.ROOM:
        raise NotAllowed("A direct room cannot be left.")
    if not is_member(room.id, user_id):
        return False
    room.members.remove(user_id)
    return True


def is_member(room_id: int, user_id: int | None) -> bool:
    if user_id is None:
        return False
    return Room.members.through.objects.filter(room_id=room_id, user_id=user_id).exists()


# -- the read positions that follow the memberships (called by chat/signals.py) ----------


def members_added(
    room_ids: Iterable[int], user_ids: Iterable[int], using: str = DEFAULT_DB_ALIAS
) -> None:
    """A position at the room's ``last_seq`` for each new membership among rooms x users.

    One statement (per 5000 ids); a membership that already has a row keeps it (an
    ``add`` of a member must not reset how far they read). ``last_seq`` is read by the
    statement itself, not from a Room instance that may be stale.
    """
    with connections[using].cursor() as cursor:
        for rooms, users in _chunks(room_ids, user_ids):
            cursor.execute(
                f"INSERT INTO {POSITIONS} (user_id, room_id, read_seq)"
                f" SELECT mb.user_id, mb.room_id, r.last_seq FROM {MEMBERS} mb"
                f" JOIN {ROOMS} r ON r.id = mb.room_id"
                f" WHERE mb.room_id IN ({_marks(rooms)}) AND mb.user_id IN ({_marks(users)})"
                " ON CONFLICT (user_id, room_id) DO NOTHING",
                [*rooms, *users],
            )


def members_removed(
    room_ids: Iterable[int], user_ids: Iterable[int], using: str = DEFAULT_DB_ALIAS
) -> None:
    """Delete the positions of the (room, user) pairs that are no longer memberships."""
    with connections[using].cursor() as cursor:
        for rooms, users in _chunks(room_ids, user_ids):
            cursor.execute(
                f"DELETE FROM {POSITIONS}"
                f" WHERE room_id IN ({_marks(rooms)}) AND user_id IN ({_marks(users)})"
                f" AND NOT EXISTS (SELECT 1 FROM {MEMBERS} mb WHERE"
                f" mb.room_id = {POSITIONS}.room_id AND mb.user_id = {POSITIONS}.user_id)",
                [*rooms, *users],
            )


def members_cleared(
    room_id: int | None = None, user_id: int | None = None, using: str = DEFAULT_DB_ALIAS
) -> None:
    """Before ``room.members.clear()`` (every position of the room) or
    ``user.chat_rooms.clear()`` (every position of the user): the rows go in the same
    transaction as the memberships."""
    rows = ReadPosition.objects.using(using)
    if room_id is not None:
        rows.filter(room_id=room_id).delete()
    elif user_id is not None:
        rows.filter(user_id=user_id).delete()


def _marks(values: list[int]) -> str:
    return ", ".join(["%s"] * len(values))


# Ids in one statement (the admin may add thousands of members at once): far below
# SQLite's 32,766 parameters.
_IDS_PER_STATEMENT = 5000


def _chunks(room_ids: Iterable[int], user_ids: Iterable[int]):
    """(rooms, users) id lists covering rooms x users, each small enough for a statement."""
    rooms_all, users_all = sorted(set(room_ids)), sorted(set(user_ids))
    step = _IDS_PER_STATEMENT
    for r in range(0, len(rooms_all), step):
        for u in range(0, len(users_all), step):
            yield rooms_all[r : r + step], users_all[u : u + step]
