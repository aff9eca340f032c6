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
with one store read (``Store.recheck``); streams that no longer sign their user in end
(WebSocket close 4403, the end of an SSE stream, a held long-poll answered 403).
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from twisted.internet import defer

from chat.live.events import encode
from chat.live.inbox_rooms import FollowedRoom, Position
from chat.live.publish import ACCOUNTS, ROOM, SESSION, AccessChange
from chat.live.records import ReadNotice, RoomInfo, UserInfo

logger = logging.getLogger(__name__)

# The Authorizer answers for (session, room); asked for a slug no room can have (slugs
# start with a letter or digit), it resolves the session alone: cached, and made stale
# by the same access changes (a logout, an account change) as every other answer.
NO_ROOM = ""
# A failed re-read of a user's rooms, or re-check of their sessions, is retried after
# this long; their streams stay open meanwhile (as connections do while the database is
# down).
RETRY = 1.0
# The counts of a room object; the rest of it is what a ``rooms`` frame reports changes of.
_COUNTS = ("last_seq", "read_seq", "unread", "mentions")


class InboxStream(Protocol):
    """What a transport gives the inbox for one inbox stream (or long-poll session)."""

    user: UserInfo
    session_key: str | None
    ready: bool  # has had its hello: pushes before it are dropped (the hello covers them)

    def hello(self, payload: bytes) -> None: ...

    def push(self, kind: bytes, payload: bytes) -> None:
        """One frame: ``kind`` is its type (SSE's ``event:``), ``payload`` its JSON."""

    def drop(self, reason: str) -> None:
        """The server ends the stream (revoked: 4403; shutdown: 1001)."""


class UserInbox:
    """One user's inbox in this process: their streams, rooms and counts."""

    __slots__ = (
        "again",
        "loaded",
        "loading",
        "objects",
        "positions",
        "ready",
        "refreshing",
        "streams",
        "user",
        "waiting",
    )

    def __init__(self, user: UserInfo) -> None:
        self.user = user
        self.streams: set[InboxStream] = set()
        self.ready: tuple[InboxStream, ...] = ()  # the streams that had their hello
        self.positions: dict[str, Position] = {}
        self.objects: list[dict] = []  # member_rooms' room objects, in its order
        self.loaded = False
        self.loading = False
        self.waiting: list[defer.Deferred] = []
        self.refreshing = False
        self.again = False  # rooms to read again once the read in flight is done

    def push(self, kind: bytes, payload: bytes) -> None:
        for stream in self.ready:
            stream.push(kind, payload)

    def room_objects(self) -> list[dict]:
        return [
            self.positions[obj["slug"]].as_room_object(obj)
            for obj in self.objects
            if obj["slug"] in self.positions
        ]

    def shape(self) -> list[tuple]:
        """The rooms as a ``rooms`` frame reports them, counts aside."""
        return [
            tuple(sorted((k, repr(v)) for k, v in obj.items() if k not in _COUNTS))
            for obj in self.objects
        ]


class InboxHub:
    """Every inbox of this process. ``member_rooms(user_id)`` and ``recount(info,
    user_ids)`` run on the store's threads (defaults: chat.room_objects, chat.counts)."""

    def __init__(self, reactor, hub, store, *, member_rooms=None, recount=None) -> None:
        self.reactor = reactor
        self.hub = hub
        self.store = store
        self._member_rooms = member_rooms or member_rooms_of
        self._recount = recount or recount_room
        self.users: dict[int, UserInbox] = {}
        self.followed: dict[str, FollowedRoom] = {}

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
        return self.store.run(self._recount, info, user_ids)

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
            self._recheck([u for u in change.users or () if u in self.users])
        elif change.kind == SESSION:
            for inbox in list(self.users.values()):
                for stream in list(inbox.streams):
                    key = stream.session_key
                    mine = key == change.session if key is not None else False
                    if mine:
                        stream.drop("revoked")

    def _recheck(self, user_ids: list[int]) -> None:
        """Whether each stream of these users still signs its user in (one read)."""
        streams = [s for u in user_ids for s in self.users[u].streams]
        if not streams:
            return
        sessions = {s.session_key for s in streams if s.session_key is not None}

        def rechecked(answer) -> None:
            for stream in streams:
                key = stream.session_key
                if key is None or answer.sessions.get(key) != stream.user.id:
                    stream.drop("revoked")

        def failed(failure) -> None:
            logger.warning("inbox session re-check failed, retrying: %s", failure.value)
            self.reactor.callLater(RETRY, self._recheck, [u for u in user_ids if u in self.users])

        self.store.recheck({}, sessions).addCallbacks(rechecked, failed)


def _count(value: object) -> int:
    return value if type(value) is int and value >= 0 else 0


def _when_counted(position: Position) -> defer.Deferred:
    d: defer.Deferred = defer.Deferred()
    position.waiters.append(d)
    return d


# -- on a store thread ------------------------------------------------------------------


def member_rooms_of(user_id: int) -> list[dict]:
    from chat.room_objects import member_rooms

    return member_rooms(user_id)


def recount_room(info: RoomInfo, user_ids: list[int]) -> tuple[int, dict[int, tuple[Any, ...]]]:
    """``(last_seq, {user_id: (read_seq, unread, mentions)})`` of one room, from ONE
    statement (chat.counts.counts_of_pairs), so that last_seq and the counts are one
    snapshot; a user who is not a member is missing from it."""
    from chat.counts import counts_of_pairs

    found = counts_of_pairs([(info.id, user_id) for user_id in user_ids])
    last_seq = max((c.last_seq for c in found.values()), default=0)
    rows = {user_id: (c.read_seq, c.unread, c.mentions) for (_r, user_id), c in found.items()}
    return last_seq, rows
