"""The hub: every live room of this process, on the reactor thread.

It owns the subscribers of each room and the order in which they see the room's log.
Durable events reach it from the bus (``deliver``) in whatever order the network brings
them; each room hands them to its subscribers strictly in seq order, exactly once:

- an event whose seq is not above the room's cursor (``last_seq``) was already
  delivered and is dropped;
- an event ahead of a missing seq is held, and if the missing one has not arrived within
  ``GAP_WAIT`` seconds it is read from the database (which has it: an event is published
  only after its commit, and a room's seqs commit in order under the room's row lock).

A subscriber that resumes from ``since`` is registered before anything is read: events
delivered while its older range is read from the ring or the database are held for it,
then sent after the range, so nothing slips between replay and live and nothing repeats.

Everything here is bounded: the ring (``RING_SIZE``), the held events of a room
(``MAX_HELD``) and of a joining subscriber (``MAX_JOIN_HOLD``), the events one long-poll
answer carries (``POLL_MAX_EVENTS``), and idle rooms are forgotten after ``ROOM_IDLE``.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from twisted.internet import defer

from chat.live import metrics
from chat.live.events import OutboundEvent
from chat.live.ratelimit import RateLimiter
from chat.live.records import ErrorCode, RoomInfo, SendRequest, SendResult, UserInfo
from chat.live.store import Store, StoreUnavailable
from chat.live.validation import check_body, check_client_id

logger = logging.getLogger(__name__)

# Recent events kept per room, so that a client resuming after a short disconnect is
# served from memory. Older resumes read the database, page by page.
RING_SIZE = 1024
# A missing seq is waited for this long before it is read from the database. Events of
# one room can arrive out of order when several processes or threads commit to it.
GAP_WAIT = 0.25
# Out-of-order events a room holds while waiting for a gap to fill; past this the gap is
# filled from the database at once instead of waiting.
MAX_HELD = 10_000
# Live events held for one subscriber while its older range is being read. A range that
# takes so long that this many events pile up means the subscriber cannot keep up.
MAX_JOIN_HOLD = 10_000
# Events in one long-poll answer (PROTOCOL.md).
POLL_MAX_EVENTS = 500
# A room with no subscribers is forgotten after this long (its ring with it).
ROOM_IDLE = 60.0
# A user's typing is announced at most this often per room.
TYPING_INTERVAL = 2.0


class Subscriber(Protocol):
    """What a transport gives the hub for one live connection."""

    transport_name: str
    user: UserInfo | None

    def started(self, last_seq: int) -> None:
        """Registered; ``last_seq`` is the room's newest seq at that moment."""

    def deliver(self, event: OutboundEvent) -> None:
        """Write one event (durable ones arrive in seq order, each once)."""

    def drop(self, reason: str) -> None:
        """The hub ends this subscription (shutdown); the transport closes its connection."""


class _Joining:
    """A subscriber between registration and live: replaying, or ahead of the room."""

    __slots__ = ("floor", "held", "subscriber")

    def __init__(self, subscriber: Subscriber, floor: int, reading: bool) -> None:
        self.subscriber = subscriber
        self.floor = floor  # highest seq the subscriber has (or will get from its replay)
        self.held: list[OutboundEvent] | None = [] if reading else None


class _PollWaiter:
    __slots__ = ("deferred", "since", "timer")

    def __init__(self, since: int | None) -> None:
        self.since = since
        self.deferred: defer.Deferred = defer.Deferred()
        self.timer = None


@dataclass
class LiveRoom:
    slug: str
    info: RoomInfo | None = None
    last_seq: int = 0
    ring: deque = field(default_factory=lambda: deque(maxlen=RING_SIZE))
    subscribers: set = field(default_factory=set)
    joining: dict = field(default_factory=dict)
    waiters: set = field(default_factory=set)
    held: dict = field(default_factory=dict)  # seq -> OutboundEvent arrived ahead of a gap
    early: list = field(default_factory=list)  # events that came while the room loaded
    presence: dict = field(default_factory=dict)  # username -> connections (and leases)
    remote: frozenset = frozenset()  # users present through other processes
    presence_cache: object = None  # the current presence event, until presence changes
    leases: dict = field(default_factory=dict)  # username -> IDelayedCall (long-poll)
    typing_at: dict = field(default_factory=dict)  # username -> last announced
    gap_timer: object = None
    filling: bool = False
    idle_timer: object = None

    @property
    def loaded(self) -> bool:
        return self.info is not None

    def is_empty(self) -> bool:
        return not (self.subscribers or self.joining or self.waiters or self.leases)


@dataclass(frozen=True)
class PollAnswer:
    events: list[OutboundEvent]
    last_seq: int


class RoomHub:
    def __init__(
        self,
        reactor,
        store: Store,
        *,
        publish: Callable[[dict, float | None], None],
        rate_limiter: RateLimiter,
        max_message_chars: int,
    ) -> None:
        self.reactor = reactor
        self.store = store
        self.publish = publish
        self.rate_limiter = rate_limiter
        self.max_message_chars = max_message_chars
        self.rooms: dict[str, LiveRoom] = {}
        self._loading: dict[str, list[defer.Deferred]] = {}
        self.on_room_active: Callable[[str], None] | None = None
        self.on_room_idle: Callable[[str], None] | None = None
        # Told the room's local users whenever they change (to share them with other
        # processes); set_remote_presence is the other direction.
        self.on_presence: Callable[[str, list[str]], None] | None = None

    # -- rooms -------------------------------------------------------------------

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
            room = self.rooms[info.slug] = LiveRoom(info.slug)
            if self.on_room_active is not None:
                # Subscribe to the bus BEFORE reading the room's last seq, so that no
                # event committed in between is missed (it lands in room.early).
                self.on_room_active(info.slug)
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
        room.info = info
        room.last_seq = info.last_seq
        early, room.early = sorted(room.early, key=lambda e: e.seq), []
        for event in early:
            self._order(room, event)
        self._schedule_idle(room)
        for d in waiting:
            d.callback(room)

    def _load_failed(self, failure, room: LiveRoom) -> None:
        waiting = self._loading.pop(room.slug, [])
        if not room.loaded:
            self._forget(room)
        for d in waiting:
            d.errback(failure)

    def _forget(self, room: LiveRoom) -> None:
        if self.rooms.get(room.slug) is room:
            del self.rooms[room.slug]
            for timer in (room.gap_timer, room.idle_timer, *room.leases.values()):
                if timer is not None and timer.active():
                    timer.cancel()
            if self.on_room_idle is not None:
                self.on_room_idle(room.slug)

    def _schedule_idle(self, room: LiveRoom) -> None:
        if room.idle_timer is not None and room.idle_timer.active():
            room.idle_timer.cancel()
        room.idle_timer = None
        if room.is_empty() and room.slug not in self._loading:
            room.idle_timer = self.reactor.callLater(ROOM_IDLE, self._maybe_forget, room)

    def _maybe_forget(self, room: LiveRoom) -> None:
        room.idle_timer = None
        if room.is_empty():
            self._forget(room)

    # -- durable events in order ---------------------------------------------------

    def deliver(self, event: OutboundEvent) -> None:
        """A committed durable event from the bus (any order, possibly repeated)."""
        room = self.rooms.get(event.event["room"])
        if room is None:
            return  # nobody in this process follows the room
        if not room.loaded:
            room.early.append(event)
            return
        self._order(room, event)

    def _order(self, room: LiveRoom, event: OutboundEvent) -> None:
        seq = event.seq
        if seq <= room.last_seq or seq in room.held:
            return
        if seq == room.last_seq + 1:
            self._fan_out(room, event)
            held = room.held
            while held and room.last_seq + 1 in held:
                self._fan_out(room, held.pop(room.last_seq + 1))
            if not held and room.gap_timer is not None:
                if room.gap_timer.active():
                    room.gap_timer.cancel()
                room.gap_timer = None
            return
        room.held[seq] = event
        if len(room.held) > MAX_HELD:
            self._fill_gap(room)
        elif room.gap_timer is None:
            room.gap_timer = self.reactor.callLater(GAP_WAIT, self._fill_gap, room)

    def _fill_gap(self, room: LiveRoom) -> None:
        if room.gap_timer is not None and room.gap_timer.active():
            room.gap_timer.cancel()
        room.gap_timer = None
        if room.held:
            metrics.GAP_FILLS.inc()
            self._read_missing(room, max(min(room.held) - 1 - room.last_seq, 1))

    def catch_up(self, slug: str) -> None:
        """Read what this process may have missed of a room (after a bus outage)."""
        room = self.rooms.get(slug)
        if room is not None and room.loaded:
            self._read_missing(room, POLL_MAX_EVENTS, to_the_end=True)

    def _read_missing(self, room: LiveRoom, limit: int, to_the_end: bool = False) -> None:
        """Read events after the room's cursor from the database and put them in order."""
        if room.filling or self.rooms.get(room.slug) is not room:
            return
        room.filling = True

        def got(events: list[dict]) -> None:
            room.filling = False
            for event in events:
                self._order(room, OutboundEvent(event))
            if to_the_end and len(events) == limit:
                self._read_missing(room, limit, to_the_end=True)
            elif room.held and room.gap_timer is None:
                room.gap_timer = self.reactor.callLater(GAP_WAIT, self._fill_gap, room)

        def failed(failure) -> None:
            room.filling = False
            logger.warning("reading %s from the database failed: %s", room.slug, failure.value)
            if room.held and room.gap_timer is None:
                room.gap_timer = self.reactor.callLater(GAP_WAIT * 4, self._fill_gap, room)

        self.store.read_since(room.info, room.last_seq, limit).addCallbacks(got, failed)

    def _fan_out(self, room: LiveRoom, event: OutboundEvent) -> None:
        room.last_seq = event.seq
        room.ring.append(event)
        if event.type == "deleted":
            self._blank_in_ring(room, event.event.get("target"))
        subscribers = room.subscribers
        if subscribers:
            for subscriber in tuple(subscribers):
                subscriber.deliver(event)
            metrics.EVENTS_DELIVERED.inc(len(subscribers))
        if room.joining:
            for joining in tuple(room.joining.values()):
                self._offer(room, joining, event)
        if room.waiters:
            self._answer_waiters(room, [event], event.seq)
        if event.started is not None:
            metrics.DELIVERY_LATENCY.observe(time.monotonic() - event.started)

    @staticmethod
    def _blank_in_ring(room: LiveRoom, target: object) -> None:
        """Replays from the ring show a deleted message as the log does: no body."""
        ring = room.ring
        if not isinstance(target, int) or not ring or target < ring[0].seq:
            return
        index = target - ring[0].seq
        if index >= len(ring) or ring[index].type != "message":
            return
        ring[index] = OutboundEvent({**ring[index].event, "body": "", "deleted": True})

    # -- subscriptions -------------------------------------------------------------

    def subscribe(self, room: LiveRoom, subscriber: Subscriber, since: int | None) -> None:
        """Register ``subscriber``; replays seq > ``since`` first when given, then live."""
        self._cancel_idle(room)
        subscriber.started(room.last_seq)
        self._join_presence(room, subscriber)
        if since is None or since == room.last_seq:
            room.subscribers.add(subscriber)
            return
        if since > room.last_seq:
            # The client has seen more than this process has delivered (it came from a
            # process that is ahead): skip what it has until the room catches up.
            room.joining[subscriber] = _Joining(subscriber, since, reading=False)
            return
        first_in_ring = room.ring[0].seq if room.ring else room.last_seq + 1
        if since + 1 >= first_in_ring:
            for event in tuple(room.ring)[since + 1 - first_in_ring :]:
                subscriber.deliver(event)
            room.subscribers.add(subscriber)
            return
        joining = room.joining[subscriber] = _Joining(subscriber, room.last_seq, reading=True)
        self._replay(room, joining, since, room.last_seq)

    @defer.inlineCallbacks
    def _replay(self, room: LiveRoom, joining: _Joining, after: int, until: int):
        """Send (after, until] from the database, then the events held meanwhile."""
        subscriber = joining.subscriber
        try:
            while after < until:
                events = yield self.store.read_since(room.info, after, POLL_MAX_EVENTS)
                if room.joining.get(subscriber) is not joining:
                    return  # unsubscribed meanwhile
                if not events:
                    break
                for event in events:
                    if event["seq"] > until:
                        break
                    subscriber.deliver(OutboundEvent(event))
                after = events[-1]["seq"]
        except StoreUnavailable:
            if room.joining.get(subscriber) is joining:
                logger.warning("replay of %s failed: database unavailable", room.slug)
                self.unsubscribe(room, subscriber)
                subscriber.drop("unavailable")
            return
        if room.joining.get(subscriber) is not joining:
            return
        held, joining.held = joining.held or [], None
        for event in held:
            subscriber.deliver(event)
        if held:
            joining.floor = held[-1].seq
        self._promote(room, joining)

    def _offer(self, room: LiveRoom, joining: _Joining, event: OutboundEvent) -> None:
        if joining.held is not None:
            joining.held.append(event)
            if len(joining.held) > MAX_JOIN_HOLD:
                subscriber = joining.subscriber
                self.unsubscribe(room, subscriber)
                metrics.SLOW_CONSUMERS.labels(subscriber.transport_name).inc()
                subscriber.drop("slow")
            return
        if event.seq > joining.floor:
            joining.subscriber.deliver(event)
            joining.floor = event.seq
        self._promote(room, joining)

    def _promote(self, room: LiveRoom, joining: _Joining) -> None:
        if joining.held is None and joining.floor <= room.last_seq:
            del room.joining[joining.subscriber]
            room.subscribers.add(joining.subscriber)

    def unsubscribe(self, room: LiveRoom, subscriber: Subscriber) -> None:
        room.subscribers.discard(subscriber)
        room.joining.pop(subscriber, None)
        self._leave_presence(room, subscriber)
        self._schedule_idle(room)

    def _cancel_idle(self, room: LiveRoom) -> None:
        if room.idle_timer is not None and room.idle_timer.active():
            room.idle_timer.cancel()
        room.idle_timer = None

    def connections(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for room in self.rooms.values():
            for subscriber in (*room.subscribers, *room.joining):
                name = subscriber.transport_name
                counts[name] = counts.get(name, 0) + 1
        return counts

    def drop_all(self, reason: str) -> None:
        """Shutdown: end every subscription and answer every held long-poll."""
        for room in list(self.rooms.values()):
            self._answer_waiters(room, [], None)
            subscribers = (*room.subscribers, *room.joining)
            # Everyone leaves at once: no presence updates to the ones leaving.
            room.subscribers.clear()
            room.joining.clear()
            room.presence.clear()
            room.presence_cache = None
            for subscriber in subscribers:
                subscriber.drop(reason)

    # -- long-poll -------------------------------------------------------------------

    def poll(
        self, room: LiveRoom, since: int | None, timeout: float, user: UserInfo | None
    ) -> defer.Deferred[PollAnswer]:
        """Events with seq > ``since`` at once, or wait up to ``timeout`` for the next."""
        self._cancel_idle(room)
        if user is not None:
            self._lease_presence(room, user.username, timeout + 15.0)
        if since is not None and since < room.last_seq:
            first_in_ring = room.ring[0].seq if room.ring else room.last_seq + 1
            if since + 1 >= first_in_ring:
                events = list(room.ring)[since + 1 - first_in_ring :][:POLL_MAX_EVENTS]
                return defer.succeed(PollAnswer(events, events[-1].seq))
            d = self.store.read_since(room.info, since, POLL_MAX_EVENTS)

            def answer(rows: list[dict]) -> PollAnswer:
                events = [OutboundEvent(row) for row in rows]
                return PollAnswer(events, events[-1].seq if events else since)

            return d.addCallback(answer)
        waiter = _PollWaiter(since)
        room.waiters.add(waiter)

        def timed_out() -> None:
            waiter.timer = None
            if waiter in room.waiters:
                room.waiters.discard(waiter)
                waiter.deferred.callback(PollAnswer([], _cursor(room, since)))
                self._schedule_idle(room)

        def cancelled(failure):
            room.waiters.discard(waiter)
            if waiter.timer is not None and waiter.timer.active():
                waiter.timer.cancel()
            self._schedule_idle(room)
            return failure

        waiter.timer = self.reactor.callLater(timeout, timed_out)
        waiter.deferred.addErrback(cancelled)
        return waiter.deferred

    def _answer_waiters(self, room: LiveRoom, events: list, seq: int | None) -> None:
        """Answer the held long-polls of ``room`` with ``events`` (durable when ``seq``)."""
        waiters, room.waiters = room.waiters, set()
        for waiter in waiters:
            if seq is not None and waiter.since is not None and seq <= waiter.since:
                room.waiters.add(waiter)  # the client has this one already
                continue
            if waiter.timer is not None and waiter.timer.active():
                waiter.timer.cancel()
            waiter.timer = None
            waiter.deferred.callback(PollAnswer(events, seq or _cursor(room, waiter.since)))

    # -- presence and typing ---------------------------------------------------------

    def _join_presence(self, room: LiveRoom, subscriber: Subscriber) -> None:
        """Count the newcomer, tell the others if it is a new user, send it the list."""
        user = subscriber.user
        if user is not None:
            count = room.presence.get(user.username, 0)
            room.presence[user.username] = count + 1
            if count == 0:
                self._presence_changed(room, exclude=subscriber)
        subscriber.deliver(self._presence_event(room))

    def _leave_presence(self, room: LiveRoom, subscriber: Subscriber) -> None:
        user = subscriber.user
        if user is None:
            return
        self._release(room, user.username)

    def _release(self, room: LiveRoom, username: str) -> None:
        count = room.presence.get(username, 0) - 1
        if count > 0:
            room.presence[username] = count
            return
        room.presence.pop(username, None)
        self._presence_changed(room)

    def _lease_presence(self, room: LiveRoom, username: str, seconds: float) -> None:
        """Long-poll users are present while they keep polling, not only mid-request."""
        timer = room.leases.get(username)
        if timer is not None and timer.active():
            timer.reset(seconds)
            return

        def expire() -> None:
            room.leases.pop(username, None)
            self._release(room, username)
            self._schedule_idle(room)

        room.leases[username] = self.reactor.callLater(seconds, expire)
        count = room.presence.get(username, 0)
        room.presence[username] = count + 1
        if count == 0:
            self._presence_changed(room)

    def _presence_changed(self, room: LiveRoom, exclude: Subscriber | None = None) -> None:
        """A user came or went in this process."""
        room.presence_cache = None
        if self.on_presence is not None:
            self.on_presence(room.slug, sorted(room.presence))
        self._broadcast(room, self._presence_event(room), exclude=exclude)

    def set_remote_presence(self, slug: str, users: frozenset[str]) -> None:
        """The users other processes have in ``slug`` (from the bus)."""
        room = self.rooms.get(slug)
        if room is None or room.remote == users:
            return
        before = room.remote | room.presence.keys()
        room.remote = users
        room.presence_cache = None
        if before != room.remote | room.presence.keys():
            self._broadcast(room, self._presence_event(room))

    def _presence_event(self, room: LiveRoom) -> OutboundEvent:
        # Every join is sent the list; it is built once per change, not once per join.
        if room.presence_cache is None:
            users = sorted(room.remote.union(room.presence))
            room.presence_cache = OutboundEvent(
                {"type": "presence", "room": room.slug, "users": users}
            )
        return room.presence_cache

    def typing(self, room: LiveRoom, sender: Subscriber) -> None:
        user = sender.user
        if user is None:
            return
        now = self.reactor.seconds()
        if now - room.typing_at.get(user.username, -TYPING_INTERVAL) < TYPING_INTERVAL:
            return
        room.typing_at[user.username] = now
        event = OutboundEvent({"type": "typing", "room": room.slug, "user": user.username})
        self._broadcast(room, event, exclude=sender)

    def _broadcast(
        self, room: LiveRoom, event: OutboundEvent, exclude: Subscriber | None = None
    ) -> None:
        for subscriber in (*room.subscribers, *room.joining):
            if subscriber is not exclude:
                subscriber.deliver(event)
        if room.waiters:
            self._answer_waiters(room, [event], None)

    # -- sends -------------------------------------------------------------------------

    def send(
        self, room_slug: str, user: UserInfo | None, body: object, client_id: object
    ) -> defer.Deferred[SendResult]:
        """Validate, rate-limit and commit a send; fires after the commit (the ack)."""
        started = time.monotonic()
        if user is None:
            return defer.succeed(SendResult(error=ErrorCode.FORBIDDEN))
        problem = check_client_id(client_id) or check_body(body, self.max_message_chars)
        if problem is not None:
            return defer.succeed(SendResult(error=problem[0], detail=problem[1]))
        # Over the limit, a send may still be the resend of a stored client_id, which is
        # answered with its seq and does not count: only the store can tell.
        over_limit = not self.rate_limiter.allow(user.id)
        request = SendRequest(
            room=room_slug,
            user_id=user.id,
            username=user.username,
            body=body,
            client_id=client_id,
            lookup_only=over_limit,
        )
        d = self.store.append(request)

        def committed(result: SendResult) -> SendResult:
            if result.created:
                self.publish(result.event, started)
            elif result.seq is not None and not over_limit:
                self.rate_limiter.refund(user.id)  # a resend does not count
            return result

        def failed(failure) -> SendResult:
            failure.trap(StoreUnavailable)
            return SendResult(error=ErrorCode.UNAVAILABLE)

        return d.addCallbacks(committed, failed)


def _cursor(room: LiveRoom, since: int | None) -> int:
    """The ``last_seq`` of a long-poll answer that carries no durable event."""
    return room.last_seq if since is None else max(since, room.last_seq)
