"""Fixtures shared by the unit tests: the accounts and rooms of the Django-side tests, and
the live core on a fake clock (a hub over the in-memory store of live_fakes.py, and the
transports on real Twisted HTTP channels over ``StringTransport``). No sockets, no sleeping.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
from live_fakes import FakeStore, RecordingBus, RecordingPresenceStore
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Site
from wsproto import ConnectionType
from wsproto.connection import Connection
from wsproto.events import CloseConnection, Message, Ping, Pong, TextMessage

from chat.live.connections import OpenConnections
from chat.live.events import OutboundEvent
from chat.live.hub import RoomHub
from chat.live.limits import LiveLimits
from chat.live.longpoll import LongPollResource
from chat.live.ratelimit import RateLimiter
from chat.live.records import Access, RateLimit, RoomInfo, UserInfo
from chat.live.sse import EventStreamResource
from chat.live.store import StoreUnavailable
from chat.live.websocket import WebSocketResource
from chat.models import Room

# The password of the shared accounts, for the tests that sign in through the login form.
PASSWORD = "correct-horse-battery-9"

# --- accounts and rooms (Django) -------------------------------------------------------


@pytest.fixture
def user_password() -> str:
    return PASSWORD


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice", password=PASSWORD)


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user("bob", password=PASSWORD)


@pytest.fixture
def mallory(django_user_model):
    return django_user_model.objects.create_user("mallory", password=PASSWORD)


@pytest.fixture
def lobby(db):
    return Room.objects.create(slug="lobby", name="Lobby", description="Everyone's welcome")


@pytest.fixture
def secret(alice):
    """Private; alice is its member."""
    room = Room.objects.create(
        slug="secret", name="Secret Garden", description="Hush", is_public=False
    )
    room.members.add(alice)
    return room


@pytest.fixture
def attic(db):
    return Room.objects.create(slug="attic", name="Attic", is_archived=True)


@pytest.fixture
def rooms(lobby, secret, attic) -> dict[str, Room]:
    return {room.slug: room for room in (lobby, secret, attic)}


@pytest.fixture
def plain_static_storage(settings):
    """The manifest storage of DEBUG=0 needs collectstatic; page tests only need URLs."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


# --- the live core on a fake clock -----------------------------------------------------

LIMITS = LiveLimits()


@pytest.fixture
def clock():
    return MemoryReactorClock()


@pytest.fixture
def store():
    return FakeStore()


@pytest.fixture
def bus():
    return RecordingBus()


@pytest.fixture
def presence_store():
    return RecordingPresenceStore()


@pytest.fixture
def make_hub(clock, store, bus, presence_store):
    """``make_hub(**limits)``: a hub whose limits differ from the defaults as given (its
    rate limit is 3 sends a 10 s, its longest body 100 characters)."""

    def make(**limits) -> RoomHub:
        return RoomHub(
            clock,
            store,
            bus=bus,
            presence=presence_store,
            rate_limiter=RateLimiter(RateLimit(3, 10.0), clock=clock.seconds),
            max_message_chars=100,
            limits=dataclasses.replace(LIMITS, **limits),
        )

    return make


@pytest.fixture
def hub(make_hub):
    return make_hub()


# --- the transports, on real HTTP channels over StringTransport --------------------------


class FakeAuthorizer:
    """Access as chat/access.py decides it, from what the test sets: rooms are the store's
    (``private`` lists the members of the private ones), ``sessions`` maps session keys
    to users. With ``hold`` set, answers wait in ``held`` until ``release()``."""

    def __init__(self, store: FakeStore) -> None:
        self.store = store
        self.sessions: dict[str, UserInfo] = {}
        self.private: dict[str, set[int]] = {}
        self.hold = False
        self.held: list[tuple[defer.Deferred, Access]] = []
        self.fail = False

    def access(self, session_key: str | None, slug: str) -> defer.Deferred[Access]:
        user = self.sessions.get(session_key or "")
        if self.fail:
            return defer.fail(StoreUnavailable())
        if slug not in self.store.log:
            answer = Access(None, user, False)
        else:
            members = self.private.get(slug)
            public = members is None
            room = RoomInfo(1, slug, public, False, 0)
            answer = Access(room, user, public or (user is not None and user.id in members))
        if self.hold:
            d: defer.Deferred[Access] = defer.Deferred()
            self.held.append((d, answer))
            return d
        return defer.succeed(answer)

    def release(self) -> None:
        held, self.held = self.held, []
        for d, answer in held:
            if not d.called:
                d.callback(answer)


class FakeReads:
    """LiveService.reads for the transports' tests: positions are unknown (None), and
    every read is taken and remembered (chat/live/reads.py has tests of its own)."""

    def __init__(self) -> None:
        self.reads: list[tuple[str, object, object]] = []

    def position(self, room, user):
        return defer.succeed(None)

    def read(self, slug, user, seq):
        self.reads.append((slug, user, seq))
        return defer.succeed(SimpleNamespace(error=None, detail=None, notice=None))


class FakeLive:
    """What the transports use of LiveService: its reactor, hub, authorizer, connections,
    reads."""

    def __init__(self, clock, hub: RoomHub, authorizer: FakeAuthorizer, limit: int) -> None:
        self.reactor = clock
        self.hub = hub
        self.authorizer = authorizer
        self.open_connections = OpenConnections(limit)
        self.reads = FakeReads()

    def site(self) -> Site:
        root = Resource()
        root.putChild(b"ws", WebSocketResource(self))
        root.putChild(b"events", EventStreamResource(self))
        root.putChild(b"poll", LongPollResource(self))
        return Site(root, reactor=self.reactor, timeout=None)


class FlowTransport(StringTransport):
    """A StringTransport whose client may stop reading (``stall()``): then, as Twisted's TCP
    transport does, it pauses its streaming producer on every write while more than its
    buffer waits to be sent, and resumes it once ``drain()`` has sent everything."""

    BUFFER = 64 * 1024  # twisted.internet.abstract.FileDescriptor.bufferSize

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.stalled = False
        self.unsent = 0

    def stall(self) -> None:
        self.stalled = True

    def write(self, data: bytes) -> None:
        super().write(data)
        self._wrote(len(data))

    def writeSequence(self, data) -> None:
        super().writeSequence(data)
        self._wrote(sum(map(len, data)))

    def _wrote(self, size: int) -> None:
        if not self.stalled:
            return  # the client reads as fast as we write
        self.unsent += size
        if self.unsent > self.BUFFER and self.producer is not None and self.streaming:
            self.producer.pauseProducing()

    def drain(self) -> None:
        """The client read everything (and keeps reading)."""
        self.stalled = False
        self.unsent = 0
        if self.producer is not None and self.streaming:
            self.producer.resumeProducing()


class Peer:
    """One client connection to the live resources: an HTTP channel on a FlowTransport.

    ``request()`` writes a request head (and body); ``response()`` parses what the server
    wrote; ``lose()`` is the client going away.
    """

    def __init__(self, live: FakeLive, address: str = "10.0.0.7", stalled: bool = False):
        self.live = live
        self.channel = live.site().buildProtocol(IPv4Address("TCP", address, 40000))
        self.transport = FlowTransport(peerAddress=IPv4Address("TCP", address, 40000))
        if stalled:
            self.transport.stall()
        self.channel.makeConnection(self.transport)

    def request(
        self,
        path: str,
        method: str = "GET",
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        session: str | None = None,
        cookies: dict[str, str] | None = None,
    ) -> Peer:
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1:8000"]
        jar = dict(cookies or {})
        if session is not None:
            jar["sessionid"] = session
        if jar:
            lines.append("Cookie: " + "; ".join(f"{k}={v}" for k, v in jar.items()))
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}")
        if body or method == "POST":
            lines.append(f"Content-Length: {len(body)}")
        self.channel.dataReceived(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        return self

    def response(self) -> tuple[int, dict[str, str], bytes]:
        """Status, headers (lowercased names, last value) and the body so far (de-chunked
        when chunked; the raw bytes after the head otherwise)."""
        head, _, rest = self.transport.value().partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding") == "chunked":
            rest = dechunk(rest)
        return status, headers, rest

    def json(self):
        import json

        status, _headers, body = self.response()
        return status, json.loads(body)

    def lose(self) -> None:
        self.channel.connectionLost(Failure(ConnectionDone()))


def dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            out += b"<end>"
            break
        out, data = out + data[:size], data[size + 2 :]
    return out


class WSPeer(Peer):
    """A Peer that speaks WebSocket after the 101, with wsproto as the client side."""

    KEY = "dGhlIHNhbXBsZSBub25jZQ=="

    def open(self, slug: str = "lobby", query: str = "", **kwargs) -> WSPeer:
        headers = {
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": self.KEY,
            **kwargs.pop("headers", {}),
        }
        self.request(f"/ws/rooms/{slug}/{query}", headers=headers, **kwargs)
        self.client = Connection(ConnectionType.CLIENT)
        self._read = 0
        self.frames: list = []  # parsed JSON texts, and ("close", code) / ("ping", payload)
        return self

    @property
    def upgraded(self) -> bool:
        return self.transport.value().startswith(b"HTTP/1.1 101 ")

    def read(self) -> list:
        """Every frame the server wrote so far (client-side events, parsed)."""
        import json

        data = self.transport.value()
        if not self._read:
            head_end = data.find(b"\r\n\r\n")
            assert head_end > 0 and self.upgraded, data[:200]
            self._read = head_end + 4
        self.client.receive_data(data[self._read :])
        self._read = len(data)
        for event in self.client.events():
            if isinstance(event, TextMessage):
                self.frames.append(json.loads(event.data))
            elif isinstance(event, CloseConnection):
                self.frames.append(("close", event.code))
            elif isinstance(event, Ping):
                self.frames.append(("ping", event.payload))
        return self.frames

    def of_type(self, kind: str) -> list[dict]:
        return [f for f in self.read() if isinstance(f, dict) and f.get("type") == kind]

    @property
    def close_code(self) -> int | None:
        closes = [f[1] for f in self.read() if isinstance(f, tuple) and f[0] == "close"]
        return closes[0] if closes else None

    def send(self, event: Message | Pong | CloseConnection) -> None:
        self.channel.dataReceived(self.client.send(event))

    def send_json(self, frame: dict) -> None:
        import json

        self.send(TextMessage(json.dumps(frame)))

    def pong(self, payload: bytes = b"parley") -> None:
        self.send(Pong(payload))


@pytest.fixture
def authorizer(store) -> FakeAuthorizer:
    return FakeAuthorizer(store)


@pytest.fixture
def make_live(clock, hub, authorizer):
    """``make_live(limit=50)``: the transports' view of LiveService, with that per-user limit."""

    def make(limit: int = 50) -> FakeLive:
        return FakeLive(clock, hub, authorizer, limit)

    return make


@pytest.fixture
def live(make_live) -> FakeLive:
    return make_live()


@pytest.fixture
def peer(live):
    """``peer()``: a new client connection (``peer(address="10.0.0.8", stalled=True)``)."""
    return lambda address="10.0.0.7", stalled=False: Peer(live, address, stalled)


@pytest.fixture
def ws(live):
    """``ws(slug, query="?since=3", session="key", headers={...}, stalled=True)``: an opened
    WebSocket (``stalled``: whose client never reads)."""

    def open_ws(*args, address: str = "10.0.0.7", stalled: bool = False, **kwargs) -> WSPeer:
        return WSPeer(live, address, stalled).open(*args, **kwargs)

    return open_ws


def commit(hub: RoomHub, store: FakeStore, seq: int, room: str = "lobby") -> None:
    """An event committed and delivered to the hub, as the bus would."""
    hub.deliver(OutboundEvent(store.commit(seq, room)))


@pytest.fixture
def deliver(hub, store):
    """``deliver(seq)``: commit the event of ``seq`` and hand it to the hub."""
    return lambda seq, room="lobby": commit(hub, store, seq, room)
