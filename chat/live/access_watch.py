"""Ending access that was lost (PROTOCOL.md "Losing access", guarantee 9).

Django code announces every change that access depends on after its commit
(chat/signals.py, through chat/live/publish.py); the hub's ``announce`` applies it here
and hands it to the bus for the other processes, whose hubs hear it in
``access_changed``. A change makes the Authorizer's answers it concerns stale, then the
connections it concerns (subscribers live, joining or replaying, held long-polls,
long-poll leases) are re-authorized with one store read (chat/access.py's rule, on a
store thread) and exactly those who may no longer read are dropped (``"revoked"``). A
logout needs no read: the connections opened with that session end at once. Changes
heard within one reactor turn share one read. A change about a room this process does
not hold costs nothing but the Authorizer's bookkeeping. What no notice reports (a
change made by a process without a reactor, or one missed while the bus was away) is
found by ``check_all``, every room check.

A kick or a ban (``kick``, from chat/moderation.py) needs no read either: the users it
names lose their connections to the room at once, even in a public room whose rule would
let them read on (a kicked user may reconnect there; a banned one is refused by the rule).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from chat.live.parts import in_part
from chat.live.publish import ACCOUNTS, KICK, ROOM, SESSION, AccessChange
from chat.live.records import UserInfo
from chat.live.room import LiveRoom
from chat.live.store import Recheck, Store
from chat.tokens import is_credential

logger = logging.getLogger(__name__)

# A re-authorization the database could not answer is asked again after this long: the
# connections it concerns stay open meanwhile (as connections do while the database is
# down), and one read a second per process is nothing to a database that is back.
RECHECK_RETRY = 1.0


class _Wanted:
    """What to re-check in one room: these users (None: everyone); ``sessions``: also
    whether the sessions their connections were opened with still sign them in."""

    __slots__ = ("sessions", "users")

    def __init__(self) -> None:
        self.users: set[int | None] | None = set()
        self.sessions = False

    def add(self, users: set[int | None] | None, sessions: bool) -> None:
        if users is None or self.users is None:
            self.users = None
        else:
            self.users |= users
        self.sessions = self.sessions or sessions

    def concerns(self, user: UserInfo | None) -> bool:
        return self.users is None or (user.id if user else None) in self.users


class AccessWatch:
    """Re-authorizes the live connections of the hub's rooms when access changes.

    ``rooms`` is the hub's registry (read, never changed here); ``forget`` is the hub's
    way to drop a room that no longer exists.
    """

    def __init__(
        self,
        reactor,
        store: Store,
        rooms: dict[str, LiveRoom],
        authorizer,
        forget: Callable[[LiveRoom], None],
    ) -> None:
        self.reactor = reactor
        self.store = store
        self.rooms = rooms
        self.authorizer = authorizer
        self._forget = forget
        # Re-checks to make at the end of this reactor turn, or once the room is loaded;
        # at most one entry per live room.
        self._rechecks: dict[str, _Wanted] = {}
        self._recheck_timer = None

    def room_loaded(self, slug: str) -> None:
        if slug in self._rechecks:
            # Heard while the room loaded: those who joined on an answer read before the
            # change (they subscribed just now, in the hub's callbacks) are checked again.
            self._schedule_rechecks()

    def room_forgotten(self, slug: str) -> None:
        self._rechecks.pop(slug, None)

    def changed(self, change: AccessChange) -> None:
        """A committed change of what access depends on, made here or in another process."""
        if self.authorizer is not None:
            # A kick is, to the Authorizer, a change of those users' access to the room.
            stale = change
            if change.kind == KICK and change.room is not None:
                stale = AccessChange.room_changed(change.room, change.users)
            self.authorizer.invalidate(stale)
        if change.kind == KICK:
            self._kick(change.room, set(change.users or ()))
        elif change.kind == ROOM:
            if change.room in self.rooms:  # else nobody here holds the room: nothing to do
                users = None if change.users is None else set(change.users)
                self._want(change.room, users, sessions=False)
        elif change.kind == ACCOUNTS:
            # One pass over this process's connections: accounts change at the pace of
            # people (a deactivation, a password change), not of messages.
            users = set(change.users or ())
            for slug, room in self.rooms.items():
                if not room.loaded or any(user and user.id in users for user, _ in room.holders()):
                    self._want(slug, users, sessions=True)
        elif change.kind == SESSION:
            self._end_session(change.session, change.users[0] if change.users else None)

    def check_all(self, part: int = 0, parts: int = 1) -> None:
        """Re-authorize every connection of every live room of ``part`` (the room check):
        finds what no notice reported, a change made by a process without a reactor or
        missed while the bus was away. One store read for the whole process."""
        for slug, room in self.rooms.items():
            if room.loaded and not room.is_empty() and in_part(slug, part, parts):
                self._want(slug, None, sessions=False)

    def _kick(self, slug: str | None, users: set[int]) -> None:
        """Kicked or banned: their connections to the room end now, with no read."""
        room = self.rooms.get(slug or "")
        if room is None:
            return  # nobody here holds the room
        if room.loaded:
            ended = room.revoke(lambda user, key: user is not None and user.id in users)
            logger.info("kicked from %s: %d connection(s) and lease(s) ended", slug, ended)
        # Whoever was admitted on an answer read before the kick (still joining, or the
        # room still loading) is checked against the database too: a ban refuses them.
        self._want(room.slug, set(users), sessions=False)

    def _end_session(self, session: str | None, user_id: int | None) -> None:
        """A session ended: the connections opened with it end, with no read (a connection
        whose transport does not tell its session ends if it is that session's user's)."""

        def lost(user: UserInfo | None, key: str | None) -> bool:
            if key is not None:
                return key == session
            return user is not None and user.id == user_id

        for slug, room in list(self.rooms.items()):
            if room.loaded:
                room.revoke(lost)
            else:  # whoever subscribes once it is loaded may hold that session
                self._want(slug, None, sessions=True)

    def _want(self, slug: str, users: set[int | None] | None, sessions: bool) -> None:
        self._rechecks.setdefault(slug, _Wanted()).add(users, sessions)
        self._schedule_rechecks()

    def _schedule_rechecks(self, delay: float = 0) -> None:
        # At the end of the reactor turn: the notices of one commit (an admin save is a
        # room change and a membership change) and of one burst share one read.
        if self._recheck_timer is None:
            self._recheck_timer = self.reactor.callLater(delay, self._recheck)

    def _recheck(self) -> None:
        self._recheck_timer = None
        wanted, self._rechecks = self._rechecks, {}
        asked: dict[str, set[int | None]] = {}
        sessions: set[str] = set()
        for slug, want in wanted.items():
            room = self.rooms.get(slug)
            if room is None:
                continue
            if not room.loaded:
                self._rechecks[slug] = want  # re-checked once loaded (see _loaded)
                continue
            concerned = [(u, key) for u, key in room.holders() if want.concerns(u)]
            if not concerned:
                continue
            asked[slug] = {u.id if u else None for u, _ in concerned}
            if want.sessions:
                sessions.update(key for u, key in concerned if key is not None and u is not None)
            else:
                # Tokens are re-checked by every re-check, the room check's included: a
                # token that expired has no notice (a logged-out session has its own).
                sessions.update(k for u, k in concerned if is_credential(k) and u is not None)
        if not asked:
            return
        d = self.store.recheck(asked, sessions)
        d.addCallbacks(
            self._rechecked, self._recheck_failed, callbackArgs=(asked,), errbackArgs=(wanted,)
        )

    def _rechecked(self, answer: Recheck, asked: dict[str, set[int | None]]) -> None:
        for slug, ids in asked.items():
            room = self.rooms.get(slug)
            if room is None:
                continue  # forgotten meanwhile: nobody is left in it
            info, allowed = answer.rooms.get(slug, (None, frozenset()))

            def lost(
                user: UserInfo | None, key: str | None, ids=ids, allowed=allowed, info=info
            ) -> bool:
                if info is None:
                    return True  # the room is gone: nobody may stay in it
                user_id = user.id if user else None
                if user_id not in ids:
                    return False  # joined after the read began, on an answer read afresh
                if user_id not in allowed:
                    return True
                signs_in = answer.sessions.get(key, user_id) if key is not None else user_id
                return signs_in != user_id

            ended = room.revoke(lost)
            if ended or info is None:
                logger.info("access to %s lost: %d connection(s) and lease(s) ended", slug, ended)
                if self.authorizer is not None:
                    # Found by the read, perhaps with no notice (the room check): answers
                    # cached before it may say the opposite.
                    self.authorizer.invalidate(AccessChange.room_changed(slug))
            if info is None:
                self._forget(room)  # the room is gone

    def _recheck_failed(self, failure, wanted: dict[str, _Wanted]) -> None:
        logger.warning("re-authorization failed, retrying: %s", failure.getErrorMessage())
        for slug, want in wanted.items():
            if slug in self.rooms:
                self._rechecks.setdefault(slug, _Wanted()).add(want.users, want.sessions)
        if self._rechecks:
            self._schedule_rechecks(RECHECK_RETRY)
