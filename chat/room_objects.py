"""The room object of PROTOCOL.md (the API, ``/api/me/``, the inbox hello).

```json
{"slug", "name", "description", "kind", "is_public", "is_archived", "last_seq",
 "is_member", "read_seq", "unread", "mentions", "slow_mode_seconds", "is_moderator"}
```

``is_member``, ``read_seq``, ``unread``, ``mentions`` and ``is_moderator`` are for signed-in
users only. For a member, ``last_seq`` is the one read with the counts (chat/counts.py,
one statement): the inbox takes it as "the counts are exact through this seq" and applies
only later events, so it must not come from a later read of the room row.

A list of rooms costs a fixed number of queries whatever its length: the rooms, the
counts (one statement), and the other members of its direct rooms when it has any;
whether the user moderates each room is a column of the rooms' query (``moderated``).
"""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth import get_user_model
from django.db.models import Exists, OuterRef, QuerySet, Value

from chat import access
from chat.counts import Counts, counts
from chat.models import Room


def room_object(
    room: Room,
    user=None,
    counted: Counts | None = None,
    *,
    name: str | None = None,
    is_staff: bool | None = None,
    moderates: bool = False,
) -> dict:
    """``room`` as the room object ``user`` sees (anonymous: None or AnonymousUser).

    ``counted`` is the user's counts for it (None: not a member). ``name`` overrides the
    room's name (a direct room is named by its other member, ``direct_names``).
    ``is_staff`` stands for ``user.is_staff`` where only an id is at hand. ``moderates``:
    the user is one of the room's moderators (``moderated``); staff moderate every room.
    """
    shown = {
        "slug": room.slug,
        "name": room.name if name is None else name,
        "description": room.description,
        "kind": room.kind,
        "is_public": room.is_public,
        "is_archived": room.is_archived,
        "last_seq": room.last_seq if counted is None else counted.last_seq,
        "slow_mode_seconds": room.slow_mode_seconds,
    }
    signed_in = is_staff is not None or access.user_id_of(user) is not None
    if not signed_in:
        return shown
    if is_staff is None:
        is_staff = bool(getattr(user, "is_staff", False))
    shown.update(
        is_member=counted is not None,
        read_seq=None if counted is None else counted.read_seq,
        unread=0 if counted is None else counted.unread,
        mentions=0 if counted is None else counted.mentions,
        # Staff moderate every room; a direct room has no other moderators (PROTOCOL.md).
        is_moderator=is_staff or (moderates and room.kind != Room.Kind.DIRECT),
    )
    return shown


def one(room: Room, user) -> dict:
    """The room object of one room (``GET /api/rooms/<slug>/``, join, leave)."""
    user_id = access.user_id_of(user)
    counted = counts(user_id, [room.id]).get(room.id) if user_id is not None else None
    names = direct_names([room], user_id)
    mine = user_id is not None and room.moderators.filter(pk=user_id).exists()
    return room_object(room, user, counted, name=names.get(room.id), moderates=mine)


def visible(user) -> list[dict]:
    """``GET /api/rooms/``: every room ``user`` may read (chat.access.visible_rooms), by
    name, with the counts of those the user is a member of from ONE counts() call."""
    user_id = access.user_id_of(user)
    rooms = list(moderated(Room.objects.visible_to(user), user_id))
    counted = counts(user_id) if user_id is not None else {}
    names = direct_names(rooms, user_id)
    return [
        room_object(r, user, counted.get(r.id), name=names.get(r.id), moderates=r.moderates)
        for r in rooms
    ]


def member_rooms(user_id: int, is_staff: bool | None = None) -> list[dict]:
    """Every room ``user_id`` is a member of (``/api/me/``, the inbox hello), by name.

    ``last_seq`` of each is the counts' snapshot (see the module's docstring); the room
    row is read after, for its name and flags only.
    """
    counted = counts(user_id)
    found = moderated(Room.objects.filter(pk__in=counted.keys()), user_id)
    rooms = sorted(found, key=lambda r: (r.name, r.pk))
    if is_staff is None:
        is_staff = bool(
            get_user_model()
            ._default_manager.filter(pk=user_id)
            .values_list("is_staff", flat=True)
            .first()
        )
    names = direct_names(rooms, user_id)
    return [
        room_object(
            r,
            None,
            counted[r.id],
            name=names.get(r.id),
            is_staff=is_staff,
            moderates=r.moderates,
        )
        for r in rooms
    ]


def moderated(rooms: QuerySet[Room], user_id: int | None) -> QuerySet[Room]:
    """``rooms`` with ``moderates``: whether ``user_id`` is one of each room's moderators
    (``Room.moderators``; staff aside), as an EXISTS column of the same query."""
    if user_id is None:
        return rooms.annotate(moderates=Value(False))
    mine = Room.moderators.through.objects.filter(room_id=OuterRef("pk"), user_id=user_id)
    return rooms.annotate(moderates=Exists(mine))


def direct_names(rooms: Iterable[Room], user_id: int | None) -> dict[int, str]:
    """room id -> the name a direct room has for ``user_id``: its other member's username
    (its only member's, for a user's notes to self). One query, none without direct rooms."""
    direct = [r.id for r in rooms if r.kind == Room.Kind.DIRECT]
    if not direct:
        return {}
    model = get_user_model()
    rows = Room.members.through.objects.filter(room_id__in=direct).values_list(
        "room_id", "user_id", f"user__{model.USERNAME_FIELD}"
    )
    names: dict[int, str] = {}
    for room_id, member_id, username in rows.order_by("room_id", "user_id"):
        if member_id != user_id or room_id not in names:
            names[room_id] = username
    return names
