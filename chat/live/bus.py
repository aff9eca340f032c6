"""Delivery of committed events to every process's hub.

One interface, two implementations picked by settings (the idea of Channels' layers,
smaller): ``LocalBus`` for a single process, ``RedisBus`` when several processes share
rooms (REDIS_URL). The bus only carries events that are already committed; the order
and exactly-once delivery to subscribers are the hub's job, so a bus may deliver late,
twice or out of order without breaking a guarantee.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from functools import partial
from typing import Protocol
from urllib.parse import unquote, urlsplit

import txredisapi

from chat.live.events import OutboundEvent
from chat.live.ratelimit import RateLimiter, SharedRateLimiter
from chat.live.records import RateLimit

logger = logging.getLogger(__name__)

# See RedisBus: presence fields are rewritten this often and trusted this long.
PRESENCE_REFRESH = 10.0
PRESENCE_TTL = 30.0
PRESENCE_SYNC = "presence_sync"  # bus-internal note on a room channel; never sent to clients


class Bus(Protocol):
    def attach(self, deliver: Callable[[OutboundEvent], None]) -> None:
        """Where events for this process go (the hub's ``deliver``)."""

    def publish(self, event: dict, started: float | None = None) -> None:
        """A committed durable event, for every process (this one included)."""

    def follow(self, slug: str) -> None:
        """This process has subscribers in ``slug``: deliver its events here."""

    def unfollow(self, slug: str) -> None:
        """No more subscribers in ``slug`` here."""

    def rate_limiter(self, limit: RateLimit) -> RateLimiter:
        """The per-user send limit, shared by every process of the bus."""

    def share_presence(self, slug: str, users: list[str]) -> None:
        """This process's users present in ``slug`` changed."""

    def refresh(self) -> None:
        """Periodic upkeep (presence heartbeats)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


class LocalBus:
    """One process: publishing is delivering."""

    def __init__(self) -> None:
        self._deliver: Callable[[OutboundEvent], None] | None = None

    def attach(self, deliver: Callable[[OutboundEvent], None]) -> None:
        self._deliver = deliver

    def publish(self, event: dict, started: float | None = None) -> None:
        if self._deliver is not None:
            self._deliver(OutboundEvent(event, started))

    def follow(self, slug: str) -> None:
        pass

    def unfollow(self, slug: str) -> None:
        pass

    def rate_limiter(self, limit: RateLimit) -> RateLimiter:
        return RateLimiter(limit)

    def share_presence(self, slug: str, users: list[str]) -> None:
        pass

    def refresh(self) -> None:
        pass

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


class RedisBus:
    """Several processes: events go through Redis pub/sub, one channel per room.

    A process delivers its own events to its hub at once and also publishes them, so its
    subscribers are served even while Redis is down; the copy that comes back from Redis
    is dropped by the hub as already delivered. Redis pub/sub keeps nothing for a
    process that is disconnected: what a process misses while Redis (or its connection)
    is down is read back from the database by the hub's catch-up, which runs when the
    subscription comes back and periodically for every active room (LiveService).

    Presence: each process keeps its users of a room in one field of the hash
    ``<prefix>:presence:<slug>``, stamped with the time; a change is announced on the
    room's channel and the others re-read the hash. Fields are rewritten every
    ``PRESENCE_REFRESH`` seconds and ignored once older than ``PRESENCE_TTL``, so the
    users of a process that died disappear within that time.
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
        self._deliver: Callable[[OutboundEvent], None] | None = None
        self.on_reconnect: Callable[[], None] | None = None
        self.on_remote_presence: Callable[[str, frozenset[str]], None] | None = None
        self.followed: set[str] = set()
        self.node = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.local_presence: dict[str, list[str]] = {}
        self.publisher = None
        self.subscriber = None
        self._services: list = []

    def channel(self, slug: str) -> str:
        return f"{self.prefix}:room:{slug}"

    def attach(self, deliver: Callable[[OutboundEvent], None]) -> None:
        self._deliver = deliver

    def start(self) -> None:
        from twisted.application.internet import ClientService, backoffPolicy
        from twisted.internet.endpoints import TCP4ClientEndpoint
        from twisted.internet.protocol import Factory

        endpoint = TCP4ClientEndpoint(self.reactor, self.host, self.port, timeout=5)
        # Reconnect with exponential backoff and jitter, from half a second up to 10 s:
        # fast after a blip, gentle on a Redis that is down for long.
        policy = backoffPolicy(initialDelay=0.5, maxDelay=10.0)
        for role in ("publisher", "subscriber"):
            factory = Factory.forProtocol(partial(self._protocol, role))
            factory.noisy = False
            service = ClientService(endpoint, factory, retryPolicy=policy, clock=self.reactor)
            service.startService()
            self._services.append(service)

    def stop(self):
        from twisted.internet import defer

        redis = self.publisher
        gone = []
        if redis is not None:  # leave the presence of the rooms at once, not after the TTL
            gone = [redis.hdel(self.presence_key(slug), self.node) for slug in self.local_presence]
        self.local_presence.clear()
        d = defer.gatherResults(gone, consumeErrors=True)
        d.addBoth(
            lambda _: defer.gatherResults(
                [service.stopService() for service in self._services], consumeErrors=True
            )
        )
        return d

    def _protocol(self, role: str):
        kind = _BusSubscriber if role == "subscriber" else _BusPublisher
        proto = kind(password=self.password, dbid=self.dbid, replyTimeout=10)
        proto.bus, proto.role = self, role
        return proto

    def _ready(self, role: str, proto) -> None:
        logger.info("redis bus: %s connected to %s:%s", role, self.host, self.port)
        setattr(self, role, proto)
        if role == "subscriber":
            if self.followed:
                proto.subscribe([self.channel(slug) for slug in self.followed])
            if self.on_reconnect is not None:
                self.on_reconnect()

    def _lost(self, role: str, proto) -> None:
        if getattr(self, role) is proto:
            logger.warning("redis bus: %s connection lost; reconnecting", role)
            setattr(self, role, None)

    def _message(self, message: str | bytes) -> None:
        data = message.encode() if isinstance(message, str) else bytes(message)
        try:
            event = json.loads(data)
        except ValueError:
            event = None
        if isinstance(event, dict) and event.get("type") == PRESENCE_SYNC:
            if event.get("node") != self.node and isinstance(event.get("room"), str):
                self._read_presence(event["room"])
            return
        if (
            not isinstance(event, dict)
            or not isinstance(event.get("room"), str)
            or not isinstance(event.get("seq"), int)
        ):
            logger.warning("redis bus: ignoring a malformed message %r", data[:200])
            return
        if self._deliver is not None:
            self._deliver(OutboundEvent(event, data=data))

    def publish(self, event: dict, started: float | None = None) -> None:
        outbound = OutboundEvent(event, started)
        if self._deliver is not None:
            self._deliver(outbound)
        if self.publisher is None:
            return  # the other processes catch up from the database
        d = self.publisher.publish(self.channel(event["room"]), outbound.data)
        d.addErrback(
            lambda failure: logger.warning("redis publish failed: %s", failure.getErrorMessage())
        )

    def follow(self, slug: str) -> None:
        self.followed.add(slug)
        if self.subscriber is not None:
            self.subscriber.subscribe(self.channel(slug))
        self._read_presence(slug)  # who is here through the other processes, at once

    def unfollow(self, slug: str) -> None:
        self.followed.discard(slug)
        if self.subscriber is not None:
            self.subscriber.unsubscribe(self.channel(slug))
        if self.local_presence.pop(slug, None) is not None:
            self._write_presence(slug, announce=True)

    # -- presence ------------------------------------------------------------------

    def presence_key(self, slug: str) -> str:
        return f"{self.prefix}:presence:{slug}"

    def share_presence(self, slug: str, users: list[str]) -> None:
        if users:
            self.local_presence[slug] = users
        else:
            self.local_presence.pop(slug, None)
        self._write_presence(slug, announce=True)

    def _write_presence(self, slug: str, announce: bool) -> None:
        redis = self.publisher
        if redis is None:
            return  # rewritten by refresh() once Redis is back
        key = self.presence_key(slug)
        users = self.local_presence.get(slug)
        if users:
            value = json.dumps({"users": users, "at": time.time()})
            d = redis.hset(key, self.node, value)
            d.addCallback(lambda _: redis.expire(key, int(PRESENCE_TTL * 4)))
        else:
            d = redis.hdel(key, self.node)
        if announce:
            note = json.dumps({"type": PRESENCE_SYNC, "room": slug, "node": self.node})
            d.addCallback(lambda _: redis.publish(self.channel(slug), note))
        d.addErrback(lambda f: logger.warning("presence write failed: %s", f.getErrorMessage()))

    def _read_presence(self, slug: str) -> None:
        redis = self.publisher
        if redis is None:
            return

        def got(fields: dict) -> None:
            users: set[str] = set()
            oldest = time.time() - PRESENCE_TTL
            for node, value in (fields or {}).items():
                if node == self.node:
                    continue
                try:
                    entry = json.loads(value)
                    if entry["at"] >= oldest:
                        users.update(u for u in entry["users"] if isinstance(u, str))
                except (ValueError, TypeError, KeyError):
                    continue
            if self.on_remote_presence is not None:
                self.on_remote_presence(slug, frozenset(users))

        redis.hgetall(self.presence_key(slug)).addCallbacks(
            got, lambda f: logger.warning("presence read failed: %s", f.getErrorMessage())
        )

    def refresh(self) -> None:
        for slug in list(self.local_presence):
            self._write_presence(slug, announce=False)
        for slug in list(self.followed):
            self._read_presence(slug)

    # -- rate limit ----------------------------------------------------------------

    def rate_limiter(self, limit: RateLimit) -> RateLimiter:
        return SharedRateLimiter(limit, self.count_sends)

    def count_sends(self, user_id: int, window: int, seconds: float, amount: int):
        """Add ``amount`` to the user's sends in ``window`` in every process; the total."""
        redis = self.publisher
        if redis is None:
            return None
        key = f"{self.prefix}:rate:{user_id}:{window}"
        d = redis.incr(key, amount)

        def expire(total: int) -> int:
            if total == amount:  # first of the window: it must not outlive it
                redis.expire(key, int(seconds) + 1)
            return total

        return d.addCallback(expire)


class _BusConnection:
    """Tells the bus when a connection of one ``role`` is ready, lost, or brings a message."""

    bus: RedisBus
    role: str

    def connectionMade(self):
        self.whenConnected().addCallback(lambda proto: self.bus._ready(self.role, proto))
        return super().connectionMade()

    def connectionLost(self, reason):
        self.bus._lost(self.role, self)
        return super().connectionLost(reason)


class _BusPublisher(_BusConnection, txredisapi.RedisProtocol):
    pass


class _BusSubscriber(_BusConnection, txredisapi.SubscriberProtocol):
    def messageReceived(self, pattern, channel, message):
        self.bus._message(message)
