"""What the processes of one deployment share, as three small interfaces.

The idea of Channels' layers, smaller: each interface has an in-process implementation
here, for a single process, and a Redis one (the bus in chat/live/redis_bus.py, the
other two in redis_state.py, all on one connection pair, redis_link.py), for several
processes sharing rooms (REDIS_URL). chat/live/service.py picks them from the settings
and gives them to the hub in its constructor.

- ``EventBus``: committed durable events, to the other processes. It only carries events
  that are already committed; order and exactly-once delivery are the room's job, so a
  bus may deliver late, twice or out of order without breaking a guarantee. It also
  carries access changes (chat/live/publish.py ``AccessChange``): the hub re-checks the
  connections a change concerns, so a change heard twice costs a read and nothing else.
  And it carries read positions that moved (``ReadNotice``, chat/live/reads.py), for the
  reading user's connections in the other processes: ephemeral, so one lost while the
  bus is away is not made up for (the next hello has the position).
- ``PresenceStore``: this process's users of each room, for the others, and theirs, for
  this one.
- ``SendCounter``: a per-user count of sends in every process, which
  ``ratelimit.SharedRateLimiter`` adds to its local bucket. One process has none.

What comes back from a bus or a presence store goes to a listener given to ``start``
(the hub implements both listeners): a bus cannot deliver before it is started, and the
hub, which is built with the bus, exists by then.
"""

from __future__ import annotations

from typing import Protocol

from twisted.internet import defer

from chat.live.events import OutboundEvent
from chat.live.publish import AccessChange
from chat.live.records import ReadNotice


class BusListener(Protocol):
    def deliver(self, event: OutboundEvent) -> None:
        """A durable event committed by another process (any order, possibly repeated)."""

    def access_changed(self, change: AccessChange) -> None:
        """An access change committed by another process."""

    def read_moved(self, notice: ReadNotice) -> None:
        """A read position moved in another process (for the user's connections here)."""

    def bus_reconnected(self) -> None:
        """The bus was away and may have dropped events, access changes and read
        notices: read what they would have said from the database."""


class EventBus(Protocol):
    def start(self, listener: BusListener) -> None: ...

    def stop(self) -> defer.Deferred: ...

    def publish(self, event: OutboundEvent) -> None:
        """A committed event of this process, for the others (this one has it already)."""

    def announce(self, change: AccessChange) -> None:
        """An access change committed in this process, for every other process (this one
        has applied it already). Every process hears every change, whichever rooms it
        follows: its Authorizer may hold answers about rooms it has no live room for."""

    def announce_read(self, notice: ReadNotice) -> None:
        """A read position moved in this process, for every other process (the user's
        connections may be anywhere, whichever rooms each process follows)."""

    def follow(self, slug: str) -> None:
        """This process has a live room ``slug``: send its events here."""

    def unfollow(self, slug: str) -> None:
        """The live room ``slug`` is forgotten here."""


class PresenceListener(Protocol):
    def set_remote_presence(self, slug: str, users: frozenset[str]) -> None:
        """The users the other processes have in ``slug`` (all of them, each time)."""


class PresenceStore(Protocol):
    def start(self, listener: PresenceListener) -> None: ...

    def stop(self) -> defer.Deferred:
        """Leave every room at once (not after a timeout); before the bus stops."""

    def watch(self, slug: str) -> None:
        """This process has a live room ``slug``: tell it who the others have there."""

    def forget(self, slug: str) -> None:
        """The live room ``slug`` is forgotten here: its users here are gone."""

    def share(self, slug: str, users: list[str]) -> None:
        """This process's users present in ``slug`` are now ``users``."""


class SendCounter(Protocol):
    def count(
        self, user_id: int, window: int, seconds: float, amount: int
    ) -> defer.Deferred[int] | None:
        """Add ``amount`` to the user's sends in ``window`` in every process; the total
        (None when the count cannot be reached now: the local bucket decides alone)."""


class LocalBus:
    """One process: the hub delivers its own events, and there is no one else to tell."""

    def start(self, listener: BusListener) -> None:
        pass

    def stop(self) -> defer.Deferred:
        return defer.succeed(None)

    def publish(self, event: OutboundEvent) -> None:
        pass

    def announce(self, change: AccessChange) -> None:
        pass  # the hub applied it here (RoomHub.announce), and there is no one else

    def announce_read(self, notice: ReadNotice) -> None:
        pass  # the read tracker told this process's connections; there is no one else

    def follow(self, slug: str) -> None:
        pass

    def unfollow(self, slug: str) -> None:
        pass


class LocalPresenceStore:
    """One process: every present user is a local one; there are no remote users."""

    def start(self, listener: PresenceListener) -> None:
        pass

    def stop(self) -> defer.Deferred:
        return defer.succeed(None)

    def watch(self, slug: str) -> None:
        pass

    def forget(self, slug: str) -> None:
        pass

    def share(self, slug: str, users: list[str]) -> None:
        pass
