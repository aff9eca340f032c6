"""Read positions between processes: the ``<prefix>:reads`` channel of the Redis bus
(chat/live/redis_bus.py), parsed defensively, and the local bus's nothing-to-tell; and
LiveService's bus listener, which hands reads to the read tracker and access changes to
the hub and the inbox."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from test_bus import FakePubSub, FakeRedis, Listener
from twisted.internet.testing import MemoryReactorClock

from chat.live.bus import LocalBus
from chat.live.publish import AccessChange
from chat.live.records import ReadNotice
from chat.live.redis_bus import RedisEventBus, read_notice_from_json
from chat.live.redis_link import RedisLink
from chat.live.service import BusListener

NOTICE = ReadNotice(user_id=7, room="lobby", read_seq=41, unread=2, mentions=1, through=43)


class ReadListener(Listener):
    def __init__(self) -> None:
        super().__init__()
        self.reads: list[ReadNotice] = []

    def read_moved(self, notice: ReadNotice) -> None:
        self.reads.append(notice)


@pytest.fixture
def wired():
    clock = MemoryReactorClock()
    link = RedisLink(clock, "redis://127.0.0.1:6379/2", prefix="t")
    bus = RedisEventBus(link, presence_note=lambda slug, node: None)
    listener = ReadListener()
    bus.start(listener)
    redis = FakeRedis()
    link._ready("commands", redis)
    return SimpleNamespace(link=link, bus=bus, listener=listener, redis=redis)


def test_every_process_subscribes_to_the_reads_channel(wired):
    pubsub = FakePubSub()
    wired.link._ready("pubsub", pubsub)
    assert {"t:access", "t:reads"} <= pubsub.channels


def test_a_read_goes_to_the_others_on_the_reads_channel_and_not_back_to_itself(wired):
    wired.bus.announce_read(NOTICE)
    ((channel, data),) = wired.redis.published
    assert channel == "t:reads"
    wired.bus.received(data)
    assert wired.listener.reads == []  # its own: told here already
    note = json.loads(data)
    note["node"] = "another-process"
    wired.bus.received(json.dumps(note).encode())
    assert wired.listener.reads == [NOTICE]
    assert wired.listener.delivered == [] and wired.listener.changes == []


def test_a_read_announced_while_redis_is_away_is_dropped(wired):
    wired.link._lost("commands", wired.redis)
    wired.bus.announce_read(NOTICE)
    wired.link._ready("commands", wired.redis)
    assert wired.redis.published == []


@pytest.mark.parametrize(
    "notice",
    [
        None,
        [],
        "lobby",
        {"room": "lobby"},
        {"room": 5, "user_id": 1, "read_seq": 1, "unread": 0, "mentions": 0, "through": 1},
        {"room": "x", "user_id": True, "read_seq": 1, "unread": 0, "mentions": 0, "through": 1},
        {"room": "lobby", "user_id": 1, "read_seq": -1, "unread": 0, "mentions": 0, "through": 1},
        {"room": "lobby", "user_id": 1, "read_seq": 1.5, "unread": 0, "mentions": 0, "through": 1},
        {"room": "lobby", "user_id": 1, "read_seq": "1", "unread": 0, "mentions": 0, "through": 1},
        {"room": "lobby", "user_id": 1, "read_seq": 1, "unread": 0, "mentions": 0},
    ],
)
def test_a_malformed_read_notice_is_dropped_and_logged(wired, notice, caplog):
    note = {"type": "read_moved", "node": "another-process", "notice": notice}
    wired.bus.received(json.dumps(note).encode())
    assert wired.listener.reads == [] and wired.listener.delivered == []
    assert "malformed read notice" in caplog.text
    assert read_notice_from_json(notice) is None


def test_a_read_note_without_a_node_is_dropped(wired):
    note = {"type": "read_moved", "notice": {"room": "lobby"}}
    wired.bus.received(json.dumps(note).encode())
    assert wired.listener.reads == []


def test_the_local_bus_has_no_one_to_tell():
    assert LocalBus().announce_read(NOTICE) is None


def test_the_service_listener_hands_each_thing_to_its_owner():
    heard: list = []
    hub = SimpleNamespace(
        deliver=lambda e: heard.append(("deliver", e)),
        bus_reconnected=lambda: heard.append(("reconnected",)),
        access_changed=lambda c: heard.append(("hub", c)),
    )
    reads = SimpleNamespace(
        read_moved=lambda n: heard.append(("reads", n)),
        bus_reconnected=lambda: heard.append(("reads reconnected",)),
    )
    inbox = SimpleNamespace(
        access_changed=lambda c: heard.append(("inbox", c)),
        bus_reconnected=lambda: heard.append(("inbox reconnected",)),
    )
    listener = BusListener(hub, reads, inbox)
    change = AccessChange.room_changed("lobby", (7,))
    listener.read_moved(NOTICE)
    listener.access_changed(change)
    listener.deliver("e")
    listener.bus_reconnected()
    assert heard == [
        ("reads", NOTICE),
        ("hub", change),
        ("inbox", change),
        ("deliver", "e"),
        # The known positions are dropped before anything is re-read.
        ("reads reconnected",),
        ("reconnected",),
        ("inbox reconnected",),
    ]
