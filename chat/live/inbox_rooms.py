"""The inbox's counts of one room: the positions of its members that have an inbox stream
in this process, kept current from the room's durable events (PROTOCOL.md "The inbox
stream").

What it costs is the point (issue 10: "it must cost little when a room of 1000 members
gets a message"). A process follows a room only while one of the room's members has an
inbox stream here, through ONE watcher of the live room (``RoomHub.watch``), however many
such members there are; each member's counts are kept in memory and moved by each event
with no database query. A message is one pass over the members here, and each member's
``activity`` frame is a shared prefix built once per event plus the two numbers.

The rule that keeps counts exact: a position's ``through`` is the seq up to which its
counts are exact. An event with a seq at or below it is already counted and skipped.
What memory cannot decide (a deletion or edit of a message older than what this process
has seen, a count past the exact range, a position read before this process followed
the room) is a recount: one statement for every affected member of the room at once.
While it runs the room's events are kept, and replayed onto each recounted position
above the recount's own ``through``, so nothing falls between the read and its answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from twisted.internet import defer

from chat.live.events import OutboundEvent
from chat.live.inbox_state import Position, activity, activity_prefixes, owed_activity

logger = logging.getLogger(__name__)

# Messages of the room remembered (author and mentions), to apply a deletion or an edit
# without the database: a client reads what is recent, and the ring of a live room
# (LiveLimits.ring_size) is as long.
RECENT_MESSAGES = 1024
# Events kept for the positions being recounted. A recount is one query; this is many
# seconds of a busy room. Past it the recounts are asked again, from then on.
MAX_KEPT = 10_000
# Recounts of one position overtaken by its own read moving meanwhile, asked again
# before the answer is taken as it is.
MAX_RECOUNTS = 3


class FollowedRoom:
    """A live room this process's inbox follows, and its members' positions here.

    ``recount(info, user_ids)`` reads counts on the store's threads: a Deferred of
    ``(last_seq, {user_id: (read_seq, unread, mentions)})`` (a member missing from it is
    no longer one); ``lost(inbox)`` is told of a member that is not one any more.
    """

    def __init__(self, slug: str, live, clock, recount, lost) -> None:
        self.slug = slug
        self.live = live  # the LiveRoom
        self.clock = clock
        self._recount = recount
        self._lost = lost
        self.positions: dict[int, Position] = {}  # user id -> position
        # seq -> (author, mentioned usernames) of the room's recent messages, oldest first.
        self.recent: dict[int, tuple[object, frozenset]] = {}
        # Every event from this seq on has been seen here (recent is complete from it).
        self.known_from = live.last_seq + 1
        self.kept: list[tuple[OutboundEvent, Any]] | None = None  # while recounting
        self._wanted: dict[int, Position] = {}
        self._counting: dict[int, Position] | None = None
        self._timer = None

    # -- members ---------------------------------------------------------------------

    def add(self, user_id: int, position: Position) -> None:
        self.positions[user_id] = position
        if self.live.last_seq > position.through:
            # Events after the position's read were delivered before this process
            # followed the room (or while it loaded): counted by a recount.
            self.recount(position)

    def remove(self, user_id: int) -> None:
        position = self.positions.pop(user_id, None)
        self._wanted.pop(user_id, None)
        if position is not None:
            self._release(position)

    # -- events (the room's watcher) -------------------------------------------------

    def __call__(self, event: OutboundEvent) -> None:
        kind = event.type
        if kind == "message":
            body = event.event
            self._remember(event.seq, body.get("user"), body.get("mentions"))
            entry = None
        elif kind in ("deleted", "edited"):
            target = event.event.get("target")
            entry = self.recent.get(target) if isinstance(target, int) else None
            if kind == "deleted":
                self.recent.pop(target, None)
            elif entry is not None:
                self.recent[target] = (entry[0], _names(event.event.get("mentions")))
        else:
            return  # reactions change no count
        if self.kept is not None:
            self.kept.append((event, entry))
            if len(self.kept) > MAX_KEPT:
                self._overflow()
        self.apply(event, entry, tuple(self.positions.values()))

    def _remember(self, seq: int, author: object, mentions: object) -> None:
        recent = self.recent
        recent[seq] = (author, _names(mentions))
        if len(recent) > RECENT_MESSAGES:
            oldest = next(iter(recent))
            del recent[oldest]
            self.known_from = oldest + 1

    def apply(self, event: OutboundEvent, entry, positions) -> None:
        """Move ``positions`` by one durable event (messages, deletions and edits count)."""
        seq = event.seq
        body = event.event
        kind = event.type
        prefixes = None
        if kind == "message":
            author = body.get("user")
            mentioned = body.get("mentions") or ()
            for p in positions:
                if p.recounting or seq <= p.through:
                    continue
                p.through = seq
                if p.username == author:
                    continue
                p.unread += 1
                m = p.username in mentioned
                if m:
                    p.mentions += 1
                if prefixes is None:
                    prefixes = activity_prefixes(self.slug, seq, author, kind)
                activity(p, prefixes, m)
            return
        target = body.get("target")
        if not isinstance(target, int):
            return
        for p in positions:
            if p.recounting or seq <= p.through:
                continue
            p.through = seq
            if target <= p.read_seq:
                continue  # read already: counted nowhere
            if entry is None:
                if target >= self.known_from:
                    continue  # not a message this process saw (a deleted one, a reaction)
                if kind == "deleted" or body.get("user") != p.username:
                    self.recount(p, owed_activity(self.slug, event))
                continue
            author, was = entry
            if author == p.username:
                continue
            before = p.username in was
            if kind == "deleted":
                if not p.exact:
                    self.recount(p, owed_activity(self.slug, event))
                    continue
                p.unread -= 1
                if before:
                    p.mentions -= 1
                mentioned = before
            else:
                mentioned = p.username in (body.get("mentions") or ())
                if mentioned == before:
                    continue
                if before and not p.exact:
                    self.recount(p, owed_activity(self.slug, event))
                    continue
                p.mentions += 1 if mentioned else -1
            if prefixes is None:
                prefixes = activity_prefixes(self.slug, seq, body.get("user"), kind)
            activity(p, prefixes, mentioned)

    # -- reads -----------------------------------------------------------------------

    def read_moved(self, position: Position, notice) -> None:
        """The member's read position moved (here, in another process, or the API)."""
        if notice.read_seq <= position.read_seq:
            return  # older news than what the position has
        if position.recounting:
            # The recount in flight may have read the old position: it is asked again
            # when its answer is older than this (see _recounted).
            position.read_seq = notice.read_seq
            position.after = Position.read_frame
            return
        if notice.through >= position.through:
            position.set_counts(notice.read_seq, notice.unread, notice.mentions, notice.through)
        elif notice.through + 1 >= self.known_from:
            # This process has counted past the notice: add what came after it.
            unread, mentions = notice.unread, notice.mentions
            for seq in reversed(self.recent):
                if seq <= notice.through:
                    break
                if seq > position.through:
                    continue
                author, names = self.recent[seq]
                if author != position.username:
                    unread += 1
                    mentions += position.username in names
            position.set_counts(notice.read_seq, unread, mentions, position.through)
        else:
            position.read_seq = notice.read_seq
            self.recount(position, Position.read_frame)
            return
        position.read_frame()

    # -- recounts --------------------------------------------------------------------

    def recount(
        self, position: Position, after: Callable[[Position], None] | None = None
    ) -> defer.Deferred:
        """Count ``position`` again from the database (with every other position of the
        room that needs it in this reactor turn); fires once its counts are exact."""
        position.recounting = True
        if after is not None:
            position.after = after
        d: defer.Deferred = defer.Deferred()
        position.waiters.append(d)
        user_id = position.inbox.user.id
        if self._counting is None or user_id not in self._counting:
            self._wanted[user_id] = position
        if self.kept is None:
            self.kept = []
        if self._counting is None and self._timer is None:
            self._timer = self.clock.callLater(0, self._start_recount)
        return d

    def _start_recount(self) -> None:
        self._timer = None
        if not self._wanted or self.live.info is None:
            self._settle()
            return
        counting = self._counting = self._wanted
        self._wanted = {}
        d = self._recount(self.live.info, list(counting))
        d.addCallbacks(
            self._recounted,
            self._recount_failed,
            callbackArgs=(counting,),
            errbackArgs=(counting,),
        )
        d.addErrback(
            lambda f: logger.error("inbox recount of %s: %s", self.slug, f.getTraceback())
        )

    def _recounted(self, answer, counting: dict[int, Position]) -> None:
        if counting is not self._counting:
            return  # superseded (the kept events overflowed): asked again meanwhile
        self._counting = None
        last_seq, rows = answer
        for user_id, position in counting.items():
            if self.positions.get(user_id) is not position:
                self._release(position)
                continue
            row = rows.get(user_id)
            if row is None:  # no longer a member: the user's rooms are read again
                self._release(position)
                self._lost(position.inbox)
                continue
            read_seq, unread, mentions = row
            stale = last_seq < position.through or read_seq < position.read_seq
            if stale and position.attempts < MAX_RECOUNTS:
                position.attempts += 1
                self._wanted[user_id] = position
                continue
            position.set_counts(max(read_seq, position.read_seq), unread, mentions, last_seq)
            position.recounting = False
            # The frame owed (as of the recount's last seq), then what came after it.
            after, position.after = position.after, None
            if after is not None:
                after(position)
            for event, entry in self.kept or ():
                if event.seq > position.through:
                    self.apply(event, entry, (position,))
            self._release(position)
        self._settle()

    def _recount_failed(self, failure, counting: dict[int, Position]) -> None:
        if counting is not self._counting:
            return
        self._counting = None
        logger.warning("inbox recount of %s failed, retrying: %s", self.slug, failure.value)
        for user_id, position in counting.items():
            if self.positions.get(user_id) is position:
                self._wanted.setdefault(user_id, position)
        if self._wanted and self._timer is None:
            self._timer = self.clock.callLater(1.0, self._start_recount)

    def _settle(self) -> None:
        if self._wanted:
            if self._timer is None:
                self._timer = self.clock.callLater(0, self._start_recount)
        elif self._counting is None:
            self.kept = None  # nobody is being recounted: stop keeping events

    def _overflow(self) -> None:
        # The kept events no longer reach back to the recounts in flight: their answers
        # are asked again, and events are kept from now on for the new ones.
        self.kept = []
        for user_id, position in (self._counting or {}).items():
            self._wanted[user_id] = position
        self._counting = None
        if self._timer is None:
            self._timer = self.clock.callLater(0, self._start_recount)

    def _release(self, position: Position) -> None:
        position.recounting = False
        position.attempts = 0
        waiters, position.waiters = position.waiters, []
        for d in waiters:
            d.callback(None)

    def close(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        for position in list(self.positions.values()):
            self._release(position)
        self.positions.clear()


def _names(mentions: object) -> frozenset:
    if isinstance(mentions, list):
        return frozenset(name for name in mentions if isinstance(name, str))
    return frozenset()
