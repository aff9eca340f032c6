"""Read positions: how far each member has read each of their rooms.

PROTOCOL.md guarantee 8: a read position only moves forward; a ``read`` at or below it
changes nothing, and a seq above the room's ``last_seq`` is clamped to it. Only members
have a position (a ReadPosition row per membership, chat/membership.py); a non-member's
read is ``forbidden``, which is ``None`` here.

``mark_read_many`` is the group commit of reads: the live side's store thread hands it
every read that arrived during one turn, and it answers them all in ONE short
transaction of two statements, whatever their number:

1. an upsert that moves every position that moves (``ON CONFLICT ... DO UPDATE ... WHERE
   read_seq < excluded.read_seq``), joined to the memberships (a non-member's read
   writes nothing) and the rooms (the clamp to ``last_seq``), ``RETURNING`` the rows it
   moved. The forward-only rule is the WHERE of the update itself, evaluated on the row
   as locked, so two concurrent batches (two processes) can never move a position back;
   rows are taken in (room, user) order so that two batches cannot deadlock on PostgreSQL.
2. the counts after it (chat/counts.py), in the same transaction, so each answer's
   ``unread``/``mentions`` are exact through its ``through`` seq.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.db import DEFAULT_DB_ALIAS, connections, transaction

from chat.counts import MEMBERS, POSITIONS, ROOMS, counts_of_pairs, values_rows

# Reads in one statement: a batch larger than this is several statements, one transaction.
_READS_PER_STATEMENT = 5000
_MAX_SEQ = 2**63 - 1  # a seq is a 64-bit integer in the database


@dataclass(frozen=True, slots=True)
class ReadResult:
    read_seq: int  # the position after the read
    unread: int
    mentions: int
    through: int  # the room's last_seq the counts are exact through
    moved: bool  # whether this read moved the position (announce it only then)


_ADVANCE = f"""
INSERT INTO {POSITIONS} (user_id, room_id, read_seq)
SELECT mb.user_id, mb.room_id,
  CASE
    WHEN p.id IS NULL THEN r.last_seq
    WHEN v.column3 < r.last_seq THEN v.column3
    ELSE r.last_seq
  END
FROM ({{values}}) AS v
JOIN {MEMBERS} mb ON mb.room_id = v.column1 AND mb.user_id = v.column2
JOIN {ROOMS} r ON r.id = mb.room_id
LEFT JOIN {POSITIONS} p ON p.room_id = mb.room_id AND p.user_id = mb.user_id
WHERE true
ORDER BY mb.room_id, mb.user_id
ON CONFLICT (user_id, room_id) DO UPDATE SET read_seq = excluded.read_seq
WHERE {POSITIONS}.read_seq < excluded.read_seq
RETURNING room_id, user_id
"""
# A member without a row (a membership no signal saw) has read everything (chat/counts.py):
# the upsert materializes that position, at last_seq, rather than move it back.


def mark_read_many(
    items: Sequence[tuple[int, int, int]], using: str = DEFAULT_DB_ALIAS
) -> list[ReadResult | None]:
    """Apply the reads ``(room_id, user_id, seq)``; one answer per item, in order.

    None answers a non-member (or an unknown room). Several reads of one (room, user) in
    a batch act as their highest seq, and only the first item with that seq reports
    ``moved`` (so the move is announced once); the others answer the same position.
    """
    if not items:
        return []
    highest: dict[tuple[int, int], tuple[int, int]] = {}  # pair -> (seq, index of the item)
    for index, (room_id, user_id, seq) in enumerate(items):
        pair = (room_id, user_id)
        if pair not in highest or seq > highest[pair][0]:
            highest[pair] = (seq, index)
    pairs = sorted(highest)
    with transaction.atomic(using=using):
        moved: set[tuple[int, int]] = set()
        with connections[using].cursor() as cursor:
            for start in range(0, len(pairs), _READS_PER_STATEMENT):
                chunk = pairs[start : start + _READS_PER_STATEMENT]
                params = [v for pair in chunk for v in (*pair, _bounded(highest[pair][0]))]
                cursor.execute(_ADVANCE.format(values=values_rows(len(chunk), 3)), params)
                moved.update((room_id, user_id) for room_id, user_id in cursor.fetchall())
        after = counts_of_pairs(pairs, using=using)
    results: list[ReadResult | None] = []
    for index, (room_id, user_id, _) in enumerate(items):
        pair = (room_id, user_id)
        counted = after.get(pair)
        if counted is None:
            results.append(None)
            continue
        results.append(
            ReadResult(
                read_seq=counted.read_seq,
                unread=counted.unread,
                mentions=counted.mentions,
                through=counted.last_seq,
                moved=pair in moved and highest[pair][1] == index,
            )
        )
    return results


def _bounded(seq: int) -> int:
    # Above any last_seq or below every position: clamped, so the database never sees
    # an integer out of its range (the transports refuse those first).
    return min(max(seq, 0), _MAX_SEQ)


def mark_read(
    room_id: int, user_id: int, seq: int, using: str = DEFAULT_DB_ALIAS
) -> ReadResult | None:
    """One read (``mark_read_many`` of one item); None for a non-member."""
    return mark_read_many([(room_id, user_id, seq)], using=using)[0]


def position(room_id: int, user_id: int, using: str = DEFAULT_DB_ALIAS) -> int | None:
    """The user's read position in the room; None when they are not a member."""
    with connections[using].cursor() as cursor:
        cursor.execute(
            f"SELECT COALESCE(p.read_seq, r.last_seq) FROM {MEMBERS} mb"
            f" JOIN {ROOMS} r ON r.id = mb.room_id"
            f" LEFT JOIN {POSITIONS} p ON p.room_id = mb.room_id AND p.user_id = mb.user_id"
            " WHERE mb.room_id = %s AND mb.user_id = %s",
            [room_id, user_id],
        )
        row = cursor.fetchone()
    return None if row is None else row[0]
