"""Presence and typing of one live room: who is here, told to everyone at a bounded rate.

A user is present while they hold at least one connection to the room in some process, or
keep long-polling it (a lease, renewed by each poll). This process counts its own users'
connections and leases; the users other processes have (``remote``) come from the
presence store (chat/live/bus.py). The list everyone sees is the union of the two.

Changes are coalesced (``LiveLimits.presence_interval``, longer in a room of hundreds:
``interval()``): the first change after a quiet interval is broadcast at once, later ones
wait for the end of the interval and go out as one broadcast of the list as it is then,
and only if it differs from the last one sent, so a user who leaves and comes back
within the interval costs nothing. A departure is never the change that goes out at
once: it waits an interval, so that a reconnect is not told to anyone. The list this
process shares with the others through the presence store changes at the same rate.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

from chat.live.events import OutboundEvent
from chat.live.limits import LiveLimits

if TYPE_CHECKING:
    from chat.live.room import Subscriber


class RoomPresence:
    def __init__(
        self,
        slug: str,
        clock,
        limits: LiveLimits,
        *,
        broadcast: Callable[[OutboundEvent, Collection[Subscriber]], None],
        share: Callable[[list[str]], None],
        lease_ended: Callable[[], None],
    ) -> None:
        self.slug = slug
        self.clock = clock
        self.limits = limits
        self._broadcast = broadcast  # to the room's subscribers and waiters, but these
        self._share = share  # this process's users, for the other processes
        self._lease_ended = lease_ended  # the room may be empty now
        self.counts: dict[str, int] = {}  # username -> connections and leases here
        self.leases: dict[str, object] = {}  # username -> IDelayedCall (long-poll)
        # username -> user id of each lease, so that a lease ends with its user's access
        # (PROTOCOL.md "Losing access"); as bounded as ``leases``.
        self.lease_ids: dict[str, int] = {}
        self.remote: frozenset[str] = frozenset()
        self._event: OutboundEvent | None = None  # the current list, until it changes
        self._sent: list[str] = []  # the list of the last broadcast
        self._shared: list[str] = []  # the list last given to the presence store
        self._flushed_at = float("-inf")
        self._flush_timer = None
        # Newcomers sent the current list while a broadcast is pending: the broadcast
        # skips those it would send the same event again. Bounded by the joins of one
        # interval, emptied by every flush.
        self._told: dict[Subscriber, OutboundEvent] = {}
        self._typed_at: dict[str, float] = {}  # username -> last announced
        self._typing_swept = float("-inf")

    # -- who is here -----------------------------------------------------------------

    def event(self) -> OutboundEvent:
        """The current list as one event, built once per change rather than once per join."""
        if self._event is None:
            users = sorted(self.remote.union(self.counts))
            self._event = OutboundEvent({"type": "presence", "room": self.slug, "users": users})
        return self._event

    def join(self, subscriber: Subscriber) -> OutboundEvent:
        """Count the newcomer; the list to send it (the others hear of it in a broadcast)."""
        user = subscriber.user
        if user is not None:
            self._add(user.username)
        event = self.event()
        if self._flush_timer is not None:
            self._told[subscriber] = event
        return event

    def leave(self, subscriber: Subscriber) -> None:
        self._told.pop(subscriber, None)
        if subscriber.user is not None:
            self._release(subscriber.user.username)

    def lease(self, username: str, seconds: float, user_id: int | None = None) -> None:
        """Long-poll users are present while they keep polling, not only mid-request."""
        if user_id is not None:
            self.lease_ids[username] = user_id
        timer = self.leases.get(username)
        if timer is not None and timer.active():
            timer.reset(seconds)
            return

        def expire() -> None:
            self.leases.pop(username, None)
            self.lease_ids.pop(username, None)
            self._release(username)
            self._lease_ended()

        self.leases[username] = self.clock.callLater(seconds, expire)
        self._add(username)

    def end_lease(self, username: str) -> None:
        """The user lost access to the room: they are not present until they are let in
        again, however long their last poll's lease had to run."""
        timer = self.leases.pop(username, None)
        self.lease_ids.pop(username, None)
        if timer is None:
            return
        if timer.active():
            timer.cancel()
        self._release(username)
        self._lease_ended()

    def set_remote(self, users: frozenset[str]) -> None:
        """The users other processes have in this room (from the presence store)."""
        if users != self.remote:
            self.remote = users
            self._changed()

    def _add(self, username: str) -> None:
        count = self.counts.get(username, 0)
        self.counts[username] = count + 1
        if count == 0:
            self._changed()

    def _release(self, username: str) -> None:
        count = self.counts.get(username, 0) - 1
        if count > 0:
            self.counts[username] = count
            return
        self.counts.pop(username, None)
        self._changed(departure=True)

    def _changed(self, departure: bool = False) -> None:
        self._event = None
        if self._flush_timer is not None:
            return  # the pending broadcast will carry it
        wait = self._flushed_at + self.interval() - self.clock.seconds()
        if departure:
            # A departure is told no sooner than one base interval after it: a client
            # that reconnects (a network change, a resume) is back by then, and its
            # leave and return cost no broadcast at all, rather than two (the leave at
            # once, the return at the interval's end).
            wait = max(wait, self.limits.presence_interval)
        if wait <= 0:
            self._flush()
        else:
            self._flush_timer = self.clock.callLater(wait, self._flush)

    def interval(self) -> float:
        """How long after a broadcast the next may go (LiveLimits.presence_interval):
        longer in a large room, where each is the whole list written to everyone."""
        limits = self.limits
        present = len(self.counts) + len(self.remote)  # the list's length, near enough
        base = limits.presence_interval
        stretched = base * present / limits.presence_users_per_interval
        return max(base, min(stretched, limits.presence_max_interval))

    def _flush(self) -> None:
        self._flush_timer = None
        self._flushed_at = self.clock.seconds()
        told, self._told = self._told, {}
        local = sorted(self.counts)
        if local != self._shared:
            self._shared = local
            self._share(local)
        event = self.event()
        users = event.event["users"]
        if users != self._sent:
            self._sent = users
            self._broadcast(event, [s for s, sent in told.items() if sent is event])

    # -- typing ----------------------------------------------------------------------

    def typing(self, username: str) -> OutboundEvent | None:
        """The event announcing that ``username`` types, or None when announced lately."""
        now = self.clock.seconds()
        interval = self.limits.typing_interval
        if now - self._typed_at.get(username, float("-inf")) < interval:
            return None
        if now - self._typing_swept > interval:
            # An announcement older than the interval throttles nothing: forgetting it
            # keeps the map to the users who typed within the last two intervals.
            self._typing_swept = now
            self._typed_at = {u: t for u, t in self._typed_at.items() if now - t < interval}
        self._typed_at[username] = now
        return OutboundEvent({"type": "typing", "room": self.slug, "user": username})

    # -- end -------------------------------------------------------------------------

    def clear(self) -> None:
        """Shutdown: everyone leaves at once, and no one is told (they are all leaving)."""
        self.counts.clear()
        self._told.clear()
        self._event = None
        self._cancel_flush()

    def close(self) -> None:
        """The room is forgotten: no timer of it may fire."""
        self._cancel_flush()
        for timer in self.leases.values():
            if timer.active():
                timer.cancel()
        self.leases.clear()
        self.lease_ids.clear()

    def _cancel_flush(self) -> None:
        if self._flush_timer is not None and self._flush_timer.active():
            self._flush_timer.cancel()
        self._flush_timer = None
