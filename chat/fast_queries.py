"""The write path's fixed-shape reads, as plain SQL: the room log's (chat/log.py) and the
access rule's (chat/access.py), which every batch asks, and what a connection being
opened reads: its room (chat/live/store.py ``_room_info``), its session and account
(chat/sessions.py ``quick_user``); and the inbox check's memberships of every connected
user (chat/live/inbox_reads.py).

Why not the ORM here: a batch of one send made ten statements, and building them (the
QuerySet, its filters, the compiler) took about two thirds of the batch's 4 ms on SQLite,
the SQL itself a few hundred microseconds (bench/write_path.py, cProfile). With many
rooms and few senders in each, batches are small and that fixed cost is most of what a
message costs the server. These few reads of the hot path are written out once; every
other query stays in the ORM.

Each takes sets of ids and returns the rows that exist: the caller intersects them with
the exact pairs it asked about (the same shape as chat/access.py's queries: one statement
whatever the number of rooms). Names come from the models' ``_meta``, so a renamed table
or column cannot drift from the models.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from django.db import connection

from chat.models import Message, Room
from chat.models_extra import Ban, Mute

_q = connection.ops.quote_name


def _marks(values: Collection) -> str:
    return ", ".join(["%s"] * len(values))


def _column(model, name: str) -> str:
    return _q(model._meta.get_field(name).column)


def _rows(sql: str, params: Iterable) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, list(params))
        return cursor.fetchall()


def lock_rooms(slugs: Collection[str]) -> dict[str, Room]:
    """The rooms of these slugs, their rows locked (``FOR UPDATE`` where the database has
    it; SQLite's IMMEDIATE transaction has locked everything already), in id order so
    that concurrent batches cannot deadlock."""
    slugs = sorted(set(slugs))
    if not slugs:
        return {}
    columns = ", ".join(_q(f.column) for f in Room._meta.concrete_fields)
    sql = (
        f"SELECT {columns} FROM {_q(Room._meta.db_table)} "
        f"WHERE {_column(Room, 'slug')} IN ({_marks(slugs)}) ORDER BY {_column(Room, 'id')}"
    )
    if connection.features.has_select_for_update:
        sql += " FOR UPDATE"
    # A RawQuerySet applies the fields' converters (booleans and datetimes on SQLite).
    return {room.slug: room for room in Room.objects.raw(sql, slugs)}


def stored_client_ids(
    room_ids: Collection[int], user_ids: Collection[int], client_ids: Collection[str]
) -> list[tuple[int, int, str, int]]:
    """(room id, user id, client_id, seq) of the messages whose three idempotency columns
    are among these values (the index's three columns, so the database seeks it)."""
    m = Message._meta.db_table
    room, user, client = (_column(Message, n) for n in ("room", "user", "client_id"))
    sql = (
        f"SELECT {room}, {user}, {client}, {_column(Message, 'seq')} FROM {_q(m)} "
        f"WHERE {room} IN ({_marks(room_ids)}) AND {user} IN ({_marks(user_ids)}) "
        f"AND {client} IN ({_marks(client_ids)})"
    )
    return _rows(sql, [*room_ids, *user_ids, *client_ids])


def member_pairs(room_ids: Collection[int], user_ids: Collection[int]) -> set[tuple[int, int]]:
    """(room id, user id) of the memberships among these rooms and users."""
    through = Room.members.through
    room, user = (_column(through, n) for n in ("room", "user"))
    sql = (
        f"SELECT {room}, {user} FROM {_q(through._meta.db_table)} "
        f"WHERE {room} IN ({_marks(room_ids)}) AND {user} IN ({_marks(user_ids)})"
    )
    return set(_rows(sql, [*room_ids, *user_ids]))


def member_room_slugs(user_ids: Collection[int]) -> list[tuple[int, str]]:
    """(user id, room slug) of every membership of these users: the inbox check's read of
    whom the connected users are members of (chat/live/inbox_reads.py ``member_slugs``)."""
    through = Room.members.through
    room, user = (_column(through, n) for n in ("room", "user"))
    sql = (
        f"SELECT m.{user}, r.{_column(Room, 'slug')} FROM {_q(through._meta.db_table)} m "
        f"JOIN {_q(Room._meta.db_table)} r ON r.{_column(Room, 'id')} = m.{room} "
        f"WHERE m.{user} IN ({_marks(user_ids)})"
    )
    return _rows(sql, list(user_ids))


def room_row(slug: str) -> tuple[int, str, bool, bool, int] | None:
    """(id, slug, is_public, is_archived, last_seq) of the room ``slug``: what every
    connection being opened reads first (chat/live/store.py ``_room_info``)."""
    columns = ", ".join(_column(Room, n) for n in ("id", "slug", "is_public", "is_archived"))
    rows = _rows(
        f"SELECT {columns}, {_column(Room, 'last_seq')} FROM {_q(Room._meta.db_table)} "
        f"WHERE {_column(Room, 'slug')} = %s",
        [slug],
    )
    if not rows:
        return None
    room_id, found, is_public, is_archived, last_seq = rows[0]
    return room_id, found, bool(is_public), bool(is_archived), last_seq


def session_data(model, key: str, now) -> str | None:
    """The data of session ``key`` in ``model``'s table (Django's session model, or a
    database engine's own) if it has not expired at ``now``: what a connect reads first
    (chat/sessions.py ``quick_user``)."""
    rows = _rows(
        f"SELECT {_column(model, 'session_data')} FROM {_q(model._meta.db_table)} "
        f"WHERE {_column(model, 'session_key')} = %s AND {_column(model, 'expire_date')} > %s",
        [key, connection.ops.adapt_datetimefield_value(now)],
    )
    return rows[0][0] if rows else None


def account(user_model, pk) -> tuple[bool, str, str] | None:
    """(is_active, password, username) of the account ``pk``, read from its table: the
    rest of what a connect's session needs (chat/sessions.py ``quick_user``)."""
    rows = _rows(
        f"SELECT {_column(user_model, 'is_active')}, {_column(user_model, 'password')}, "
        f"{_column(user_model, user_model.USERNAME_FIELD)} "
        f"FROM {_q(user_model._meta.db_table)} WHERE {_q(user_model._meta.pk.column)} = %s",
        [pk],
    )
    if not rows:
        return None
    active, password, username = rows[0]
    return bool(active), password, username


def members_and_bans(
    member_rooms: Collection[int],
    member_users: Collection[int],
    ban_rooms: Collection[int],
    ban_users: Collection[int],
) -> tuple[set[tuple[int, int]], set[tuple[int, int]]]:
    """The memberships among the first rooms and users and the bans among the second, in
    ONE statement (a UNION ALL); no membership is asked when ``member_rooms`` is empty."""
    parts, params = [], []
    if member_rooms:
        through = Room.members.through
        room, user = (_column(through, n) for n in ("room", "user"))
        parts.append(
            f"SELECT {room}, {user}, 0 FROM {_q(through._meta.db_table)} "
            f"WHERE {room} IN ({_marks(member_rooms)}) AND {user} IN ({_marks(member_users)})"
        )
        params += [*member_rooms, *member_users]
    room, user = (_column(Ban, n) for n in ("room", "user"))
    parts.append(
        f"SELECT {room}, {user}, 1 FROM {_q(Ban._meta.db_table)} "
        f"WHERE {room} IN ({_marks(ban_rooms)}) AND {user} IN ({_marks(ban_users)})"
    )
    params += [*ban_rooms, *ban_users]
    members: set[tuple[int, int]] = set()
    bans: set[tuple[int, int]] = set()
    for room_id, user_id, is_ban in _rows(" UNION ALL ".join(parts), params):
        (bans if is_ban else members).add((room_id, user_id))
    return members, bans


def muted_pairs(room_ids: Collection[int], user_ids: Collection[int], now) -> set[tuple[int, int]]:
    """(room id, user id) of the mutes among these rooms and users still running at
    ``now``. The caller reads the few it finds with the ORM (their end, as a datetime)."""
    room, user, until = (_column(Mute, n) for n in ("room", "user", "until"))
    sql = (
        f"SELECT {room}, {user} FROM {_q(Mute._meta.db_table)} "
        f"WHERE {room} IN ({_marks(room_ids)}) AND {user} IN ({_marks(user_ids)}) "
        f"AND {until} > %s"
    )
    stamp = connection.ops.adapt_datetimefield_value(now)
    return set(_rows(sql, [*room_ids, *user_ids, stamp]))
