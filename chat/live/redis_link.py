"""One process's connections to Redis (``RedisLink``), shared by the Redis pieces:
the event bus (chat/live/redis_bus.py: pub/sub), the presence store and the send
counter (chat/live/redis_state.py: keys).

Two connections, because a connection in subscriber mode can send nothing but
(un)subscriptions: ``commands`` (publish, hashes, counters) and ``pubsub`` (the
channels). Each reconnects by itself with backoff; the bus is told when either is
(again) up, since what was missed meanwhile must be read back from the database.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from functools import partial
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

import txredisapi
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory

if TYPE_CHECKING:
    from chat.live.redis_bus import RedisEventBus

logger = logging.getLogger(__name__)


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
