"""Read positions on the live side (PROTOCOL.md "read", guarantee 8).

A ``read`` frame (WebSocket, long-poll POST) moves the reading user's position in a room.
``ReadTracker.read`` checks it, then writes it with ``chat.positions.mark_read_many`` on
the store's threads, and when the position moved tells the user's own connections:

- a ``{"type": "read", "room", "seq"}`` ephemeral event to their connections of that room
  in this process (``LiveRoom.deliver_to_user``);
- their inbox streams here (chat/live/inbox.py);
- the other processes, over the bus (``ReadNotice``), which do the same two things there.

Why it is shaped this way: a client reports its position as it scrolls, so one user can
send dozens of reads a second, and a room of a thousand readers all read the same new
message within the same second. Each (user, room) has at most one write in flight; reads
that arrive meanwhile only raise the target of the next one, so a flood costs one write
per commit, whatever its rate. The writes of many users go in ONE transaction
(``mark_read_many``), as sends are group-committed. And a read at or below a position
this process already knows is answered at once, with no store call: positions only
move forward (the log clamps and keeps the maximum), so a known one is a lower bound.

Reads from the REST API (a WSGI thread) reach the tracker through
chat/live/publish.py's ``announce_read`` (``heard``), already written; those from
another process through the bus (``read_moved``), never published again.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer

from chat.live.events import OutboundEvent
from chat.live.records import ErrorCode, ReadNotice, RoomInfo, UserInfo
from chat.live.store import StoreUnavailable
from chat.live.wire import MAX_INT

logger = logging.getLogger(__name__)

# Positions written in one transaction. A read is one small UPDATE; five hundred of them
# hold the rows' locks for a few milliseconds, and more wait for the next batch.
MAX_BATCH = 500
# (user, room) positions remembered to answer reads that change nothing without the
# database: a few per connected user; past it the least recently used are forgotten
# (their next read is written, and answered by the log, which ignores a step back).
KNOWN_POSITIONS = 20_000

NOT_A_MEMBER = "Only members of a room have a read position in it."

# chat.positions.mark_read_many's items: (room id, user id, seq).
MarkItem = tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class ReadAnswer:
    """What a read came to: an error, or (``notice``) the move it made, if any."""

    error: ErrorCode | None = None
    detail: str | None = None
    notice: ReadNotice | None = None


def check_read_seq(value: object) -> tuple[ErrorCode, str] | None:
    """None when ``value`` is a read position: a JSON integer from 0 (not a bool, not 1.0,
    not a string of digits: a frame's numbers are numbers)."""
    if type(value) is not int or not 0 <= value <= MAX_INT:
        return ErrorCode.BAD_REQUEST, "seq must be an integer from 0 (the seq read up to)."
    return None


class _Pending:
    """The next write of one (user, room): the highest seq asked, and who waits for it."""

    __slots__ = ("seq", "slug", "user", "waiters")

    def __init__(self, slug: str, user: UserInfo, seq: int) -> None:
        self.slug = slug
        self.user = user
        self.seq = seq
        self.waiters: list[defer.Deferred[ReadAnswer]] = []


class ReadTracker:
    """Read positions: writes (coalesced, group-committed), and news of moves.

    ``mark(items)`` and ``positions(pairs)`` run on a store thread (defaults: the
    database); tests give their own.
    """

    def __init__(
        self,
        reactor,
        store,
        hub,
        bus,
        inbox=None,
        *,
        mark: Callable[[list[tuple[str, int | None, int, int]]], list[Any]] | None = None,
        positions: Callable[[list[tuple[int, int]]], dict[tuple[int, int], int]] | None = None,
    ) -> None:
        self.reactor = reactor
        self.store = store
        self.hub = hub
        self.bus = bus
        self.inbox = inbox
        self._mark = mark or mark_reads
        self._positions = positions or read_positions
        self._pending: dict[tuple[int, str], _Pending] = {}
        self._committing = False
        self._known: OrderedDict[tuple[int, str], int] = OrderedDict()
        # Hello reads of one reactor turn (a reconnect storm) share one query.
        self._asked: dict[tuple[int, int], list[defer.Deferred[int | None]]] = {}
        self._asking = None

    # -- writes --------------------------------------------------------------------

    def read(self, slug: str, user: UserInfo | None, seq: object) -> defer.Deferred[ReadAnswer]:
        """Move ``user``'s position in ``slug`` up to ``seq`` (clamped to the room's last
        seq; a step back changes nothing). Fires once written (or known to change nothing)."""
        if user is None:
            return defer.succeed(ReadAnswer(ErrorCode.FORBIDDEN, "Sign in to keep a position."))
        problem = check_read_seq(seq)
        if problem is not None:
            return defer.succeed(ReadAnswer(*problem))
        key = (user.id, slug)
        known = self._known.get(key)
        if known is not None and seq <= known:
            self._known.move_to_end(key)
            return defer.succeed(ReadAnswer())
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = _Pending(slug, user, seq)
        elif seq > pending.seq:
            pending.seq = seq
        d: defer.Deferred[ReadAnswer] = defer.Deferred()
        pending.waiters.append(d)
        if not self._committing:
            # At the end of the reactor turn: the reads of one burst share one transaction.
            self._committing = True
            self.reactor.callLater(0, self._commit_next)
        return d

    def _commit_next(self) -> None:
        if not self._pending:
            self._committing = False
            return
        keys = list(self._pending)[:MAX_BATCH]
        batch = [self._pending.pop(key) for key in keys]
        items = [(p.slug, self._room_id(p.slug), p.user.id, p.seq) for p in batch]
        d = self.store.run(self._mark, items)
        d.addCallbacks(self._written, self._failed, callbackArgs=(batch,), errbackArgs=(batch,))
        d.addErrback(lambda f: logger.error("read answers failed: %s", f.getTraceback()))
        # One batch at a time: a (user, room) in this batch is not written again until it
        # is answered, and what came meanwhile goes in the next.
        d.addBoth(lambda _: self._commit_next())

    def _room_id(self, slug: str) -> int | None:
        room = self.hub.rooms.get(slug)
        return room.info.id if room is not None and room.info is not None else None

    def _written(self, results: list[Any], batch: list[_Pending]) -> None:
        for pending, result in zip(batch, results, strict=True):
            if result is None:
                answer = ReadAnswer(ErrorCode.FORBIDDEN, NOT_A_MEMBER)
            else:
                self._remember(pending.user.id, pending.slug, result.read_seq)
                notice = None
                if result.moved:
                    notice = ReadNotice(
                        user_id=pending.user.id,
                        room=pending.slug,
                        read_seq=result.read_seq,
                        unread=result.unread,
                        mentions=result.mentions,
                        through=result.through,
                    )
                    self._tell(notice, publish=True)
                answer = ReadAnswer(notice=notice)
            for d in pending.waiters:
                d.callback(answer)

    def _failed(self, failure, batch: list[_Pending]) -> None:
        if failure.check(StoreUnavailable):
            logger.warning("read positions not written: the database is unavailable")
        else:
            logger.error("read positions not written: %s", failure.getTraceback())
        answer = ReadAnswer(ErrorCode.UNAVAILABLE)
        for pending in batch:
            for d in pending.waiters:
                d.callback(answer)

    # -- news of moves -------------------------------------------------------------

    def heard(self, notice: ReadNotice) -> None:
        """A move written by Django code in this process (the REST API): told here, and
        to the other processes."""
        self._remember(notice.user_id, notice.room, notice.read_seq)
        self._tell(notice, publish=True)

    def read_moved(self, notice: ReadNotice) -> None:
        """A move written by another process (the bus's BusListener): told here only."""
        self._remember(notice.user_id, notice.room, notice.read_seq)
        self._tell(notice, publish=False)

    def _tell(self, notice: ReadNotice, publish: bool) -> None:
        room = self.hub.rooms.get(notice.room)
        if room is not None and room.loaded:
            event = {"type": "read", "room": notice.room, "seq": notice.read_seq}
            room.deliver_to_user(notice.user_id, OutboundEvent(event))
        if self.inbox is not None:
            self.inbox.read_moved(notice)
        if publish:
            self.bus.announce_read(notice)

    def _remember(self, user_id: int, slug: str, read_seq: int) -> None:
        key = (user_id, slug)
        if self._known.get(key, -1) < read_seq:
            self._known[key] = read_seq
        self._known.move_to_end(key)
        while len(self._known) > KNOWN_POSITIONS:
            self._known.popitem(last=False)

    def forget(self, user_id: int, slug: str) -> None:
        """The user left the room (or may have): a position known before says nothing."""
        self._known.pop((user_id, slug), None)

    def bus_reconnected(self) -> None:
        """The bus was away: memberships may have ended with no notice heard here, and a
        position known for one would answer a read as done instead of `forbidden`."""
        self._known.clear()

    # -- the hello's read_seq ------------------------------------------------------

    def position(self, room: RoomInfo, user: UserInfo | None) -> defer.Deferred[int | None]:
        """``user``'s read position in ``room`` (None: anonymous, or not a member)."""
        if user is None:
            return defer.succeed(None)
        if self.inbox is not None:
            held = self.inbox.position(user.id, room.slug)
            if held is not None:
                return defer.succeed(held)
        d: defer.Deferred[int | None] = defer.Deferred()
        self._asked.setdefault((room.id, user.id), []).append(d)
        if self._asking is None:
            self._asking = self.reactor.callLater(0, self._ask_positions)
        return d

    def _ask_positions(self) -> None:
        self._asking = None
        asked, self._asked = self._asked, {}

        def answered(found: dict[tuple[int, int], int]) -> None:
            for pair, waiters in asked.items():
                for d in waiters:
                    d.callback(found.get(pair))

        def failed(failure) -> None:
            for waiters in asked.values():
                for d in waiters:
                    d.errback(failure)

        self.store.run(self._positions, list(asked)).addCallbacks(answered, failed)


# -- on a store thread ----------------------------------------------------------------


def mark_reads(items: list[tuple[str, int | None, int, int]]) -> list[Any]:
    """``(slug, room id or None, user id, seq)`` -> chat.positions.mark_read_many's results,
    in order (None: not a member, or no such room). Rooms the reactor did not know the id
    of (not live here) are looked up in one query."""
    from chat.models import Room
    from chat.positions import mark_read_many

    missing = {slug for slug, room_id, _user, _seq in items if room_id is None}
    ids = dict(Room.objects.filter(slug__in=missing).values_list("slug", "id")) if missing else {}
    marked: list[MarkItem] = []
    where: list[int | None] = []
    for slug, room_id, user_id, seq in items:
        room_id = room_id if room_id is not None else ids.get(slug)
        if room_id is None:
            where.append(None)
        else:
            where.append(len(marked))
            marked.append((room_id, user_id, seq))
    results = mark_read_many(marked) if marked else []
    return [None if index is None else results[index] for index in where]


def read_positions(pairs: list[tuple[int, int]]) -> dict[tuple[int, int], int]:
    """``{(room id, user id): read_seq}`` for the pairs that are memberships, in one
    statement per 5,000 (a member without a position row has read through last_seq, as
    chat.positions.position reads it)."""
    from django.db import connection

    from chat.counts import MEMBERS, POSITIONS, ROOMS, values_rows

    found: dict[tuple[int, int], int] = {}
    for start in range(0, len(pairs), 5000):
        chunk = pairs[start : start + 5000]
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT mb.room_id, mb.user_id, COALESCE(p.read_seq, r.last_seq)"
                f" FROM ({values_rows(len(chunk), 2)}) AS v"
                f" JOIN {MEMBERS} mb ON mb.room_id = v.column1 AND mb.user_id = v.column2"
                f" JOIN {ROOMS} r ON r.id = mb.room_id"
                f" LEFT JOIN {POSITIONS} p ON p.room_id = mb.room_id AND p.user_id = mb.user_id",
                [value for pair in chunk for value in pair],
            )
            found.update({(room, user): seq for room, user, seq in cursor.fetchall()})
    return found
