"""What a live room holds for each connection: the ``Subscriber`` a transport gives it,
``Joining`` while a subscriber replays or waits for the room to catch up, and ``Holder``,
who holds something open (for re-authorization)."""

from __future__ import annotations

from typing import Protocol

from chat.live.events import OutboundEvent
from chat.live.records import UserInfo


class Subscriber(Protocol):
    """What a transport gives the room for one live connection.

    A transport may also give ``session_key`` (the session the connection was opened
    with), so that a logout ends exactly that session's connections; the room reads it
    with ``getattr`` and treats a subscriber without one as of any session of its user.
    """

    transport_name: str
    user: UserInfo | None

    def started(self, last_seq: int) -> None:
        """Registered; ``last_seq`` is the room's newest seq at that moment."""

    def deliver(self, event: OutboundEvent) -> None:
        """Write one event (durable ones arrive in seq order, each once)."""

    def drop(self, reason: str) -> None:
        """The room ends this subscription (shutdown, slow, unavailable, revoked: the
        user lost access, WebSocket close 4403); the transport closes its connection and
        does not unsubscribe."""


class Joining:
    """A subscriber between registration and live: replaying, or ahead of the room."""

    __slots__ = ("floor", "held", "subscriber")

    def __init__(self, subscriber: Subscriber, floor: int, reading: bool) -> None:
        self.subscriber = subscriber
        self.floor = floor  # highest seq the subscriber has (or will get from its replay)
        self.held: list[OutboundEvent] | None = [] if reading else None


# Who holds something open in a room: (user, the session it was opened with, if known).
Holder = tuple[UserInfo | None, str | None]
