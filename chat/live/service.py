"""Live chat of one process, assembled: store, bus, hub, auth, read positions, the inbox,
and the three transports (each serving a room's stream and the user's inbox stream)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from twisted.internet import defer, task, threads
from twisted.web.resource import Resource

from chat.live import metrics, publish
from chat.live.auth import Authorizer
from chat.live.bus import EventBus, LocalBus, LocalPresenceStore, PresenceStore, SendCounter
from chat.live.connections import HEARTBEAT_SLICES, OpenConnections
from chat.live.hub import RoomHub
from chat.live.inbox import InboxHub
from chat.live.inbox_poll import InboxPollResource, PollSessions
from chat.live.inbox_web import InboxEventStreamResource, InboxWebSocketResource, LiveRoutes
from chat.live.longpoll import LongPollResource
from chat.live.notices import AccessNotices
from chat.live.publish import AccessChange
from chat.live.ratelimit import rate_limiter
from chat.live.reads import ReadTracker
from chat.live.records import ReadNotice
from chat.live.redis_bus import RedisEventBus
from chat.live.redis_link import RedisLink
from chat.live.redis_state import RedisPresenceStore, RedisSendCounter
from chat.live.sse import PING_INTERVAL as SSE_PING_INTERVAL
from chat.live.sse import EventStreamResource
from chat.live.store import Store
from chat.live.websocket import PING_INTERVAL as WS_PING_INTERVAL
from chat.live.websocket import WebSocketResource
from chat.uploads import remove_unattached
from chat.webhooks.deliverer import WebhookService

# Every active room's cursor is compared with the database this often, and after the bus
# reconnects. A process that missed events (Redis down, a publish lost, a delete made
# by a process with no reactor) catches up by itself even in a room where nobody speaks.
# The same check re-authorizes every live connection (AccessWatch.check_all), for access
# changes no notice reported, and every inbox stream (InboxChecks.check: sessions, room
# sets): one store read for the rooms and one for the inbox streams, per process.
CHECK_ROOMS_INTERVAL = 5.0
# The room check is made in this many parts, one every interval / CHECK_PARTS, each of a
# fifth of the rooms and of the inbox users: everyone is still checked once an interval.
# In one go, with 8,000 users over 800 rooms, it was 1-1.3 s of store-thread CPU every
# 5 s, and the reactor, waiting for the GIL behind it, sent nothing on time meanwhile.
CHECK_PARTS = 5
# The cursor check: the live rooms' cursors alone, this often (CHAT_CURSOR_CHECK_SECONDS,
# 0 turns it off). A process with no reactor and no Redis (the Python API from a script
# or a Celery worker) can tell the servers nothing; this finds its events within a
# quarter second, so they reach live clients within the 1 s PROTOCOL.md promises. One
# indexed read of the room rows per check, never two at once (the loop waits for it):
# with 1000 live rooms on SQLite about 1% of a core of an idle server (DESIGN.md).
CURSOR_CHECK_INTERVAL = 0.25
# Attachments: uploads never attached are removed after 24 h (PROTOCOL.md) by each server
# process itself, this often, in a store thread (chat/uploads.py remove_unattached).
UPLOAD_CLEANUP_INTERVAL = 3600.0

logger = logging.getLogger(__name__)


class BusListener:
    """What the bus hears, to whom it goes: events and access changes to the hub (and
    access changes to the inbox too), read positions to the read tracker, a reconnect to
    all three. The hub's own methods are bound here, so an event from the bus costs no
    extra call."""

    def __init__(
        self, hub: RoomHub, reads: ReadTracker, inbox: InboxHub, listeners: list | None = None
    ) -> None:
        self.deliver = hub.deliver
        self.read_moved = reads.read_moved
        self._hub = hub
        self._reads = reads
        self._inbox = inbox
        self._listeners = listeners if listeners is not None else []

    def access_changed(self, change: AccessChange) -> None:
        self._hub.access_changed(change)
        self._inbox.access_changed(change)
        for listener in self._listeners:
            listener(change)

    def bus_reconnected(self) -> None:
        """Events, access changes and read notices may have been lost meanwhile: the read
        positions known are not trusted, the hub catches its rooms up and re-authorizes
        their connections, the inbox recounts and re-checks its streams."""
        self._reads.bus_reconnected()
        self._hub.bus_reconnected()
        self._inbox.bus_reconnected()


class LiveService:
    def __init__(
        self,
        reactor,
        settings,
        *,
        bus: EventBus | None = None,
        presence: PresenceStore | None = None,
        send_counter: SendCounter | None = None,
        store_threads: int = 4,
    ) -> None:
        self.reactor = reactor
        sqlite = settings.DATABASES["default"]["ENGINE"].endswith("sqlite3")
        self.store = Store(reactor, threads=store_threads, lane_per_room=not sqlite)
        self.bus = bus or LocalBus()
        self.presence = presence or LocalPresenceStore()
        self.authorizer = Authorizer(self.store)
        self.hub = RoomHub(
            reactor,
            self.store,
            bus=self.bus,
            presence=self.presence,
            rate_limiter=rate_limiter(settings.CHAT_RATE_LIMIT, send_counter),
            max_message_chars=settings.CHAT_MAX_MESSAGE_CHARS,
            authorizer=self.authorizer,
        )
        # Every live connection past its checks, by transport and by user (their bound).
        self.open_connections = OpenConnections.from_settings(settings)
        # Told of every access change heard here, from any door (this process, the bus,
        # the access notices), after the hub and the inbox: the IRC gateway's direct rooms.
        self.access_listeners: list[Callable[[AccessChange], None]] = []
        self.inbox = InboxHub(reactor, self.hub, self.store)
        self.inbox_polls = PollSessions(reactor, self.inbox)
        self.reads = ReadTracker(reactor, self.store, self.hub, self.bus, self.inbox)
        # Webhooks (chat/webhooks/): the leases this process holds, one worker each.
        self.webhooks = WebhookService.from_settings(reactor, self.store, self.hub, settings)
        self.hub.event_hook = self.webhooks.wake
        # Access changes written down by processes with no hub and no Redis: heard as
        # the bus's from another process are (the hub's rooms, then the inbox streams).
        self.notices = AccessNotices(reactor, self.store, self.notice_heard)
        self._check_part = 0
        self._loops = [
            self._every(
                getattr(settings, "CHAT_ROOM_CHECK_SECONDS", CHECK_ROOMS_INTERVAL) / CHECK_PARTS,
                self.check_next_part,
            ),
            # Keep-alives a slice at a time (chat/live/connections.py HEARTBEAT_SLICES).
            self._every(
                WS_PING_INTERVAL / HEARTBEAT_SLICES,
                self.open_connections.heartbeat_round("websocket"),
            ),
            # The cursor check (the Python API from a process with no reactor): its
            # events, and its access changes written down (chat/live/notices.py).
            self._every(
                getattr(settings, "CHAT_CURSOR_CHECK_SECONDS", CURSOR_CHECK_INTERVAL),
                self.check_cursors,
            ),
            self._every(
                SSE_PING_INTERVAL / HEARTBEAT_SLICES, self.open_connections.heartbeat_round("sse")
            ),
            self._every(
                getattr(settings, "CHAT_UPLOAD_CLEANUP_SECONDS", UPLOAD_CLEANUP_INTERVAL),
                self.clean_uploads,
            ),
        ]
        for transport in ("websocket", "sse", "longpoll"):
            metrics.CONNECTIONS.labels(transport).set_function(
                lambda transport=transport: self.connections().get(transport, 0)
            )

    @classmethod
    def from_settings(cls, reactor, settings) -> LiveService:
        """One process (no REDIS_URL): the local pieces; several: the Redis ones, on one link."""
        if not settings.REDIS_URL:
            return cls(reactor, settings)
        link = RedisLink(reactor, settings.REDIS_URL, prefix=settings.CHAT_REDIS_PREFIX)
        presence = RedisPresenceStore(link)
        return cls(
            reactor,
            settings,
            bus=RedisEventBus(link, presence_note=presence.note),
            presence=presence,
            send_counter=RedisSendCounter(link),
        )

    def check_cursors(self) -> defer.Deferred:
        """The cursor check: the live rooms' last seqs, and the access notices."""
        return defer.gatherResults(
            [d for d in (self.hub.check_cursors(), self.notices.check()) if d is not None]
        )

    def _every(self, seconds: float, fn) -> tuple[task.LoopingCall, float]:
        loop = task.LoopingCall(fn)
        loop.clock = self.reactor
        return loop, seconds

    def resources(self) -> dict[bytes, Resource]:
        return {
            b"ws": LiveRoutes(WebSocketResource(self), InboxWebSocketResource(self)),
            b"events": LiveRoutes(EventStreamResource(self), InboxEventStreamResource(self)),
            b"poll": LiveRoutes(LongPollResource(self), InboxPollResource(self)),
        }

    def start(self) -> None:
        self.store.start()
        self.webhooks.start()
        self.presence.start(self.hub)
        self.bus.start(BusListener(self.hub, self.reads, self.inbox, self.access_listeners))
        for loop, seconds in self._loops:
            if seconds > 0:  # 0: a check turned off (CHAT_CURSOR_CHECK_SECONDS=0)
                loop.start(seconds, now=False)
        publish.install(
            self.reactor.callFromThread,
            self.publish_committed,
            self.access_changed,
            read_sink=self.read_heard,
            submit=self.submit_from_thread,
        )

    def check(self, part: int = 0, parts: int = 1) -> None:
        """The room check: the live rooms (cursors, their connections' access), then the
        inbox streams (sessions, room sets); with ``parts``, only the rooms and users of
        ``part`` (chat/live/parts.py)."""
        self.hub.check_rooms(part, parts)
        self.inbox.check(part, parts)

    def check_next_part(self) -> None:
        """The room check's loop: the next part (a part the inbox is still checking from
        the last round is asked again, not skipped)."""
        if self.inbox.checks.checking:
            return
        self.check(self._check_part, CHECK_PARTS)
        self._check_part = (self._check_part + 1) % CHECK_PARTS

    def clean_uploads(self) -> defer.Deferred:
        """Attachments: remove the unattached uploads older than 24 h, in a store thread.
        The loop waits for it (never two at once); a failure is logged and the loop goes
        on (a LoopingCall stops at an unhandled failure)."""

        def failed(failure) -> None:
            logger.warning("unattached uploads not removed: %s", failure.getErrorMessage())

        def done(removed: int) -> None:
            if removed:
                logger.info("%d unattached upload(s) removed", removed)

        return self.store.run(remove_unattached).addCallbacks(done, failed)

    def publish_committed(self, event: dict) -> None:
        """A durable event committed by Django code (admin delete), on the reactor."""
        self.hub.publish(event)

    def access_changed(self, change: AccessChange) -> None:
        """An access change committed by Django code (chat/signals.py), on the reactor."""
        self.hub.announce(change)
        self.inbox.access_changed(change)
        for listener in self.access_listeners:
            listener(change)

    def notice_heard(self, change: AccessChange) -> None:
        """An access change read from the database (chat/live/notices.py), on the reactor;
        every process reads those itself, so none goes on the bus."""
        self.hub.access_changed(change)
        self.inbox.access_changed(change)
        for listener in self.access_listeners:
            listener(change)

    def read_heard(self, notice: ReadNotice) -> None:
        """A read position moved by Django code (the REST API), on the reactor."""
        self.reads.heard(notice)

    def submit_from_thread(self, slug: str, user, frame: dict):
        """A write from a WSGI thread through the hub's write path; blocks that thread
        (never the reactor) until the hub answers."""
        return threads.blockingCallFromThread(self.reactor, self.hub.submit, slug, user, frame)

    @defer.inlineCallbacks
    def drain(self):
        """Shutdown: close every live connection so that clients resume elsewhere."""
        publish.uninstall()
        for loop, _seconds in self._loops:
            if loop.running:
                loop.stop()
        self.hub.drop_all("shutdown")
        self.inbox.drop_all("shutdown")
        yield self.webhooks.stop()  # gives its leases back: another process takes over
        # Let the close frames and last chunks reach the clients.
        yield task.deferLater(self.reactor, 0.1, lambda: None)
        yield self.presence.stop()  # needs the bus's Redis link, so first
        yield self.bus.stop()

    def stop(self) -> None:
        self.store.stop()

    def connections(self) -> dict[str, int]:
        """Open live connections by transport: counted from their checks to their socket's
        end (a held long-poll until its answer), as the per-user bound counts them."""
        return self.open_connections.counts()

    def health(self) -> dict:
        return {"connections": self.connections()}
