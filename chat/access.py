"""Who may read a room and who may post in it: THE rule, used by every door.

The room pages and ``Room.can_read``/``can_post``, the JSON API, live auth
(``chat/live/auth.py``, on the store's threads) and the room log (``chat/log.py``, inside
the appending transaction) all ask here, so a change of the rule (bans, mutes,
moderators, direct rooms) is made once and holds on every transport.

The rule (PROTOCOL.md "Rooms, membership and permissions", "Moderation"):

- a public room may be read by anyone, even anonymous; a private room by its members;
  a user banned from a room (``Ban``) may not read it, public or private;
- a room may be posted in by a signed-in user who may read it, unless it is archived
  (mutes and slow mode are rules of a write, not of access: chat/log_rules.py);
- staff moderate every room; a room's ``moderators`` moderate it (not a direct room:
  only staff moderate those).

Everything takes user *ids* (None for anonymous), because the live side knows users
only by id; ``user_id_of`` turns a Django user into one. A room is anything with ``id``,
``is_public`` and ``is_archived``: a ``Room`` row or the live side's ``RoomInfo``. The
batch forms answer many (room, user) pairs with one membership query, which is what the
log's group commit needs; the single forms are the batch forms of one pair. Bans are
read the same way: one query per batch, whatever its size.

``current_readers`` is the rule as it applies to a connection that is already open
(PROTOCOL.md "Losing access"): live chat re-authorizes its connections with it whenever
something the rule depends on changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from django.contrib.auth import get_user_model
from django.db.models import Q, QuerySet

from chat import fast_queries
from chat.models import Ban, Room


class RoomLike(Protocol):
    id: int
    is_public: bool
    is_archived: bool


Pair = tuple[int, int | None]  # (room id, user id or None for anonymous)

# User ids in one query of ``current_readers``: a check of every live connection of a
# process can name tens of thousands of users, past what one statement may carry
# (SQLite's limit on parameters is 32,766; PostgreSQL's 65,535).
_IDS_PER_QUERY = 1000


def user_id_of(user: object) -> int | None:
    """The id of a signed-in Django user; None for anonymous (or no user at all)."""
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return user.pk


def readers(pairs: Iterable[tuple[RoomLike, int | None]]) -> set[Pair]:
    """The (room id, user id) pairs among ``pairs`` whose user may read the room."""
    allowed: set[Pair] = set()
    private: set[tuple[int, int]] = set()
    signed_in: set[tuple[int, int]] = set()
    for room, user_id in pairs:
        if user_id is not None:
            signed_in.add((room.id, user_id))
        if room.is_public:
            allowed.add((room.id, user_id))
        elif user_id is not None:
            private.add((room.id, user_id))
    members, bans = _memberships_and_bans(private, signed_in)
    return (allowed | members) - bans


def posters(pairs: Iterable[tuple[RoomLike, int | None]]) -> set[Pair]:
    """The (room id, user id) pairs among ``pairs`` whose user may post in the room."""
    open_pairs = [
        (room, user_id) for room, user_id in pairs if user_id is not None and not room.is_archived
    ]
    return readers(open_pairs)


def may_read(room: RoomLike, user_id: int | None) -> bool:
    return (room.id, user_id) in readers([(room, user_id)])


def may_post(room: RoomLike, user_id: int | None) -> bool:
    """Archival included: an archived room is read-only for everyone."""
    return (room.id, user_id) in posters([(room, user_id)])


def may_moderate(room: RoomLike, user_id: int | None) -> bool:
    """Whether ``user_id`` may moderate ``room`` (delete anyone's message, mute, kick,
    ban, slow mode): staff, who are moderators everywhere, and the room's moderators."""
    return (room.id, user_id) in moderators([(room, user_id)])


def moderators(pairs: Iterable[tuple[RoomLike, int | None]]) -> set[Pair]:
    """The (room id, user id) pairs among ``pairs`` whose user moderates the room: one
    query for staff and one for the rooms' moderators, however many pairs. A direct room
    (``kind`` "direct") has no moderators but staff (PROTOCOL.md)."""
    pairs = [(room, user_id) for room, user_id in pairs if user_id is not None]
    if not pairs:
        return set()
    users = get_user_model()._default_manager
    staff = set(
        users.filter(pk__in={u for _, u in pairs}, is_staff=True).values_list("pk", flat=True)
    )
    allowed: set[Pair] = {(room.id, u) for room, u in pairs if u in staff}
    per_room = {
        (room.id, u)
        for room, u in pairs
        if u not in staff and getattr(room, "kind", Room.Kind.ROOM) != Room.Kind.DIRECT
    }
    if per_room:
        rows = Room.moderators.through.objects.filter(
            room_id__in={r for r, _ in per_room}, user_id__in={u for _, u in per_room}
        ).values_list("room_id", "user_id")
        allowed |= per_room.intersection(rows)
    return allowed


def banned(pairs: Iterable[tuple[int, int]]) -> set[tuple[int, int]]:
    """The (room id, user id) pairs among ``pairs`` that are bans, in one query."""
    pairs = set(pairs)
    if not pairs:
        return set()
    rows = Ban.objects.filter(
        room_id__in={room_id for room_id, _ in pairs},
        user_id__in={user_id for _, user_id in pairs},
    ).values_list("room_id", "user_id")
    return pairs.intersection(rows)


def is_banned(room_id: int, user_id: int | None) -> bool:
    return user_id is not None and bool(banned([(room_id, user_id)]))


def current_readers(pairs: Iterable[tuple[RoomLike, int | None]]) -> set[Pair]:
    """``readers``, for connections already open: a signed-in user counts only while their
    account can still sign in (it exists and is active). A deactivated or deleted
    account's sessions no longer sign it in (Django's ModelBackend), so the connections
    it opened must end as its next request would be refused.
    """
    pairs = list(pairs)
    user_ids = sorted({user_id for _, user_id in pairs if user_id is not None})
    users = get_user_model()._default_manager
    has_active = any(f.name == "is_active" for f in get_user_model()._meta.get_fields())
    signed_in: set[int] = set()
    for start in range(0, len(user_ids), _IDS_PER_QUERY):
        found = users.filter(pk__in=user_ids[start : start + _IDS_PER_QUERY])
        if has_active:
            found = found.filter(is_active=True)
        signed_in.update(found.values_list("pk", flat=True))
    valid = [(room, user_id) for room, user_id in pairs if user_id is None or user_id in signed_in]
    allowed: set[Pair] = set()
    for start in range(0, len(valid), _IDS_PER_QUERY):
        allowed |= readers(valid[start : start + _IDS_PER_QUERY])
    return allowed


def visible_rooms(rooms: QuerySet[Room], user_id: int | None) -> QuerySet[Room]:
    """The rooms of ``rooms`` that ``user_id`` may read (the room list, the API), as SQL."""
    if user_id is None:
        return rooms.filter(is_public=True)
    # A subquery of the user's memberships, not a join with DISTINCT: measured on 200
    # rooms (bench/api_rooms.py) 14.5 against 24 ms on PostgreSQL, 5 against 8 on SQLite.
    # The user's bans the same way: a banned room is not listed, public or not.
    mine = Room.members.through.objects.filter(user_id=user_id).values("room_id")
    bans = Ban.objects.filter(user_id=user_id).values("room_id")
    return rooms.filter(Q(is_public=True) | Q(pk__in=mine)).exclude(pk__in=bans)


def _memberships_and_bans(
    members: set[tuple[int, int]], bans: set[tuple[int, int]]
) -> tuple[set[Pair], set[Pair]]:
    """The pairs of ``members`` that are memberships and those of ``bans`` that are bans,
    in ONE query (a UNION ALL) however many rooms and users; none when both are empty."""
    if not bans:
        return set(), set()  # ``members`` is a subset of ``bans``: both are signed-in pairs
    # Plain SQL (chat/fast_queries.py): every batch of the write path asks this.
    found_members, found_bans = fast_queries.members_and_bans(
        {room_id for room_id, _ in members},
        {user_id for _, user_id in members},
        {room_id for room_id, _ in bans},
        {user_id for _, user_id in bans},
    )
    return members & found_members, bans & found_bans
