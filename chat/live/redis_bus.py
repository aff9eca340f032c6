"""The Redis implementations of chat/live/bus.py's interfaces, for several processes.

``RedisLink`` holds a process's two connections to Redis (commands, and pub/sub), which
``RedisEventBus``, ``RedisPresenceStore`` and ``RedisSendCounter`` share.

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
dropped, not kept (the user's next hello has the position).

Presence: each process keeps its users of a room in one field of the hash
``<prefix>:presence:<slug>``, stamped with the time; a change is announced on the room's
channel and the others re-read the hash. Fields are rewritten every ``PRESENCE_REFRESH``
seconds and ignored once older than ``PRESENCE_TTL``, so the users of a process that died
disappear within that time.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from urllib.parse import unquote, urlsplit

import txredisapi
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import defer, task
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory

from chat.live.bus import BusListener, PresenceListener
from chat.live.events import OutboundEvent
from chat.live.publish import AccessChange
from chat.live.records import ReadNotice

logger = logging.getLogger(__name__)

# Presence fields are rewritten this often and trusted this long: a field is rewritten
# three times within its TTL, so one lost write does not make a live process's users
# vanish, and a dead process's users are gone within 30 s.
PRESENCE_REFRESH = 10.0
PRESENCE_TTL = 30.0
PRESENCE_SYNC = "presence_sync"  # a note on a room channel; never sent to clients
ACCESS_CHANGE = "access_change"  # a note on the access channel; never sent to clients
READ_MOVED = "read_moved"  # a note on the reads channel; never sent to clients
# Access changes announced while the command connection is down, published once it is
# back. Changes come at the pace of people, so this is minutes of them; past it the
# oldest are dropped, and the other processes' room checks still find the room and
# account changes among them (only a logout's would be missed).
MAX_UNSENT_CHANGES = 1000


class RedisLink:
    """One process's connections to Redis, each reconnecting by itself with backoff.

    ``commands`` (publish, hashes, counters) and ``pubsub`` (the room channels: a
    connection in subscriber mode can send nothing else) are None while disconnected.
    The event bus starts and stops the link, since it is the one that hears ``pubsub``;
    the presence store must be stopped before it.
    """

    def __init__(self, reactor, url: str, prefix: str = "parley") -> None:
        self.reactor = reactor
        self.prefix = prefix
        parts = urlsplit(url)
        if parts.scheme not in ("redis", ""):
            raise ValueError(f"REDIS_URL must be redis://host:port/db, not {url!r}")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 6379
        self.password = unquote(parts.password) if parts.password else None
        self.dbid = int(parts.path.strip("/") or 0)
        # Names this process's presence field: unique even for a pid reused after a crash.
        self.node = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.commands = None
        self.pubsub = None
        self._bus: RedisEventBus | None = None
        self._services: list[ClientService] = []

    def room_channel(self, slug: str) -> str:
        return f"{self.prefix}:room:{slug}"

    @property
    def access_channel(self) -> str:
        return f"{self.prefix}:access"

    @property
    def reads_channel(self) -> str:
        return f"{self.prefix}:reads"

    def start(self, bus: RedisEventBus) -> None:
        self._bus = bus
        endpoint = TCP4ClientEndpoint(self.reactor, self.host, self.port, timeout=5)
        # Reconnect with exponential backoff and jitter, from half a second up to 10 s:
        # fast after a blip, gentle on a Redis that is down for long.
        policy = backoffPolicy(initialDelay=0.5, maxDelay=10.0)
        for role in ("commands", "pubsub"):
            factory = Factory.forProtocol(partial(self._protocol, role))
            factory.noisy = False
            service = ClientService(endpoint, factory, retryPolicy=policy, clock=self.reactor)
            service.startService()
            self._services.append(service)

    def stop(self) -> defer.Deferred:
        stopping = [service.stopService() for service in self._services]
        self._services = []
        return defer.gatherResults(stopping, consumeErrors=True)

    def _protocol(self, role: str):
        kind = _PubSubConnection if role == "pubsub" else _CommandConnection
        proto = kind(password=self.password, dbid=self.dbid, replyTimeout=10)
        proto.link, proto.role = self, role
        return proto

    def _ready(self, role: str, proto) -> None:
        logger.info("redis bus: %s connected to %s:%s", role, self.host, self.port)
        setattr(self, role, proto)
        if self._bus is not None:
            if role == "pubsub":
                self._bus.connected(proto)
            else:
                self._bus.commands_ready()

    def _lost(self, role: str, proto) -> None:
        if getattr(self, role) is proto:
            logger.warning("redis bus: %s connection lost; reconnecting", role)
            setattr(self, role, None)

    def _message(self, data: bytes) -> None:
        if self._bus is not None:
            self._bus.received(data)


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


class RedisPresenceStore:
    """Each process's users of a room in one timestamped field of the room's hash."""

    def __init__(self, link: RedisLink, clock=time.time) -> None:
        self.link = link
        self.clock = clock  # wall time: fields are compared across machines
        self.listener: PresenceListener | None = None
        # Both as bounded as the hub's registry, which forgets every room it watched.
        self.watched: set[str] = set()
        self.local: dict[str, list[str]] = {}  # slug -> this process's users there
        self._heartbeat = task.LoopingCall(self.refresh)
        self._heartbeat.clock = link.reactor

    def key(self, slug: str) -> str:
        return f"{self.link.prefix}:presence:{slug}"

    def start(self, listener: PresenceListener) -> None:
        self.listener = listener
        self._heartbeat.start(PRESENCE_REFRESH, now=False)

    def stop(self) -> defer.Deferred:
        if self._heartbeat.running:
            self._heartbeat.stop()
        redis = self.link.commands
        gone = []
        if redis is not None:  # leave the rooms at once, not after the TTL
            gone = [redis.hdel(self.key(slug), self.link.node) for slug in self.local]
        self.local.clear()
        return defer.gatherResults(gone, consumeErrors=True)

    def watch(self, slug: str) -> None:
        self.watched.add(slug)
        self._read(slug)  # who is here through the other processes, at once

    def forget(self, slug: str) -> None:
        self.watched.discard(slug)
        if self.local.pop(slug, None) is not None:
            self._write(slug, announce=True)

    def share(self, slug: str, users: list[str]) -> None:
        if users:
            self.local[slug] = users
        else:
            self.local.pop(slug, None)
        self._write(slug, announce=True)

    def note(self, slug: str, node: str) -> None:
        """Another process announced a change in ``slug``."""
        if node != self.link.node and slug in self.watched:
            self._read(slug)

    def refresh(self) -> None:
        """Rewrite this process's fields before they expire, and re-read the others'."""
        for slug in list(self.local):
            self._write(slug, announce=False)
        for slug in list(self.watched):
            self._read(slug)

    def _write(self, slug: str, announce: bool) -> None:
        redis = self.link.commands
        if redis is None:
            return  # rewritten by refresh() once Redis is back
        key = self.key(slug)
        users = self.local.get(slug)
        if users:
            value = json.dumps({"users": users, "at": self.clock()})
            d = redis.hset(key, self.link.node, value)
            d.addCallback(lambda _: redis.expire(key, int(PRESENCE_TTL * 4)))
        else:
            d = redis.hdel(key, self.link.node)
        if announce:
            note = json.dumps({"type": PRESENCE_SYNC, "room": slug, "node": self.link.node})
            d.addCallback(lambda _: redis.publish(self.link.room_channel(slug), note))
        d.addErrback(lambda f: logger.warning("presence write failed: %s", f.getErrorMessage()))

    def _read(self, slug: str) -> None:
        redis = self.link.commands
        if redis is None:
            return

        def got(fields: dict) -> None:
            users: set[str] = set()
            oldest = self.clock() - PRESENCE_TTL
            for node, value in (fields or {}).items():
                if node == self.link.node:
                    continue
                try:
                    entry = json.loads(value)
                    if entry["at"] >= oldest:
                        users.update(u for u in entry["users"] if isinstance(u, str))
                except (ValueError, TypeError, KeyError):
                    continue
            if self.listener is not None and slug in self.watched:
                self.listener.set_remote_presence(slug, frozenset(users))

        redis.hgetall(self.key(slug)).addCallbacks(
            got, lambda f: logger.warning("presence read failed: %s", f.getErrorMessage())
        )


class RedisSendCounter:
    """Per-user sends in fixed windows, ``<prefix>:rate:<user>:<window>``, all processes."""

    def __init__(self, link: RedisLink) -> None:
        self.link = link

    def count(
        self, user_id: int, window: int, seconds: float, amount: int
    ) -> defer.Deferred[int] | None:
        redis = self.link.commands
        if redis is None:
            return None
        key = f"{self.link.prefix}:rate:{user_id}:{window}"
        d = redis.incr(key, amount)

        def expire(total: int) -> int:
            if total == amount:  # first of the window: it must not outlive it
                redis.expire(key, int(seconds) + 1)
            return total

        return d.addCallback(expire)


class _LinkConnection:
    """Tells the link when a connection of one ``role`` is ready or lost."""

    link: RedisLink
    role: str

    def connectionMade(self):
        self.whenConnected().addCallback(lambda proto: self.link._ready(self.role, proto))
        return super().connectionMade()

    def connectionLost(self, reason):
        self.link._lost(self.role, self)
        return super().connectionLost(reason)


class _CommandConnection(_LinkConnection, txredisapi.RedisProtocol):
    pass


class _PubSubConnection(_LinkConnection, txredisapi.SubscriberProtocol):
    def messageReceived(self, pattern, channel, message):
        self.link._message(message)
