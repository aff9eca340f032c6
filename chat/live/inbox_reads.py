"""What the inbox (chat/live/inbox.py, inbox_checks.py) reads from the database. Every
function here runs on a store thread (``Store.run``), never on the reactor, and imports
Django where it runs.

- ``member_rooms_of``: a user's rooms with their counts (the hello, a ``rooms`` frame).
- ``recount_rooms``: the counts of some members of some rooms, ONE statement for all of
  them (``chat.counts.counts_of_pairs``), so that each room's last_seq and counts are
  one snapshot.
- ``check_streams``: the room check's read for the inbox streams: whom their sessions
  sign in now (``signed_in``), and which rooms their users are members of now.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chat.live.records import RoomInfo
from chat.sessions import signed_in

# Pairs in one counts statement: chat/counts.py's own chunk. A room's pairs are never
# split between two statements, so that its answer is one snapshot.
PAIRS_PER_STATEMENT = 10_000
# Ids or keys in one IN (...): far below SQLite's 32,766 parameters.
KEYS_PER_QUERY = 5_000

RoomCounts = tuple[int, dict[int, tuple[Any, ...]]]


@dataclass(frozen=True, slots=True)
class StreamCheck:
    sessions: dict[str, int | None]  # session key -> the user id it signs in now (or None)
    rooms: dict[int, frozenset[str]]  # user id -> the slugs of their rooms (none: missing)


def member_rooms_of(user_id: int) -> list[dict]:
    from chat.room_objects import member_rooms

    return member_rooms(user_id)


def recount_rooms(asked: list[tuple[RoomInfo, list[int]]]) -> list[RoomCounts]:
    """For each ``(room, user ids)`` asked, ``(last_seq, {user_id: (read_seq, unread,
    mentions)})``; a user who is not a member is missing from it."""
    from chat.counts import counts_of_pairs

    found: dict = {}
    pairs: list[tuple[int, int]] = []
    for info, user_ids in asked:
        if pairs and len(pairs) + len(user_ids) > PAIRS_PER_STATEMENT:
            found.update(counts_of_pairs(pairs))
            pairs = []
        pairs.extend((info.id, user_id) for user_id in user_ids)
    if pairs:
        found.update(counts_of_pairs(pairs))
    answers: list[RoomCounts] = []
    for info, user_ids in asked:
        last_seq, rows = 0, {}
        for user_id in user_ids:
            counted = found.get((info.id, user_id))
            if counted is not None:
                last_seq = max(last_seq, counted.last_seq)
                rows[user_id] = (counted.read_seq, counted.unread, counted.mentions)
        answers.append((last_seq, rows))
    return answers


def check_streams(
    sessions: list[str], user_ids: list[int], keep: list[str] | None = None
) -> StreamCheck:
    """``keep``: every live stream's key, once a round (the sessions memo keeps those)."""
    found = signed_in(sessions, keep=keep)
    return StreamCheck(found, member_slugs(user_ids) if user_ids else {})


def member_slugs(user_ids: list[int]) -> dict[int, frozenset[str]]:
    """user id -> the slugs of the rooms they are a member of: one query per 5,000 users,
    in chat/fast_queries.py with the other reads of the live side's checks, so that no
    ORM query is built under chat/live/ but in store.py and auth.py (as fast as the ORM's
    was: 49-98 ms against 68-112 ms for 8,000 users on SQLite, three runs each)."""
    from chat.fast_queries import member_room_slugs

    found: dict[int, set[str]] = {}
    for start in range(0, len(user_ids), KEYS_PER_QUERY):
        for user_id, slug in member_room_slugs(user_ids[start : start + KEYS_PER_QUERY]):
            found.setdefault(user_id, set()).add(slug)
    return {user_id: frozenset(slugs) for user_id, slugs in found.items()}
