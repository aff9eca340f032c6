"""The Redis event bus (chat/live/bus.py's ``EventBus``), for several processes: pub/sub
on the process's ``RedisLink`` (chat/live/redis_link.py), which the presence store and
the send counter (chat/live/redis_state.py) share.

Events go through Redis pub/sub, one channel per room (``<prefix>:room:<slug>``). A
process delivers its own events to its hub at once (``RoomHub.publish``) and also
publishes them, so its subscribers are served even while Redis is down; the copy that
comes back from Redis is dropped by the room as already delivered. Redis pub/sub keeps
nothing for a process that is disconnected: what a process misses while Redis (or its
connection) is down is read back from the database by the hub's catch-up, which runs
when the subscription comes back (``BusListener.bus_reconnected``) and periodically for
every live room (LiveService).

Access changes (chat/live/publish.py ``AccessChange``) go on one channel that every
process subscribes to, ``<prefix>:access``, not on the rooms' channels: a change must
reach the Authorizer of every process, and a process caches answers about rooms it holds
no live room for (a refused connection, a long-poll POST). A process ignores its own
(its hub applied them at once). What a process misses while disconnected is found by
the hub's re-authorization at reconnect, which also makes every cached answer stale.

Read positions that moved (chat/live/reads.py ``ReadNotice``) go on one channel every
process subscribes to as well, ``<prefix>:reads``: the reading user's connections may be
in any process, whether or not it follows the room (an inbox stream, chat/live/inbox.py,
follows rooms by membership). They are ephemeral: one announced while Redis is down is
dropped, not kept: the user's next hello has the position, and the inbox streams of a
process re-read their counts when its subscription comes back (chat/live/inbox_checks.py).

Presence notes ride the rooms' channels too (``PRESENCE_SYNC``, chat/live/redis_state.py,
whose store writes them): one subscription per room carries both.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Callable

from twisted.internet import defer

from chat.live.bus import BusListener
from chat.live.events import OutboundEvent
from chat.live.publish import AccessChange
from chat.live.records import ReadNotice
from chat.live.redis_link import RedisLink
from chat.live.redis_state import PRESENCE_SYNC

logger = logging.getLogger(__name__)

ACCESS_CHANGE = "access_change"  # a note on the access channel; never sent to clients
READ_MOVED = "read_moved"  # a note on the reads channel; never sent to clients
# Access changes announced while the command connection is down, published once it is
# back. Changes come at the pace of people, so this is minutes of them; past it the
# oldest are dropped, and the other processes' room checks still find the room and
# account changes among them (only a logout's would be missed).
MAX_UNSENT_CHANGES = 1000


class RedisEventBus:
    """Committed events on one channel per room; presence notes ride the same channels;
    access changes on one channel for all.

    ``presence_note(slug, node)`` is told of every presence note heard (the presence
    store re-reads the room's hash), so one subscription per room carries both.
    """

    def __init__(self, link: RedisLink, presence_note: Callable[[str, str], None]) -> None:
        self.link = link
        self.presence_note = presence_note
        self.listener: BusListener | None = None
        # The live rooms of this process, re-subscribed after a reconnect; as bounded as
        # the hub's registry, which unfollows every room it forgets.
        self.followed: set[str] = set()
        self.unsent: deque[bytes] = deque(maxlen=MAX_UNSENT_CHANGES)

    def start(self, listener: BusListener) -> None:
        self.listener = listener
        self.link.start(self)

    def stop(self) -> defer.Deferred:
        return self.link.stop()

    def connected(self, pubsub) -> None:
        """The pub/sub connection is (again) up: subscribe, then catch up what was missed."""
        channels = [self.link.access_channel, self.link.reads_channel]
        channels.extend(self.link.room_channel(slug) for slug in self.followed)
        pubsub.subscribe(channels)
        if self.listener is not None:
            self.listener.bus_reconnected()

    def commands_ready(self) -> None:
        """The command connection is (again) up: publish the changes it could not."""
        while self.unsent and self.link.commands is not None:
            self._publish_change(self.unsent.popleft())

    def received(self, message: str | bytes) -> None:
        data = message.encode() if isinstance(message, str) else bytes(message)
        try:
            event = json.loads(data)
        except ValueError:
            event = None
        if isinstance(event, dict) and event.get("type") == ACCESS_CHANGE:
            change = AccessChange.from_json(event.get("change"))
            if change is None or not isinstance(event.get("node"), str):
                logger.warning("redis bus: ignoring a malformed access change %r", data[:200])
            elif event["node"] != self.link.node and self.listener is not None:
                self.listener.access_changed(change)
            return
        if isinstance(event, dict) and event.get("type") == READ_MOVED:
            notice = read_notice_from_json(event.get("notice"))
            if notice is None or not isinstance(event.get("node"), str):
                logger.warning("redis bus: ignoring a malformed read notice %r", data[:200])
            elif event["node"] != self.link.node and self.listener is not None:
                self.listener.read_moved(notice)
            return
        if isinstance(event, dict) and event.get("type") == PRESENCE_SYNC:
            if isinstance(event.get("room"), str) and isinstance(event.get("node"), str):
                self.presence_note(event["room"], event["node"])
            return
        if (
            not isinstance(event, dict)
            or not isinstance(event.get("room"), str)
            or not isinstance(event.get("seq"), int)
        ):
            logger.warning("redis bus: ignoring a malformed message %r", data[:200])
            return
        if self.listener is not None:
            self.listener.deliver(OutboundEvent(event, data=data))

    def publish(self, event: OutboundEvent) -> None:
        redis = self.link.commands
        if redis is None:
            return  # the other processes catch up from the database
        d = redis.publish(self.link.room_channel(event.event["room"]), event.data)
        d.addErrback(
            lambda failure: logger.warning("redis publish failed: %s", failure.getErrorMessage())
        )

    def announce(self, change: AccessChange) -> None:
        note = {"type": ACCESS_CHANGE, "node": self.link.node, "change": change.as_json()}
        data = json.dumps(note).encode()
        if self.link.commands is None:
            self.unsent.append(data)
            return
        self._publish_change(data)

    def announce_read(self, notice: ReadNotice) -> None:
        redis = self.link.commands
        if redis is None:
            return  # ephemeral: the user's other connections learn it at their next hello
        note = {"type": READ_MOVED, "node": self.link.node, "notice": read_notice_json(notice)}
        d = redis.publish(self.link.reads_channel, json.dumps(note).encode())
        d.addErrback(
            lambda f: logger.warning("redis read publish failed: %s", f.getErrorMessage())
        )

    def _publish_change(self, data: bytes) -> None:
        d = self.link.commands.publish(self.link.access_channel, data)
        d.addErrback(
            lambda f: logger.warning("redis access publish failed: %s", f.getErrorMessage())
        )

    def follow(self, slug: str) -> None:
        self.followed.add(slug)
        if self.link.pubsub is not None:
            self.link.pubsub.subscribe(self.link.room_channel(slug))

    def unfollow(self, slug: str) -> None:
        self.followed.discard(slug)
        if self.link.pubsub is not None:
            self.link.pubsub.unsubscribe(self.link.room_channel(slug))


_NOTICE_INTS = ("user_id", "read_seq", "unread", "mentions", "through")


def read_notice_json(notice: ReadNotice) -> dict:
    return {"room": notice.room, **{name: getattr(notice, name) for name in _NOTICE_INTS}}


def read_notice_from_json(data: object) -> ReadNotice | None:
    """The notice ``data`` describes, or None when it is not a well-formed one: a room
    slug and non-negative integers (not bools), nothing trusted beyond its shape."""
    if not isinstance(data, dict) or not isinstance(data.get("room"), str):
        return None
    values = {name: data.get(name) for name in _NOTICE_INTS}
    if not all(type(value) is int and value >= 0 for value in values.values()):
        return None
    return ReadNotice(room=data["room"], **values)
