"""The Redis event bus, presence store and send counter against an in-memory Redis, and
how chat/live/service.py assembles the pieces from the settings. No sockets: the
connections are what the link's ClientServices would hand it.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock

from chat.live.bus import LocalBus, LocalPresenceStore
from chat.live.events import OutboundEvent
from chat.live.publish import AccessChange
from chat.live.ratelimit import RateLimiter, SharedRateLimiter
from chat.live.records import RateLimit
from chat.live.redis_bus import RedisEventBus
from chat.live.redis_link import RedisLink
from chat.live.redis_state import (
    PRESENCE_REFRESH,
    PRESENCE_SYNC,
    PRESENCE_TTL,
    RedisPresenceStore,
    RedisSendCounter,
)


class FakeRedis:
    """The commands the Redis pieces use, on dicts."""

    def __init__(self) -> None:
        self.hashes: dict[str, dict[str, str]] = {}
        self.published: list[tuple[str, bytes | str]] = []
        self.counters: dict[str, int] = {}
        self.expires: dict[str, int] = {}

    def publish(self, channel, message):
        self.published.append((channel, message))
        return defer.succeed(0)

    def hset(self, key, field, value):
        self.hashes.setdefault(key, {})[field] = value
        return defer.succeed(1)

    def hdel(self, key, field):
        return defer.succeed(int(self.hashes.get(key, {}).pop(field, None) is not None))

    def hgetall(self, key):
        return defer.succeed(dict(self.hashes.get(key, {})))

    def expire(self, key, seconds):
        self.expires[key] = seconds
        return defer.succeed(1)

    def incr(self, key, amount):
        self.counters[key] = self.counters.get(key, 0) + amount
        return defer.succeed(self.counters[key])


class FakePubSub:
    def __init__(self) -> None:
        self.channels: set[str] = set()

    def subscribe(self, channels):
        self.channels.update([channels] if isinstance(channels, str) else channels)

    def unsubscribe(self, channel):
        self.channels.discard(channel)


class Listener:
    """The hub's side of the bus and of the presence store."""

    def __init__(self) -> None:
        self.delivered: list[OutboundEvent] = []
        self.changes: list[AccessChange] = []
        self.reconnects = 0
        self.remote: list[tuple[str, frozenset[str]]] = []

    def access_changed(self, change: AccessChange) -> None:
        self.changes.append(change)

    def deliver(self, event: OutboundEvent) -> None:
        self.delivered.append(event)

    def bus_reconnected(self) -> None:
        self.reconnects += 1

    def set_remote_presence(self, slug: str, users: frozenset[str]) -> None:
        self.remote.append((slug, users))


class Now:
    """A wall clock the test moves."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return MemoryReactorClock()


@pytest.fixture
def wall():
    return Now()


@pytest.fixture
def redis():
    return FakeRedis()


@pytest.fixture
def pieces(clock, redis, wall):
    """A started bus and presence store on one link whose command connection is up."""
    link = RedisLink(clock, "redis://127.0.0.1:6379/2", prefix="t")
    presence = RedisPresenceStore(link, clock=wall)
    bus = RedisEventBus(link, presence_note=presence.note)
    listener = Listener()
    presence.start(listener)
    bus.start(listener)
    link._ready("commands", redis)
    return SimpleNamespace(link=link, bus=bus, presence=presence, listener=listener)


def test_the_link_reads_every_part_of_the_url_and_refuses_other_schemes(clock):
    link = RedisLink(clock, "redis://:s%40cret@cache.example:6380/3")
    assert (link.host, link.port, link.password, link.dbid) == ("cache.example", 6380, "s@cret", 3)
    with pytest.raises(ValueError):
        RedisLink(clock, "http://cache.example:6379/0")


def test_the_bus_opens_two_connections_that_reconnect_with_backoff(clock, pieces):
    assert [(host, port) for host, port, *_ in clock.tcpClients] == [("127.0.0.1", 6379)] * 2
    factory = clock.tcpClients[0][2]
    factory.clientConnectionFailed(None, ConnectionRefusedError())
    clock.advance(0.1)
    assert len(clock.tcpClients) == 2  # not hammering a Redis that is down
    # The first step: 0.5 s x 1.5, plus up to 1 s of jitter (twisted's backoffPolicy).
    clock.advance(1.7)
    assert len(clock.tcpClients) > 2  # tried again within the first backoff step


def test_a_pubsub_reconnect_resubscribes_every_room_then_catches_up(pieces):
    bus, link, listener = pieces.bus, pieces.link, pieces.listener
    bus.follow("lobby")  # not connected yet: remembered
    first = FakePubSub()
    link._ready("pubsub", first)
    assert first.channels == {"t:access", "t:reads", "t:room:lobby"} and listener.reconnects == 1
    link._lost("pubsub", first)
    assert link.pubsub is None
    bus.follow("other")
    bus.unfollow("lobby")
    again = FakePubSub()
    link._ready("pubsub", again)
    assert again.channels == {"t:access", "t:reads", "t:room:other"} and listener.reconnects == 2
    bus.follow("third")
    assert again.channels == {"t:access", "t:reads", "t:room:other", "t:room:third"}


def test_an_event_from_redis_is_delivered_with_the_bytes_it_came_in(pieces):
    data = b'{"type":"message","room":"lobby","seq":7,"body":"hi"}'
    pieces.bus.received(data)
    (event,) = pieces.listener.delivered
    assert (event.seq, event.event["room"], event.data) == (7, "lobby", data)


@pytest.mark.parametrize(
    "message", [b"not json", b"[]", b'{"room": "lobby"}', b'{"room": 3, "seq": 1}', b"\xff"]
)
def test_a_malformed_message_is_ignored(pieces, message):
    pieces.bus.received(message)
    assert pieces.listener.delivered == []


def test_publish_goes_to_the_room_channel_only_while_connected(pieces, redis):
    event = OutboundEvent({"type": "message", "room": "lobby", "seq": 1})
    pieces.bus.publish(event)
    assert redis.published == [("t:room:lobby", event.data)]
    pieces.link._lost("commands", redis)
    pieces.bus.publish(event)  # the others catch up from the database
    assert len(redis.published) == 1
    assert pieces.listener.delivered == []  # this process delivers its own (the hub)


# -- access changes (PROTOCOL.md "Losing access") ------------------------------------------


CHANGES = [
    AccessChange.room_changed("secret", (2, 1)),
    AccessChange.room_changed("secret"),
    AccessChange.accounts_changed((7,)),
    AccessChange.session_ended("abc123", 2),
    AccessChange.session_ended("abc123", None),
]


@pytest.mark.parametrize("change", CHANGES)
def test_an_access_change_goes_to_every_process_on_the_access_channel(pieces, redis, change):
    pieces.bus.announce(change)
    ((channel, data),) = redis.published
    assert channel == "t:access"  # one channel for all: not the room's
    assert pieces.listener.changes == []  # the hub applied its own already
    pieces.bus.received(data)
    assert pieces.listener.changes == []  # and its own copy from Redis is not applied again
    note = json.loads(data)
    note["node"] = "another-process"
    pieces.bus.received(json.dumps(note).encode())
    assert pieces.listener.changes == [change]
    assert pieces.listener.delivered == []  # a change is never an event


@pytest.mark.parametrize(
    "change",
    [
        None,
        [],
        {"kind": "room"},
        {"kind": "room", "room": 5},
        {"kind": "room", "room": "x", "users": [True]},
        {"kind": "room", "room": "x", "users": "1"},
        {"kind": "accounts", "users": []},
        {"kind": "session", "session": ""},
        {"kind": "everything"},
    ],
)
def test_a_malformed_access_change_is_ignored(pieces, change):
    note = {"type": "access_change", "node": "another-process", "change": change}
    pieces.bus.received(json.dumps(note).encode())
    assert pieces.listener.changes == [] and pieces.listener.delivered == []


def test_changes_announced_while_redis_is_away_are_published_when_it_is_back(pieces, redis):
    pieces.link._lost("commands", redis)
    for n in range(1005):
        pieces.bus.announce(AccessChange.room_changed(f"room-{n}"))
    assert redis.published == []
    pieces.link._ready("commands", redis)
    rooms = [json.loads(data)["change"]["room"] for _channel, data in redis.published]
    assert rooms == [f"room-{n}" for n in range(5, 1005)]  # bounded: the oldest dropped
    pieces.bus.announce(AccessChange.room_changed("after"))
    assert json.loads(redis.published[-1][1])["change"]["room"] == "after"


def test_shared_users_are_a_timestamped_field_and_a_note_on_the_room_channel(pieces, redis, wall):
    pieces.presence.share("lobby", ["alice"])
    node = pieces.link.node
    assert json.loads(redis.hashes["t:presence:lobby"][node]) == {
        "users": ["alice"],
        "at": wall.now,
    }
    assert redis.expires["t:presence:lobby"] == PRESENCE_TTL * 4
    channel, note = redis.published[-1]
    assert channel == "t:room:lobby"
    assert json.loads(note) == {"type": PRESENCE_SYNC, "room": "lobby", "node": node}
    pieces.presence.share("lobby", [])
    assert node not in redis.hashes["t:presence:lobby"]
    assert len(redis.published) == 2


def test_remote_users_are_read_fresh_fields_of_other_nodes_only(pieces, redis, wall):
    pieces.presence.watch("lobby")
    node = pieces.link.node
    redis.hashes["t:presence:lobby"] = {
        node: json.dumps({"users": ["me"], "at": wall.now}),
        "b": json.dumps({"users": ["bob", 5], "at": wall.now - 1}),
        "c": json.dumps({"users": ["carol"], "at": wall.now - PRESENCE_TTL - 1}),
        "d": "garbage",
        "e": json.dumps({"at": wall.now}),
    }
    note = json.dumps({"type": PRESENCE_SYNC, "room": "lobby", "node": "b"}).encode()
    pieces.bus.received(note)  # another process announced a change
    assert pieces.listener.remote[-1] == ("lobby", frozenset({"bob"}))
    reads = len(pieces.listener.remote)
    own = json.dumps({"type": PRESENCE_SYNC, "room": "lobby", "node": node}).encode()
    pieces.bus.received(own)
    assert len(pieces.listener.remote) == reads  # its own note is not read back
    assert pieces.listener.delivered == []  # notes are never events


def test_watching_reads_at_once_and_forgetting_leaves_the_room(pieces, redis):
    redis.hashes["t:presence:lobby"] = {"b": json.dumps({"users": ["bob"], "at": 1e12})}
    pieces.presence.watch("lobby")
    assert pieces.listener.remote == [("lobby", frozenset({"bob"}))]
    pieces.presence.share("lobby", ["alice"])
    pieces.presence.forget("lobby")
    assert pieces.link.node not in redis.hashes["t:presence:lobby"]
    note = json.dumps({"type": PRESENCE_SYNC, "room": "lobby", "node": "b"}).encode()
    pieces.bus.received(note)
    assert len(pieces.listener.remote) == 1  # not watched any more: not read


def test_fields_are_rewritten_by_the_heartbeat_and_removed_at_stop(pieces, redis, wall, clock):
    pieces.presence.share("lobby", ["alice"])
    pieces.presence.watch("lobby")
    published = len(redis.published)
    wall.now += PRESENCE_REFRESH
    clock.advance(PRESENCE_REFRESH)
    field = json.loads(redis.hashes["t:presence:lobby"][pieces.link.node])
    assert field["at"] == wall.now  # rewritten before it expires
    assert len(redis.published) == published  # a heartbeat announces nothing
    fired = []
    pieces.presence.stop().addCallback(fired.append)
    assert fired and redis.hashes["t:presence:lobby"] == {}
    clock.advance(PRESENCE_REFRESH * 3)
    assert redis.hashes["t:presence:lobby"] == {}  # the heartbeat stopped with it


def test_the_send_counter_counts_in_windows_that_expire_with_them(pieces, redis):
    counter = RedisSendCounter(pieces.link)
    totals = []
    counter.count(7, 100, 10.0, 1).addCallback(totals.append)
    counter.count(7, 100, 10.0, 1).addCallback(totals.append)
    counter.count(7, 100, 10.0, -1).addCallback(totals.append)
    assert totals == [1, 2, 1]
    assert redis.expires == {"t:rate:7:100": 11}
    pieces.link._lost("commands", redis)
    assert counter.count(7, 100, 10.0, 1) is None  # the local bucket decides alone


def test_the_shared_limit_counts_sends_made_by_other_processes(pieces, redis, wall, clock):
    limit = RateLimit(3, 10.0)
    limiter = SharedRateLimiter(limit, RedisSendCounter(pieces.link), clock.seconds, wall)
    window = int(wall.now // 10)
    redis.counters[f"t:rate:7:{window}"] = 1  # one send in another process
    assert limiter.allow(7)  # learns the total of 2 from Redis
    assert limiter.allow(7)
    assert not limiter.allow(7)  # 3 in all processes
    assert limiter.retry_after(7) == pytest.approx((window + 1) * 10 - wall.now, abs=0.1)
    assert limiter.allow(8)  # another user


def test_the_service_builds_local_or_redis_pieces_from_the_settings(clock):
    from chat.live.service import LiveService

    settings = SimpleNamespace(
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3"}},
        CHAT_RATE_LIMIT=RateLimit(20, 10.0),
        CHAT_MAX_MESSAGE_CHARS=4000,
        CHAT_REDIS_PREFIX="t",
        REDIS_URL=None,
    )
    local = LiveService.from_settings(clock, settings)
    assert isinstance(local.bus, LocalBus) and isinstance(local.presence, LocalPresenceStore)
    assert type(local.hub.rate_limiter) is RateLimiter
    assert local.hub.bus is local.bus and local.hub.presence is local.presence

    settings.REDIS_URL = "redis://127.0.0.1:6379/0"
    shared = LiveService.from_settings(clock, settings)
    assert isinstance(shared.bus, RedisEventBus)
    assert isinstance(shared.presence, RedisPresenceStore)
    limiter = shared.hub.rate_limiter
    assert isinstance(limiter, SharedRateLimiter)
    assert limiter.counter.link is shared.bus.link is shared.presence.link
    assert shared.bus.presence_note == shared.presence.note
