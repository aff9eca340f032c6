"""One live room of this process: its log in order, its subscribers, its held long-polls.

Durable events reach the room (``receive``) in whatever order the bus brings them; the
room hands them to its subscribers strictly in seq order, exactly once:

- an event whose seq is not above the room's cursor (``last_seq``) was already
  delivered and is dropped;
- an event ahead of a missing seq is held, and if the missing one has not arrived within
  ``gap_wait`` seconds it is read from the database (which has it: an event is published
  only after its commit, and a room's seqs commit in order under the room's row lock).

A subscriber that resumes from ``since`` is registered before anything is read: events
delivered while its older range is read from the ring or the database are held for it,
then sent after the range, so nothing slips between replay and live and nothing repeats.

Everything here is bounded by ``LiveLimits`` (chat/live/limits.py): the ring, the events
held behind a gap and for a joining subscriber, and the events of one long-poll answer.

When access changes, the hub asks the room who is here (``holders``) and ends those who
may no longer read it (``revoke``): subscribers live, joining or replaying are dropped
with ``"revoked"``, held long-polls fail with ``AccessRevoked``, and long-poll leases end.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection

from twisted.internet import defer

from chat.live import compat, metrics
from chat.live.events import OutboundEvent
from chat.live.limits import LiveLimits
from chat.live.presence import RoomPresence
from chat.live.records import RoomInfo, UserInfo
from chat.live.ring import Ring
from chat.live.store import StoreUnavailable
from chat.live.subscriber import Holder, Joining, Subscriber
from chat.live.waiters import AccessRevoked, PollAnswer, PollWaiters

__all__ = ["AccessRevoked", "Holder", "LiveRoom", "PollAnswer", "Subscriber"]


logger = logging.getLogger(__name__)


class LiveRoom:
    def __init__(
        self,
        slug: str,
        clock,
        store,
        limits: LiveLimits,
        *,
        share_presence: Callable[[list[str]], None],
        maybe_idle: Callable[[LiveRoom], None],
    ) -> None:
        self.slug = slug
        self.clock = clock
        self.store = store
        self.limits = limits
        self._maybe_idle = maybe_idle  # told whenever the room may have no one left
        self.info: RoomInfo | None = None
        self.last_seq = 0
        self.ring = Ring(limits.ring_size)
        self.subscribers: set[Subscriber] = set()
        # Told of every durable event, in seq order, after the subscribers: the inbox
        # (chat/live/inbox.py) follows a member room through one watcher per process,
        # however many of the room's members have an inbox stream here.
        self.watchers: list[Callable[[OutboundEvent], None]] = []
        self.joining: dict[Subscriber, Joining] = {}
        self.waiters = PollWaiters(clock, self._cursor, lambda: self._maybe_idle(self))
        self.held: dict[int, OutboundEvent] = {}  # arrived ahead of a gap (max_held)
        # Events that came while the room loaded: at most those committed during one
        # read of the room row, a fraction of a second of the room's traffic.
        self.early: list[OutboundEvent] = []
        self.presence = RoomPresence(
            slug,
            clock,
            limits,
            broadcast=self.broadcast,
            share=share_presence,
            lease_ended=lambda: maybe_idle(self),
        )
        self._gap_timer = None
        self._filling = False
        self._closed = False

    @property
    def loaded(self) -> bool:
        return self.info is not None

    def is_empty(self) -> bool:
        return not (
            self.subscribers
            or self.joining
            or self.waiters
            or self.presence.leases
            or self.watchers
        )

    def start(self, info: RoomInfo) -> None:
        """The room row is read: its last_seq is the cursor; what came meanwhile follows."""
        self.info = info
        self.last_seq = info.last_seq
        early, self.early = sorted(self.early, key=lambda e: e.seq), []
        for event in early:
            self._order(event)

    def close(self) -> None:
        """The room is forgotten: no timer of it fires, no read of it is started."""
        self._closed = True
        self._cancel_gap_timer()
        self.presence.close()

    # -- durable events in order -----------------------------------------------------

    def receive(self, event: OutboundEvent) -> None:
        """A committed durable event (any order, possibly repeated)."""
        if self.loaded:
            self._order(event)
        else:
            self.early.append(event)

    def _order(self, event: OutboundEvent) -> None:
        seq = event.seq
        held = self.held
        if seq <= self.last_seq or seq in held:
            return
        if seq == self.last_seq + 1:
            self._fan_out(event)
            while held and self.last_seq + 1 in held:
                self._fan_out(held.pop(self.last_seq + 1))
            if not held:
                self._cancel_gap_timer()
            return
        held[seq] = event
        if len(held) > self.limits.max_held:
            self._fill_gap()
        elif self._gap_timer is None:
            self._gap_timer = self.clock.callLater(self.limits.gap_wait, self._fill_gap)

    def _cancel_gap_timer(self) -> None:
        if self._gap_timer is not None and self._gap_timer.active():
            self._gap_timer.cancel()
        self._gap_timer = None

    def _fill_gap(self) -> None:
        self._cancel_gap_timer()
        if self.held:
            metrics.GAP_FILLS.inc()
            self._read_missing(max(min(self.held) - 1 - self.last_seq, 1))

    def catch_up(self) -> None:
        """Read what this process may have missed (after a bus outage, a lost publish)."""
        if self.loaded:
            self._read_missing(self.limits.poll_max_events, to_the_end=True)

    def _read_missing(self, limit: int, to_the_end: bool = False) -> None:
        """Read events after the cursor from the database and put them in order."""
        if self._filling or self._closed:
            return
        self._filling = True

        def got(events: list[dict]) -> None:
            self._filling = False
            for event in events:
                self._order(OutboundEvent(event))
            if to_the_end and len(events) == limit:
                self._read_missing(limit, to_the_end=True)
            elif self.held and self._gap_timer is None and not self._closed:
                self._gap_timer = self.clock.callLater(self.limits.gap_wait, self._fill_gap)

        def failed(failure) -> None:
            self._filling = False
            logger.warning("reading %s from the database failed: %s", self.slug, failure.value)
            if self.held and self._gap_timer is None and not self._closed:
                wait = self.limits.gap_wait * 4
                self._gap_timer = self.clock.callLater(wait, self._fill_gap)

        self.store.read_since(self.info, self.last_seq, limit).addCallbacks(got, failed)

    def _fan_out(self, event: OutboundEvent) -> None:
        self.last_seq = event.seq
        self.ring.append(event)
        subscribers = self.subscribers
        if subscribers:
            for subscriber in tuple(subscribers):
                subscriber.deliver(event)
            metrics.EVENTS_DELIVERED.inc(len(subscribers))
        if self.joining:
            for joining in tuple(self.joining.values()):
                self._offer(joining, event)
        self.waiters.answer([event], event.seq)
        for watcher in self.watchers:
            watcher(event)
        if event.started is not None:
            metrics.DELIVERY_LATENCY.observe(time.monotonic() - event.started)

    # -- subscriptions ---------------------------------------------------------------

    def subscribe(self, subscriber: Subscriber, since: int | None) -> None:
        """Register ``subscriber``: hello, the presence list, then seq > ``since``, then live."""
        subscriber.started(self.last_seq)
        subscriber.deliver(self.presence.join(subscriber))
        if since is None or since == self.last_seq:
            self.subscribers.add(subscriber)
            return
        if since > self.last_seq:
            # The client has seen more than this process has delivered (it came from a
            # process that is ahead): skip what it has until the room catches up.
            self.joining[subscriber] = Joining(subscriber, since, reading=False)
            return
        replay = self.ring.after(since, self.last_seq)
        if replay is not None:
            with compat.coalescing():  # a run of frames to one socket: one send
                for event in replay:
                    subscriber.deliver(event)
            self.subscribers.add(subscriber)
            return
        joining = self.joining[subscriber] = Joining(subscriber, self.last_seq, reading=True)
        d = defer.Deferred.fromCoroutine(self._replay(joining, since, self.last_seq))
        d.addErrback(lambda f: logger.error("replay of %s failed: %s", self.slug, f.value))

    async def _replay(self, joining: Joining, after: int, until: int) -> None:
        """Send (after, until] from the database, then the events held meanwhile."""
        subscriber = joining.subscriber
        try:
            while after < until:
                events = await self.store.read_since(self.info, after, self.limits.poll_max_events)
                if self.joining.get(subscriber) is not joining:
                    return  # unsubscribed meanwhile
                if not events:
                    break
                with compat.coalescing():
                    for event in events:
                        if event["seq"] > until:
                            break
                        subscriber.deliver(OutboundEvent(event))
                after = events[-1]["seq"]
        except StoreUnavailable:
            if self.joining.get(subscriber) is joining:
                logger.warning("replay of %s failed: database unavailable", self.slug)
                self.unsubscribe(subscriber)
                subscriber.drop("unavailable")
            return
        if self.joining.get(subscriber) is not joining:
            return
        held, joining.held = joining.held or [], None
        for event in held:
            subscriber.deliver(event)
        if held:
            joining.floor = held[-1].seq
        self._promote(joining)

    def _offer(self, joining: Joining, event: OutboundEvent) -> None:
        if joining.held is not None:
            joining.held.append(event)
            if len(joining.held) > self.limits.max_join_hold:
                subscriber = joining.subscriber
                self.unsubscribe(subscriber)
                metrics.SLOW_CONSUMERS.labels(subscriber.transport_name).inc()
                subscriber.drop("slow")
            return
        if event.seq > joining.floor:
            joining.subscriber.deliver(event)
            joining.floor = event.seq
        self._promote(joining)

    def _promote(self, joining: Joining) -> None:
        if joining.held is None and joining.floor <= self.last_seq:
            del self.joining[joining.subscriber]
            self.subscribers.add(joining.subscriber)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        # Once only: a subscriber the room dropped itself (slow, revoked) may still be
        # unsubscribed by its transport, and presence must not count its leave twice.
        if subscriber not in self.subscribers and subscriber not in self.joining:
            return
        self.subscribers.discard(subscriber)
        self.joining.pop(subscriber, None)
        self.presence.leave(subscriber)
        self._maybe_idle(self)

    def broadcast(self, event: OutboundEvent, exclude: Collection[Subscriber] = ()) -> None:
        """An ephemeral event (presence, typing) to every subscriber and held long-poll."""
        for subscriber in (*self.subscribers, *self.joining):
            if subscriber not in exclude:
                subscriber.deliver(event)
        self.waiters.answer([event], None)

    def watch(self, watcher: Callable[[OutboundEvent], None]) -> None:
        """Call ``watcher(event)`` with every durable event from now on, in seq order."""
        self.watchers.append(watcher)

    def unwatch(self, watcher: Callable[[OutboundEvent], None]) -> None:
        if watcher in self.watchers:
            self.watchers.remove(watcher)
            self._maybe_idle(self)

    def deliver_to_user(self, user_id: int, event: OutboundEvent) -> None:
        """An ephemeral event for one user's connections here only (their ``read``)."""
        for subscriber in (*self.subscribers, *self.joining):
            if subscriber.user is not None and subscriber.user.id == user_id:
                subscriber.deliver(event)
        self.waiters.answer_user(user_id, [event])

    def typing(self, sender: Subscriber) -> None:
        if sender.user is None:
            return
        event = self.presence.typing(sender.user.username)
        if event is not None:
            self.broadcast(event, exclude=(sender,))

    # -- access --------------------------------------------------------------------

    def holders(self) -> list[Holder]:
        """Everyone who holds something open here: subscribers (live, joining or
        replaying), held long-polls, and long-poll leases (no session: a lease is renewed
        by any session of its user)."""
        held: list[Holder] = [
            (s.user, getattr(s, "session_key", None)) for s in (*self.subscribers, *self.joining)
        ]
        held.extend((w.user, w.session_key) for w in self.waiters)
        held.extend(
            (UserInfo(user_id, username), None)
            for username, user_id in self.presence.lease_ids.items()
        )
        return held

    def revoke(self, lost: Callable[[UserInfo | None, str | None], bool]) -> int:
        """End everything held by those for whom ``lost(user, session_key)``: they may no
        longer read the room. Returns how many subscriptions, long-polls and leases ended."""
        dropped = [
            s
            for s in (*self.subscribers, *self.joining)
            if lost(s.user, getattr(s, "session_key", None))
        ]
        for subscriber in dropped:
            self.unsubscribe(subscriber)
            subscriber.drop("revoked")
        waiters = self.waiters.revoke(lost, self.slug)
        leases = [
            username
            for username, user_id in self.presence.lease_ids.items()
            if lost(UserInfo(user_id, username), None)
        ]
        for username in leases:
            self.presence.end_lease(username)
        return len(dropped) + waiters + len(leases)

    def drop_all(self, reason: str) -> None:
        """Shutdown: end every subscription and answer every held long-poll."""
        self.waiters.answer([], None)
        subscribers = (*self.subscribers, *self.joining)
        # Everyone leaves at once: no presence updates to the ones leaving.
        self.subscribers.clear()
        self.joining.clear()
        self.presence.clear()
        for subscriber in subscribers:
            subscriber.drop(reason)

    # -- long-poll -------------------------------------------------------------------

    def poll(
        self,
        since: int | None,
        timeout: float,
        user: UserInfo | None,
        session_key: str | None = None,
    ) -> defer.Deferred[PollAnswer]:
        """Events with seq > ``since`` at once, or wait up to ``timeout`` for the next.

        A wait fails with ``AccessRevoked`` if its user loses access meanwhile.
        """
        if user is not None:
            lease = timeout + self.limits.poll_lease_grace
            self.presence.lease(user.username, lease, user.id)
        limit = self.limits.poll_max_events
        if since is not None and since < self.last_seq:
            events = self.ring.after(since, self.last_seq)
            if events is not None:
                events = events[:limit]
                return defer.succeed(PollAnswer(events, events[-1].seq))

            def answer(rows: list[dict]) -> PollAnswer:
                events = [OutboundEvent(row) for row in rows]
                return PollAnswer(events, events[-1].seq if events else since)

            return self.store.read_since(self.info, since, limit).addCallback(answer)
        return self.waiters.wait(since, timeout, user, session_key)

    def _cursor(self, since: int | None) -> int:
        """The ``last_seq`` of a long-poll answer that carries no durable event."""
        return self.last_seq if since is None else max(since, self.last_seq)
