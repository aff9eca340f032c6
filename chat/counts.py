"""Unread and mention counts of a user's member rooms (PROTOCOL.md "Room object").

``unread`` is the number of ``message`` events after the user's read position that are
not the user's own and not deleted; ``mentions`` is how many Mention rows of the user lie
after it. Both are exact up to 99 and capped at ``CAP`` (100): PROTOCOL.md lets the
server report any value of at least 99 above that, and the cap is what keeps a count from
walking a room's whole log. A room with 100k unread messages costs the same 100 index
entries as one with 100.

Everything is ONE statement, whatever the number of rooms, so a room's ``last_seq`` and
its counts are one snapshot of the database: the inbox uses ``last_seq`` as "the counts
are exact through this seq" and applies only later events to them. Each count is a
correlated subquery over a ``LIMIT``-ed inner select: ``count(*)`` of at most 100 rows
found by walking an index from the read position:

- unread walks ``chat_message_live`` (room, seq) WHERE kind = 'message' AND deleted_at IS
  NULL. The predicate is written with literals, exactly as the index's, because SQLite
  uses a partial index only when the query's WHERE visibly implies its WHERE (a bound
  parameter does not). The author test needs the row itself, so a user's own messages
  after their position are walked past, not counted: the walk is bounded by 100 plus
  the user's own unread-position messages, which stay few while clients mark read what
  their user sends.
- mentions walks the unique (user, room, seq) index of ``chat_mention`` alone, which
  holds only what a count needs: the log keeps no Mention row of a deleted message, nor
  of its author's own ``@me`` (never unread). Checking the author here instead cost a
  probe of the log per mention row, half again the time of the whole statement.

A member without a ReadPosition row (a membership made by raw SQL, which no signal
saw) reads as having read everything: ``read_seq`` = the room's ``last_seq``, the
position a new member gets anyway.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.db import DEFAULT_DB_ALIAS, connections

from chat.models import Mention, Message, ReadPosition, Room

CAP = 100  # counts are exact up to CAP - 1; CAP means "CAP or more"
# Room ids or (room, user) pairs in one statement: far below SQLite's 32,766 parameters.
_MAX_PARAMS_ROWS = 10_000

MEMBERS = Room.members.through._meta.db_table
ROOMS = Room._meta.db_table
POSITIONS = ReadPosition._meta.db_table
MESSAGES = Message._meta.db_table
MENTIONS = Mention._meta.db_table


@dataclass(frozen=True, slots=True)
class Counts:
    room_id: int
    read_seq: int
    unread: int
    mentions: int
    last_seq: int  # the room's last seq in the same snapshot: the counts are exact through it


# The counts of every membership row ``mb`` that FROM ... WHERE (the caller's) selects.
# ``{source}`` is a FROM clause yielding ``mb`` (chat_room_members), ``{where}`` its filter.
_SELECT = f"""
SELECT mb.room_id, mb.user_id, r.last_seq, COALESCE(p.read_seq, r.last_seq),
  (SELECT count(*) FROM (
     SELECT 1 FROM {MESSAGES} m
     WHERE m.room_id = mb.room_id AND m.kind = 'message' AND m.deleted_at IS NULL
       AND m.seq > COALESCE(p.read_seq, r.last_seq)
       AND (m.user_id IS NULL OR m.user_id <> mb.user_id)
     ORDER BY m.seq LIMIT {CAP}) AS unread_rows),
  (SELECT count(*) FROM (
     SELECT 1 FROM {MENTIONS} x
     WHERE x.user_id = mb.user_id AND x.room_id = mb.room_id
       AND x.seq > COALESCE(p.read_seq, r.last_seq)
     ORDER BY x.seq LIMIT {CAP}) AS mention_rows)
FROM {{source}}
JOIN {ROOMS} r ON r.id = mb.room_id
LEFT JOIN {POSITIONS} p ON p.room_id = mb.room_id AND p.user_id = mb.user_id
{{where}}
"""


def counts(
    user_id: int, room_ids: Iterable[int] | None = None, using: str = DEFAULT_DB_ALIAS
) -> dict[int, Counts]:
    """room id -> Counts for the member rooms of ``user_id`` (among ``room_ids`` if given).

    Rooms the user is not a member of are absent: membership is what has counts.
    """
    if room_ids is None:
        sql = _SELECT.format(source=f"{MEMBERS} mb", where="WHERE mb.user_id = %s")
        return {row.room_id: row for _, row in _run(using, sql, [user_id])}
    wanted = sorted(set(room_ids))
    found: dict[int, Counts] = {}
    # Chunks only for a caller asking about thousands of rooms at once; each chunk is
    # still one snapshot of its rooms.
    for start in range(0, len(wanted), _MAX_PARAMS_ROWS):
        chunk = wanted[start : start + _MAX_PARAMS_ROWS]
        marks = ", ".join(["%s"] * len(chunk))
        sql = _SELECT.format(
            source=f"{MEMBERS} mb", where=f"WHERE mb.user_id = %s AND mb.room_id IN ({marks})"
        )
        found.update((row.room_id, row) for _, row in _run(using, sql, [user_id, *chunk]))
    return found


def counts_of_pairs(
    pairs: Sequence[tuple[int, int]], using: str = DEFAULT_DB_ALIAS
) -> dict[tuple[int, int], Counts]:
    """(room id, user id) -> Counts for the pairs that are memberships, in one statement
    per 10,000 pairs (chat/positions.py: the counts after a batch of reads)."""
    found: dict[tuple[int, int], Counts] = {}
    unique = sorted(set(pairs))
    for start in range(0, len(unique), _MAX_PARAMS_ROWS):
        chunk = unique[start : start + _MAX_PARAMS_ROWS]
        sql = _SELECT.format(
            source=f"({values_rows(len(chunk), 2)}) AS v JOIN {MEMBERS} mb"
            " ON mb.room_id = v.column1 AND mb.user_id = v.column2",
            where="",
        )
        params = [value for pair in chunk for value in pair]
        found.update(_run(using, sql, params))
    return found


def values_rows(rows: int, columns: int) -> str:
    """``VALUES (...), (...)`` of integer parameters; its columns are ``column1``, ...
    on SQLite and PostgreSQL alike. The casts tell PostgreSQL the type of each column
    (its parameters are untyped text otherwise, and a VALUES list is typed by its rows)."""
    row = "(" + ", ".join(["CAST(%s AS BIGINT)"] * columns) + ")"
    return "VALUES " + ", ".join([row] * rows)


def _run(using: str, sql: str, params: list[int]) -> list[tuple[tuple[int, int], Counts]]:
    with connections[using].cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return [
        ((room_id, user_id), Counts(room_id, read_seq, unread, mentions, last_seq))
        for room_id, user_id, last_seq, read_seq, unread, mentions in rows
    ]
