"""The inbox stream (PROTOCOL.md "The inbox stream (v2)"): each signed-in user's unread
counts across their rooms, in this process.

``InboxHub`` keeps, for every user with an inbox stream here (a ``/ws/me/``,
``/events/me/`` or ``/poll/me/`` session, chat/live/inbox_web.py), their rooms and their
counts in each (``Position``), and the rooms those users are members of, followed with
one watcher each (``FollowedRoom``, chat/live/inbox_rooms.py, which keeps the counts
current). What a process follows is decided by who is connected to it: a room of 1000
members where three have an inbox here costs this process a pass over three positions
per message; a process with no inbox user in the room does not follow it.

A user's rooms and counts are read once, when their first stream here opens
(``chat.room_objects.member_rooms``), and again when their set of rooms may have changed:
an access change of a room they are (or become) a member of, heard from Django code or
another process (the AccessChange notices of chat/live/publish.py that the hub gets).
The streams of one user share one state; it is dropped when the last one closes. The
inbox is ephemeral (PROTOCOL.md): a client that reconnects gets a fresh hello, so nothing
here survives a restart or needs to.

Losing access: a logout ends the streams opened with that session at once; an account
change (deactivated, password changed) re-checks the sessions of that user's streams
with one store read; streams that no longer sign their user in end (WebSocket close
4403, the end of an SSE stream, a held long-poll answered 403, a poll session dropped).
What no notice reports is found by the room check and after a bus outage
(``InboxChecks``, chat/live/inbox_checks.py). The state itself (``UserInbox``,
``Position``) is in chat/live/inbox_state.py; the store-thread reads in inbox_reads.py.
"""

from __future__ import annotations

import logging

from twisted.internet import defer

from chat.live.events import encode
from chat.live.inbox_checks import InboxChecks
from chat.live.inbox_reads import member_rooms_of, recount_rooms
from chat.live.inbox_rooms import FollowedRoom
from chat.live.inbox_state import InboxStream, Position, UserInbox
from chat.live.publish import ACCOUNTS, ROOM, SESSION, AccessChange
from chat.live.records import ReadNotice, RoomInfo

logger = logging.getLogger(__name__)

# The Authorizer answers for (session, room); asked for a slug no room can have (slugs
# start with a letter or digit), it resolves the session alone: cached, and made stale
# by the same access changes (a logout, an account change) as every other answer.
NO_ROOM = ""
# A failed re-read of a user's rooms is retried after this long; their streams stay open
# meanwhile (as connections do while the database is down).
RETRY = 1.0


class InboxHub:
    """Every inbox of this process.

    On the store's threads (defaults in chat/live/inbox_reads.py): ``member_rooms(user_id)``
    (the hello's rooms); ``recount(info, user_ids)``, one room's counts, given by tests
    (the default counts every room asked in one reactor turn with ONE statement,
    ``recount_rooms``); ``check(sessions, user_ids)``, the checks' read (InboxChecks).
    """

    def __init__(
        self, reactor, hub, store, *, member_rooms=None, recount=None, check=None
    ) -> None:
        self.reactor = reactor
        self.hub = hub
        self.store = store
        self._member_rooms = member_rooms or member_rooms_of
        if recount is None:
            self._recount_rooms = recount_rooms
        else:
            self._recount_rooms = lambda asked: [recount(info, ids) for info, ids in asked]
        self.users: dict[int, UserInbox] = {}
        self.followed: dict[str, FollowedRoom] = {}
        self._asked: list[tuple[RoomInfo, list[int], defer.Deferred]] = []
        self._asking = None
        self.checks = InboxChecks(self, check)

    # -- streams ---------------------------------------------------------------------

    def attach(self, stream: InboxStream) -> defer.Deferred[None]:
        """Count ``stream`` among its user's; fires once the user's rooms and counts are
        read (StoreUnavailable when they could not be). Then ``start`` sends its hello."""
        inbox = self.users.get(stream.user.id)
        if inbox is None:
            inbox = self.users[stream.user.id] = UserInbox(stream.user)
        inbox.streams.add(stream)
        if inbox.loaded:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        inbox.waiting.append(d)
        if not inbox.loading:
            inbox.loading = True
            defer.Deferred.fromCoroutine(self._load(inbox)).addErrback(
                lambda f: logger.error("inbox load: %s", f.getTraceback())
            )
        return d

    def start(self, stream: InboxStream) -> None:
        """The stream's hello (its user's rooms with the counts as they are now); from
        now on it gets every frame of its user."""
        inbox = self.users.get(stream.user.id)
        if inbox is None or stream not in inbox.streams:
            return
        stream.ready = True
        stream.hello(self.hello_payload(inbox))
        inbox.ready = tuple(s for s in inbox.streams if s.ready)

    def hello_payload(self, inbox: UserInbox) -> bytes:
        return encode(
            {"type": "hello", "user": inbox.user.username, "rooms": inbox.room_objects()}
        )

    def detach(self, stream: InboxStream) -> None:
        if stream.user is None:
            return  # it closed before its user was known: it was never attached
        inbox = self.users.get(stream.user.id)
        if inbox is None or stream not in inbox.streams:
            return
        inbox.streams.discard(stream)
        stream.ready = False
        inbox.ready = tuple(s for s in inbox.streams if s.ready)
        if not inbox.streams:
            del self.users[inbox.user.id]
            self._drop_positions(inbox)

    def drop_all(self, reason: str) -> None:
        """Shutdown: end every inbox stream."""
        for inbox in list(self.users.values()):
            for stream in list(inbox.streams):
                stream.drop(reason)

    def position(self, user_id: int, slug: str) -> int | None:
        """The read position this process holds for (user, room), if it holds one."""
        inbox = self.users.get(user_id)
        position = inbox.positions.get(slug) if inbox is not None else None
        return position.read_seq if position is not None else None

    # -- rooms and counts --------------------------------------------------------------

    async def _load(self, inbox: UserInbox) -> None:
        try:
            inbox.reads += 1
            objects = await self.store.run(self._member_rooms, inbox.user.id)
            if self.users.get(inbox.user.id) is inbox:
                await self._adopt(inbox, objects)
        except Exception as error:
            inbox.loading = False
            waiting, inbox.waiting = inbox.waiting, []
            for d in waiting:
                d.errback(error)
            return
        inbox.loading = False
        inbox.loaded = True
        waiting, inbox.waiting = inbox.waiting, []
        for d in waiting:
            d.callback(None)
        if inbox.again and self.users.get(inbox.user.id) is inbox:
            self.refresh(inbox)

    async def _adopt(self, inbox: UserInbox, objects: list[dict]) -> None:
        """Make ``objects`` (member_rooms' answer) the user's rooms: follow the new ones,
        leave the ones that are gone; wait until every new position is exact."""
        wanted = {obj["slug"]: obj for obj in objects if isinstance(obj, dict) and "slug" in obj}
        for slug in [slug for slug in inbox.positions if slug not in wanted]:
            self._leave(inbox, slug)
        new = [obj for slug, obj in wanted.items() if slug not in inbox.positions]
        lives = await defer.gatherResults(
            [self._live_room(obj) for obj in new], consumeErrors=True
        )
        if self.users.get(inbox.user.id) is not inbox:
            self._drop_positions(inbox)
            return
        exact: list[defer.Deferred] = []
        for obj, live in zip(new, lives, strict=True):
            slug = obj["slug"]
            if live is None:  # the room is gone
                wanted.pop(slug, None)
                continue
            if slug in inbox.positions:  # adopted by a read of the rooms meanwhile
                continue
            position = Position(
                inbox,
                slug,
                _count(obj.get("read_seq")),
                _count(obj.get("unread")),
                _count(obj.get("mentions")),
                _count(obj.get("last_seq")),
            )
            inbox.positions[slug] = position
            self._follow(slug, live).add(inbox.user.id, position)
            if position.recounting:
                exact.append(_when_counted(position))
        inbox.objects = list(wanted.values())
        if exact:
            await defer.gatherResults(exact, consumeErrors=True)

    def _live_room(self, obj: dict) -> defer.Deferred:
        info = RoomInfo(
            obj.get("id") if isinstance(obj.get("id"), int) else 0,
            obj["slug"],
            bool(obj.get("is_public", True)),
            bool(obj.get("is_archived", False)),
            _count(obj.get("last_seq")),
        )
        d = self.hub.room(info)
        d.addErrback(lambda failure: failure.trap(KeyError) and None)  # deleted meanwhile
        return d

    def _follow(self, slug: str, live) -> FollowedRoom:
        followed = self.followed.get(slug)
        if followed is not None and followed.live is not live:
            # The live room was forgotten and loaded again (it was deleted and made anew):
            # follow the new one, and count its members there afresh.
            self._unfollow(followed)
            positions = list(followed.positions.items())
            followed = None
        else:
            positions = []
        if followed is None:
            followed = FollowedRoom(slug, live, self.reactor, self.recount, self._lost)
            self.followed[slug] = followed
            self.hub.watch(live, followed)
            for user_id, position in positions:
                followed.add(user_id, position)
                followed.recount(position)
        return followed

    def _leave(self, inbox: UserInbox, slug: str) -> None:
        inbox.positions.pop(slug, None)
        followed = self.followed.get(slug)
        if followed is not None:
            followed.remove(inbox.user.id)
            if not followed.positions:
                # Not at once: this may run inside the room's fan-out, which is iterating
                # its watchers.
                self.reactor.callLater(0, self._maybe_unfollow, followed)

    def _drop_positions(self, inbox: UserInbox) -> None:
        for slug in list(inbox.positions):
            self._leave(inbox, slug)

    def _maybe_unfollow(self, followed: FollowedRoom) -> None:
        if not followed.positions and self.followed.get(followed.slug) is followed:
            self._unfollow(followed)

    def _unfollow(self, followed: FollowedRoom) -> None:
        del self.followed[followed.slug]
        if self.hub.rooms.get(followed.slug) is followed.live:
            self.hub.unwatch(followed.live, followed)
        # else the hub forgot that room (it was deleted): nothing of it is live any more,
        # and telling the hub it may be idle could touch a new room of the same slug.
        followed.close()

    def recount(self, info: RoomInfo, user_ids: list[int]) -> defer.Deferred:
        """``(last_seq, {user_id: (read_seq, unread, mentions)})`` of one room (FollowedRoom's
        recount). The recounts of every room asked in one reactor turn share one store
        call, and by default ONE statement: after a bus outage every position of the
        process is recounted at once (InboxChecks.bus_reconnected)."""
        d: defer.Deferred = defer.Deferred()
        self._asked.append((info, list(user_ids), d))
        if self._asking is None:
            self._asking = self.reactor.callLater(0, self._recount_asked)
        return d

    def _recount_asked(self) -> None:
        self._asking = None
        asked, self._asked = self._asked, []

        def answered(answers: list) -> None:
            for (_info, _ids, d), answer in zip(asked, answers, strict=True):
                d.callback(answer)

        def failed(failure) -> None:
            for _info, _ids, d in asked:
                d.errback(failure)

        d = self.store.run(self._recount_rooms, [(info, ids) for info, ids, _d in asked])
        d.addCallbacks(answered, failed)

    def _lost(self, inbox: UserInbox) -> None:
        if self.users.get(inbox.user.id) is inbox:
            self.refresh(inbox)

    def refresh(self, inbox: UserInbox) -> None:
        """Read the user's rooms again (their set may have changed): a ``rooms`` frame
        if it did. One read at a time per user; asked meanwhile, one more after it."""
        if inbox.refreshing or not inbox.loaded:
            inbox.again = True
            return
        inbox.refreshing = True
        defer.Deferred.fromCoroutine(self._refresh(inbox)).addErrback(
            lambda f: logger.error("inbox refresh: %s", f.getTraceback())
        )

    async def _refresh(self, inbox: UserInbox) -> None:
        try:
            inbox.again = True
            while inbox.again and self.users.get(inbox.user.id) is inbox:
                inbox.again = False
                before = inbox.shape()
                inbox.reads += 1
                try:
                    objects = await self.store.run(self._member_rooms, inbox.user.id)
                    if self.users.get(inbox.user.id) is not inbox:
                        return
                    await self._adopt(inbox, objects)
                except Exception as error:
                    logger.warning("reading %s's rooms failed, retrying: %s", inbox.user, error)
                    self.reactor.callLater(RETRY, self._lost, inbox)
                    return
                if self.users.get(inbox.user.id) is inbox and inbox.shape() != before:
                    rooms = encode({"type": "rooms", "rooms": inbox.room_objects()})
                    inbox.push(b"rooms", rooms)
        finally:
            inbox.refreshing = False

    # -- news from the hub, the read tracker and the bus ---------------------------------

    def read_moved(self, notice: ReadNotice) -> None:
        inbox = self.users.get(notice.user_id)
        position = inbox.positions.get(notice.room) if inbox is not None else None
        followed = self.followed.get(notice.room)
        if position is not None and followed is not None:
            followed.read_moved(position, notice)

    def access_changed(self, change: AccessChange) -> None:
        """A committed access change (here or in another process)."""
        if change.kind == ROOM:
            if change.users is None:
                followed = self.followed.get(change.room or "")
                ids = list(followed.positions) if followed is not None else []
            else:
                ids = [user_id for user_id in change.users if user_id in self.users]
            for user_id in ids:
                self.refresh(self.users[user_id])
        elif change.kind == ACCOUNTS:
            self.checks.accounts_changed([u for u in change.users or () if u in self.users])
        elif change.kind == SESSION:
            for inbox in list(self.users.values()):
                for stream in list(inbox.streams):
                    key = stream.session_key
                    mine = key == change.session if key is not None else False
                    if mine:
                        stream.drop("revoked")

    # -- what no notice reported (chat/live/inbox_checks.py) ------------------------------

    def check(self, part: int = 0, parts: int = 1) -> None:
        """The room check (every CHAT_ROOM_CHECK_SECONDS): sessions and room sets of the
        users of ``part``."""
        self.checks.check(part, parts)

    def bus_reconnected(self) -> None:
        """The bus was away: counts, sessions and room sets from the database."""
        self.checks.bus_reconnected()


def _count(value: object) -> int:
    return value if type(value) is int and value >= 0 else 0


def _when_counted(position: Position) -> defer.Deferred:
    d: defer.Deferred = defer.Deferred()
    position.waiters.append(d)
    return d
