"""The hub: the registry of this process's live rooms, and the write path into the log.

A live room (chat/live/room.py) owns its order, fan-out, replay and long-polls, and its
presence (chat/live/presence.py); the hub loads rooms on demand, follows them on the
event bus and the presence store while they are live, forgets them once idle, and takes
every send: validation, the rate limit, the store's append, then delivery here and
publication to the other processes.

It also ends access that was lost (PROTOCOL.md "Losing access"): changes heard from
Django code or the bus go to its ``AccessWatch`` (chat/live/access_watch.py).
"""

from __future__ import annotations

import logging
import time
from functools import partial

from twisted.internet import defer

from chat.live.access_watch import AccessWatch
from chat.live.bus import EventBus, PresenceStore
from chat.live.events import OutboundEvent
from chat.live.limits import LiveLimits
from chat.live.publish import AccessChange
from chat.live.ratelimit import RateLimiter, RecentAcks
from chat.live.records import ErrorCode, RoomInfo, SendResult, UserInfo
from chat.live.room import LiveRoom, PollAnswer, Subscriber
from chat.live.store import Store, StoreUnavailable
from chat.live.validation import request_from_frame

logger = logging.getLogger(__name__)


class RoomHub:
    """Implements the bus's BusListener and the presence store's PresenceListener."""

    def __init__(
        self,
        reactor,
        store: Store,
        *,
        bus: EventBus,
        presence: PresenceStore,
        rate_limiter: RateLimiter,
        max_message_chars: int,
        limits: LiveLimits | None = None,
        authorizer=None,
    ) -> None:
        self.reactor = reactor
        self.store = store
        self.bus = bus
        self.presence = presence
        self.rate_limiter = rate_limiter
        self.max_message_chars = max_message_chars
        self.limits = limits or LiveLimits()
        self.rooms: dict[str, LiveRoom] = {}
        self.acks = RecentAcks(self.limits.recent_acks)
        self._loading: dict[str, list[defer.Deferred]] = {}
        self._idle: dict[str, object] = {}  # slug -> IDelayedCall; at most one per room
        # Told of every access change, to make its answers stale (chat/live/auth.py).
        self.authorizer = authorizer
        self.access = AccessWatch(reactor, store, self.rooms, authorizer, self._forget)
        # Webhooks (chat/webhooks/deliverer.py): told the room of every event delivered
        # here, so that its workers send at once instead of at their next poll.
        self.event_hook = None

    # -- the registry ----------------------------------------------------------------

    def room(self, info: RoomInfo) -> defer.Deferred[LiveRoom]:
        """The live room for ``info`` (already authorized by the caller), loaded."""
        room = self.rooms.get(info.slug)
        if room is not None and room.loaded:
            return defer.succeed(room)
        waiting = self._loading.get(info.slug)
        d: defer.Deferred[LiveRoom] = defer.Deferred()
        if waiting is not None:
            waiting.append(d)
            return d
        self._loading[info.slug] = [d]
        if room is None:
            room = self.rooms[info.slug] = LiveRoom(
                info.slug,
                self.reactor,
                self.store,
                self.limits,
                share_presence=partial(self.presence.share, info.slug),
                maybe_idle=self._schedule_idle,
            )
            # Follow the room BEFORE reading its last seq, so that no event committed in
            # between is missed (it is kept in room.early until the room is loaded).
            self.bus.follow(info.slug)
            self.presence.watch(info.slug)
        self.store.room(info.slug).addCallbacks(
            self._loaded, self._load_failed, callbackArgs=(room,), errbackArgs=(room,)
        )
        return d

    def _loaded(self, info: RoomInfo | None, room: LiveRoom) -> None:
        waiting = self._loading.pop(room.slug, [])
        if info is None:  # deleted meanwhile
            self._forget(room)
            for d in waiting:
                d.errback(KeyError(room.slug))
            return
        room.start(info)
        self._schedule_idle(room)
        for d in waiting:
            d.callback(room)
        self.access.room_loaded(room.slug)

    def _load_failed(self, failure, room: LiveRoom) -> None:
        waiting = self._loading.pop(room.slug, [])
        if not room.loaded:
            self._forget(room)
        for d in waiting:
            d.errback(failure)

    def _forget(self, room: LiveRoom) -> None:
        if self.rooms.get(room.slug) is room:
            del self.rooms[room.slug]
            self._cancel_idle(room)
            room.close()
            self.bus.unfollow(room.slug)
            self.presence.forget(room.slug)
            self.access.room_forgotten(room.slug)

    def _schedule_idle(self, room: LiveRoom) -> None:
        self._cancel_idle(room)
        if room.is_empty() and room.slug not in self._loading:
            self._idle[room.slug] = self.reactor.callLater(
                self.limits.room_idle, self._maybe_forget, room
            )

    def _cancel_idle(self, room: LiveRoom) -> None:
        timer = self._idle.pop(room.slug, None)
        if timer is not None and timer.active():
            timer.cancel()

    def _maybe_forget(self, room: LiveRoom) -> None:
        self._idle.pop(room.slug, None)
        if room.is_empty():
            self._forget(room)

    # -- events from the bus (BusListener) and presence (PresenceListener) -------------

    def deliver(self, event: OutboundEvent) -> None:
        """A committed durable event (any order, possibly repeated)."""
        room = self.rooms.get(event.event["room"])
        if room is not None:  # else nobody in this process follows the room
            room.receive(event)
        if self.event_hook is not None:  # webhooks' wake-up
            self.event_hook(event.event["room"])

    def bus_reconnected(self) -> None:
        """The bus may have dropped events and access changes while it was away: compare
        with the database, and trust no answer read before."""
        if self.authorizer is not None:
            self.authorizer.invalidate_everything()
        self.check_rooms()

    def set_remote_presence(self, slug: str, users: frozenset[str]) -> None:
        """The users other processes have in ``slug``."""
        room = self.rooms.get(slug)
        if room is not None:
            room.presence.set_remote(users)

    def catch_up(self, slug: str) -> None:
        """Read what this process may have missed of a room (after a bus outage)."""
        room = self.rooms.get(slug)
        if room is not None:
            room.catch_up()

    def check_rooms(self, part: int = 0, parts: int = 1) -> None:
        """Catch up every live room that is behind the database, and re-authorize every
        live connection of the rooms of ``part`` (the room check)."""
        if self.check_cursors() is not None:
            self.access.check_all(part, parts)

    def check_cursors(self) -> defer.Deferred | None:
        """Catch up every live room that is behind the database: one store read of the
        rooms' ``last_seq`` (None when no room is live). Also the cursor check of
        chat/live/service.py, which finds events appended by a process that has no way
        to tell this one (the Python API with no Redis)."""
        slugs = [slug for slug, room in self.rooms.items() if room.loaded]
        if not slugs:
            return None

        def compare(last_seqs: dict[str, int]) -> None:
            for slug, last_seq in last_seqs.items():
                room = self.rooms.get(slug)
                if room is not None and room.loaded and last_seq > room.last_seq:
                    room.catch_up()

        d = self.store.last_seqs(slugs)
        return d.addCallbacks(compare, lambda f: logger.warning("room check failed: %s", f.value))

    # -- access (PROTOCOL.md "Losing access") -------------------------------------------

    def announce(self, change: AccessChange) -> None:
        """A change committed by Django code in this process: applied here at once, then
        handed to the bus for the other processes (as ``publish`` does with events)."""
        self.access.changed(change)
        self.bus.announce(change)

    def access_changed(self, change: AccessChange) -> None:
        """A committed change from another process (BusListener)."""
        self.access.changed(change)

    # -- connections -----------------------------------------------------------------

    def subscribe(self, room: LiveRoom, subscriber: Subscriber, since: int | None) -> None:
        """Register ``subscriber``; replays seq > ``since`` first when given, then live."""
        self._cancel_idle(room)
        room.subscribe(subscriber, since)

    def unsubscribe(self, room: LiveRoom, subscriber: Subscriber) -> None:
        room.unsubscribe(subscriber)

    def watch(self, room: LiveRoom, watcher) -> None:
        """``watcher(event)`` for every durable event of ``room`` (LiveRoom.watch); the room
        stays live while watched."""
        self._cancel_idle(room)
        room.watch(watcher)

    def unwatch(self, room: LiveRoom, watcher) -> None:
        room.unwatch(watcher)

    def poll(
        self,
        room: LiveRoom,
        since: int | None,
        timeout: float,
        user: UserInfo | None,
        session_key: str | None = None,
    ) -> defer.Deferred[PollAnswer]:
        """Events with seq > ``since`` at once, or wait up to ``timeout`` for the next.

        A wait fails with ``room.AccessRevoked`` if the user loses access meanwhile
        (``session_key``: the session the poll came with, so that a logout ends it).
        """
        self._cancel_idle(room)
        return room.poll(since, timeout, user, session_key)

    def typing(self, room: LiveRoom, sender: Subscriber) -> None:
        room.typing(sender)

    def drop_all(self, reason: str) -> None:
        """Shutdown: end every subscription and answer every held long-poll."""
        for room in list(self.rooms.values()):
            room.drop_all(reason)

    # -- writes ------------------------------------------------------------------------

    def publish(self, event: dict, started: float | None = None) -> None:
        """A committed durable event: delivered here at once, then to the other processes.

        Local delivery does not wait for the bus, so this process's readers (and the
        sender's own copy) are served while Redis is down; the copy that comes back from
        the bus is dropped by the room as already delivered.
        """
        outbound = OutboundEvent(event, started)
        self.deliver(outbound)
        self.bus.publish(outbound)

    def send(
        self, room_slug: str, user: UserInfo | None, body: object, client_id: object
    ) -> defer.Deferred[SendResult]:
        """A send (the v1 frame's fields): ``submit`` of a ``send`` frame."""
        return self.submit(room_slug, user, {"type": "send", "body": body, "client_id": client_id})

    def submit(
        self, room_slug: str, user: UserInfo | None, frame: dict
    ) -> defer.Deferred[SendResult]:
        """Validate, rate-limit and commit one write (a ``send``, ``edit``, ``delete`` or
        ``react`` frame, fields as the client sent them); fires after the commit (the ack).

        Every transport and the REST API come here, so a write means the same wherever it
        comes from. A no-op reaction is answered ``seq`` None and counts like any write:
        it costs a transaction all the same.
        """
        started = time.monotonic()
        if user is None:
            return defer.succeed(SendResult(error=ErrorCode.FORBIDDEN))
        request = request_from_frame(room_slug, user, frame, self.max_message_chars)
        if isinstance(request, tuple):
            return defer.succeed(SendResult(error=request[0], detail=request[1]))
        client_id = request.client_id
        if client_id is not None:
            seq = self.acks.get(room_slug, user.id, client_id)
            if seq is not None:  # a resend: its seq, not counted, no database work
                return defer.succeed(SendResult(seq=seq))
        if not self.rate_limiter.allow(user.id):
            # Refused without touching the database, resend or not (see RecentAcks).
            retry_after = self.rate_limiter.retry_after(user.id)
            return defer.succeed(SendResult(error=ErrorCode.RATE_LIMITED, retry_after=retry_after))
        d = self.store.append(request)

        def committed(result: SendResult) -> SendResult:
            if result.seq is not None and client_id is not None:
                self.acks.remember(room_slug, user.id, client_id, result.seq)
            if result.created:
                self.publish(result.event, started)
            elif result.seq is not None:
                self.rate_limiter.refund(user.id)  # a resend does not count
            return result

        def failed(failure) -> SendResult:
            failure.trap(StoreUnavailable)
            return SendResult(error=ErrorCode.UNAVAILABLE)

        return d.addCallbacks(committed, failed)
