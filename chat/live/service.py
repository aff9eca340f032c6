"""Live chat of one process, assembled: store, bus, hub, auth and the three transports."""

from __future__ import annotations

import logging

from twisted.internet import defer, task
from twisted.web.resource import Resource

from chat.live import metrics, publish
from chat.live.auth import Authorizer
from chat.live.bus import PRESENCE_REFRESH, Bus, LocalBus, RedisBus
from chat.live.hub import RoomHub
from chat.live.longpoll import LongPollResource
from chat.live.sse import PING_INTERVAL as SSE_PING_INTERVAL
from chat.live.sse import EventStreamResource
from chat.live.store import Store
from chat.live.websocket import PING_INTERVAL as WS_PING_INTERVAL
from chat.live.websocket import WebSocketResource

logger = logging.getLogger(__name__)

# Every active room's cursor is compared with the database this often, and after the bus
# reconnects. A process that missed events (Redis down, a publish lost, a delete made
# by a process with no reactor) catches up by itself even in a room where nobody speaks.
CHECK_ROOMS_INTERVAL = 5.0


class LiveService:
    def __init__(self, reactor, settings, bus: Bus | None = None, store_threads: int = 4):
        self.reactor = reactor
        sqlite = settings.DATABASES["default"]["ENGINE"].endswith("sqlite3")
        self.store = Store(reactor, threads=store_threads, lane_per_room=not sqlite)
        self.bus = bus or LocalBus()
        self.authorizer = Authorizer(self.store)
        self.hub = RoomHub(
            reactor,
            self.store,
            publish=self.bus.publish,
            rate_limiter=self.bus.rate_limiter(settings.CHAT_RATE_LIMIT),
            max_message_chars=settings.CHAT_MAX_MESSAGE_CHARS,
        )
        self.hub.on_room_active = self.bus.follow
        self.hub.on_room_idle = self.bus.unfollow
        self.hub.on_presence = self.bus.share_presence
        self.bus.attach(self.hub.deliver)
        self.websockets: set = set()
        self.streams: set = set()
        if isinstance(self.bus, RedisBus):
            self.bus.on_reconnect = self.check_rooms
            self.bus.on_remote_presence = self.hub.set_remote_presence
        self._loops = [
            self._every(PRESENCE_REFRESH, self.bus.refresh),
            self._every(CHECK_ROOMS_INTERVAL, self.check_rooms),
            self._every(
                WS_PING_INTERVAL, lambda: [ws.heartbeat() for ws in tuple(self.websockets)]
            ),
            self._every(SSE_PING_INTERVAL, lambda: [s.ping() for s in tuple(self.streams)]),
        ]
        for transport in ("websocket", "sse", "longpoll"):
            metrics.CONNECTIONS.labels(transport).set_function(
                lambda transport=transport: self.connections().get(transport, 0)
            )

    @classmethod
    def from_settings(cls, reactor, settings) -> LiveService:
        bus = None
        if settings.REDIS_URL:
            bus = RedisBus(reactor, settings.REDIS_URL, prefix=settings.CHAT_REDIS_PREFIX)
        return cls(reactor, settings, bus=bus)

    def check_rooms(self) -> None:
        """Catch up every active room that is behind the database."""
        rooms = [slug for slug, room in self.hub.rooms.items() if room.loaded]
        if not rooms:
            return

        def compare(last_seqs: dict[str, int]) -> None:
            for slug, last_seq in last_seqs.items():
                room = self.hub.rooms.get(slug)
                if room is not None and room.loaded and last_seq > room.last_seq:
                    self.hub.catch_up(slug)

        d = self.store.last_seqs(rooms)
        d.addCallbacks(compare, lambda f: logger.warning("room check failed: %s", f.value))

    def _every(self, seconds: float, fn) -> tuple[task.LoopingCall, float]:
        loop = task.LoopingCall(fn)
        loop.clock = self.reactor
        return loop, seconds

    def resources(self) -> dict[bytes, Resource]:
        return {
            b"ws": WebSocketResource(self),
            b"events": EventStreamResource(self),
            b"poll": LongPollResource(self),
        }

    def start(self) -> None:
        self.store.start()
        self.bus.start()
        for loop, seconds in self._loops:
            loop.start(seconds, now=False)
        publish.install(self.reactor.callFromThread, self.publish_committed)

    def publish_committed(self, event: dict) -> None:
        """A durable event committed by Django code (admin delete), on the reactor."""
        self.bus.publish(event)

    @defer.inlineCallbacks
    def drain(self):
        """Shutdown: close every live connection so that clients resume elsewhere."""
        publish.uninstall()
        for loop, _seconds in self._loops:
            if loop.running:
                loop.stop()
        self.hub.drop_all("shutdown")
        # Let the close frames and last chunks reach the clients.
        yield task.deferLater(self.reactor, 0.1, lambda: None)
        yield self.bus.stop()

    def stop(self) -> None:
        self.store.stop()

    def connections(self) -> dict[str, int]:
        counts = self.hub.connections()
        counts["longpoll"] = sum(len(room.waiters) for room in self.hub.rooms.values())
        return counts

    def health(self) -> dict:
        return {"connections": self.connections()}
