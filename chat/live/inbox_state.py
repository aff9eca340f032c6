"""The inbox's state in memory (chat/live/inbox.py): what a transport gives it for one
stream (``InboxStream``), one user's inbox in this process (``UserInbox``: their streams,
rooms and counts), their counts in one room (``Position``), and the frames that report
counts (``read``, ``activity``).

Kept apart from the code that moves it (``InboxHub``, ``FollowedRoom`` in
chat/live/inbox_rooms.py, the checks in inbox_checks.py) so that each of those reads
these shapes from one place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet import defer

from chat.live.events import OutboundEvent, encode
from chat.live.records import UserInfo

# PROTOCOL.md: counts are exact up to 99; above that any value of at least 99 may be
# reported. The database stops counting at 100 (chat/counts.py CAP), so a count of 100
# or more may stand for more, and taking one away from it is left to a recount.
EXACT_BELOW = 100
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
        "reads",
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
        # Reads of their rooms started so far: a check that read memberships while one
        # started compares nothing (the newer read decides; chat/live/inbox_checks.py).
        self.reads = 0

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


class Position:
    """One member's counts in one room, as their inbox shows them."""

    __slots__ = (
        "after",
        "attempts",
        "exact",
        "inbox",
        "mentions",
        "read_seq",
        "recounting",
        "slug",
        "through",
        "unread",
        "username",
        "waiters",
    )

    def __init__(
        self, inbox: Any, slug: str, read_seq: int, unread: int, mentions: int, through: int
    ):
        self.inbox = inbox  # the member's UserInbox: push(kind, payload)
        self.username: str = inbox.user.username
        self.slug = slug
        self.read_seq = read_seq
        self.unread = unread
        self.mentions = mentions
        self.through = through
        self.exact = unread < EXACT_BELOW and mentions < EXACT_BELOW
        self.recounting = False
        self.attempts = 0
        self.after: Callable[[Position], None] | None = None  # the frame owed after a recount
        self.waiters: list[defer.Deferred] = []

    def set_counts(self, read_seq: int, unread: int, mentions: int, through: int) -> None:
        self.read_seq, self.unread, self.mentions, self.through = (
            read_seq,
            unread,
            mentions,
            through,
        )
        self.exact = unread < EXACT_BELOW and mentions < EXACT_BELOW

    def as_room_object(self, obj: dict) -> dict:
        last_seq = obj.get("last_seq")
        last_seq = max(last_seq, self.through) if isinstance(last_seq, int) else self.through
        return {
            **obj,
            "last_seq": last_seq,
            "read_seq": self.read_seq,
            "unread": self.unread,
            "mentions": self.mentions,
        }

    def read_frame(self) -> None:
        self.inbox.push(
            b"read",
            encode(
                {
                    "type": "read",
                    "room": self.slug,
                    "seq": self.read_seq,
                    "unread": self.unread,
                    "mentions": self.mentions,
                }
            ),
        )


def activity_prefixes(slug: str, seq: int, user: object, kind: str) -> tuple[bytes, bytes]:
    """The bytes of an ``activity`` frame up to its counts, unmentioned and mentioned.

    One ``json.dumps`` per event; each recipient's frame is one of these plus
    ``b'%d,"mentions":%d}'``.
    """
    head = encode({"type": "activity", "room": slug, "seq": seq, "user": user, "kind": kind})
    head = head[:-1] + b',"mention":'
    return head + b'false,"unread":', head + b'true,"unread":'


def activity(position: Position, prefixes: tuple[bytes, bytes], mentioned: bool) -> None:
    position.inbox.push(
        b"activity",
        prefixes[mentioned] + b'%d,"mentions":%d}' % (position.unread, position.mentions),
    )


def owed_activity(slug: str, event: OutboundEvent) -> Callable[[Position], None]:
    """The ``activity`` frame of ``event``, sent once a recount has the counts after it."""
    body = event.event

    def send(position: Position) -> None:
        prefixes = activity_prefixes(slug, event.seq, body.get("user"), event.type)
        activity(position, prefixes, position.username in (body.get("mentions") or ()))

    return send
