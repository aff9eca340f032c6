"""The held long-polls of one live room.

A long-poll ``GET`` that finds nothing newer than its ``since`` waits here until the room
has an event for it or its timeout passes; the room answers its waiters from its fan-out
and broadcasts, and ends a waiter whose user lost access. Each waiter's Deferred fires
exactly once: an answer, a timeout (an empty answer), a cancel (the client left) or
``AccessRevoked``. The set is bounded by the live connections a process admits (the
transport's per-user cap), not here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from twisted.internet import defer

from chat.live.events import OutboundEvent
from chat.live.records import UserInfo


class AccessRevoked(Exception):
    """The long-poll's user lost access to the room while it waited."""


@dataclass(frozen=True)
class PollAnswer:
    events: list[OutboundEvent]
    last_seq: int


class PollWaiter:
    __slots__ = ("deferred", "session_key", "since", "timer", "user")

    def __init__(self, since: int | None, user: UserInfo | None, session_key: str | None) -> None:
        self.since = since
        self.user = user
        self.session_key = session_key
        self.deferred: defer.Deferred = defer.Deferred()
        self.timer = None


class PollWaiters:
    """The waiters of one room; ``cursor(since)`` is the room's answer to an empty poll."""

    def __init__(self, clock, cursor: Callable[[int | None], int], done: Callable[[], None]):
        self.clock = clock
        self.cursor = cursor
        self.done = done  # a waiter left: the room may have become empty
        self._waiters: set[PollWaiter] = set()

    def __len__(self) -> int:
        return len(self._waiters)

    def __iter__(self) -> Iterator[PollWaiter]:
        return iter(tuple(self._waiters))

    def __eq__(self, other: object) -> bool:
        return self._waiters == other if isinstance(other, set) else NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def wait(
        self, since: int | None, timeout: float, user: UserInfo | None, session_key: str | None
    ) -> defer.Deferred[PollAnswer]:
        waiter = PollWaiter(since, user, session_key)
        self._waiters.add(waiter)

        def timed_out() -> None:
            waiter.timer = None
            if waiter in self._waiters:
                self._waiters.discard(waiter)
                waiter.deferred.callback(PollAnswer([], self.cursor(since)))
                self.done()

        def cancelled(failure):
            self._waiters.discard(waiter)
            if waiter.timer is not None and waiter.timer.active():
                waiter.timer.cancel()
            self.done()
            return failure

        waiter.timer = self.clock.callLater(timeout, timed_out)
        waiter.deferred.addErrback(cancelled)
        return waiter.deferred

    def answer(self, events: list[OutboundEvent], seq: int | None) -> None:
        """Answer the waiters with ``events`` (durable when ``seq`` is given)."""
        if not self._waiters:
            return
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            if seq is not None and waiter.since is not None and seq <= waiter.since:
                self._waiters.add(waiter)  # the client has this one already
                continue
            if waiter.timer is not None and waiter.timer.active():
                waiter.timer.cancel()
            waiter.timer = None
            waiter.deferred.callback(PollAnswer(events, seq or self.cursor(waiter.since)))

    def answer_user(self, user_id: int, events: list[OutboundEvent]) -> None:
        """Answer the waiters of one user with ephemeral ``events`` (their ``read``)."""
        mine = [w for w in self._waiters if w.user is not None and w.user.id == user_id]
        for waiter in mine:
            self._waiters.discard(waiter)
            if waiter.timer is not None and waiter.timer.active():
                waiter.timer.cancel()
            waiter.timer = None
            waiter.deferred.callback(PollAnswer(events, self.cursor(waiter.since)))

    def revoke(self, lost: Callable[[UserInfo | None, str | None], bool], slug: str) -> int:
        """End the waits of those for whom ``lost(user, session_key)``; how many ended."""
        ended = [w for w in self._waiters if lost(w.user, w.session_key)]
        for waiter in ended:
            # Its errback (in ``wait``) forgets it and cancels its timer.
            waiter.deferred.errback(AccessRevoked(slug))
        return len(ended)
