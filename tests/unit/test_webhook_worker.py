"""The deliverer's logic on a fake clock (chat/webhooks/deliverer.py): one event at a
time, the next only after a 2xx, the position written before it, retries 1 s then 2 s
apart, no delivery on a short lease, a reply posted once through the hub, the bot's own
messages passed over. The store runs the real chat/webhooks/db.py functions at once in
this thread; the network is the test's (the real one: tests/integration/test_webhooks.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import pytest
from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock

from chat import log
from chat.live.records import SendRequest, SendResult
from chat.models import Webhook
from chat.webhooks import db, deliverer, signing
from chat.webhooks.sender import Outcome

pytestmark = pytest.mark.django_db


class InlineStore:
    """The store's ``run``, at once in this thread (the functions are the real ones)."""

    def run(self, fn, *args):
        return defer.maybeDeferred(fn, *args)


class RecordingHub:
    def __init__(self) -> None:
        self.writes: list[tuple] = []

    def submit(self, slug, user, frame):
        self.writes.append((slug, user.username, frame))
        return defer.succeed(SendResult(seq=99, event={"seq": 99}))


@dataclass
class Post:
    url: str
    headers: dict
    payload: bytes
    answer: defer.Deferred

    @property
    def seq(self) -> int:
        return int(self.headers["X-Parley-Delivery"].rsplit(":", 1)[1])


@pytest.fixture
def posts(monkeypatch):
    made: list[Post] = []

    def post(reactor, url, headers, payload, **kwargs):
        made.append(Post(url, headers, payload, defer.Deferred()))
        return made[-1].answer

    monkeypatch.setattr(deliverer.sender, "post", post)
    return made


@pytest.fixture
def world(lobby, alice, bob, posts):
    clock = MemoryReactorClock()
    hub = RecordingHub()
    hook = Webhook.objects.create(room=lobby, url="http://127.0.0.1:9/h", secret="k", bot_user=bob)
    service = deliverer.WebhookService(
        clock, InlineStore(), hub, allow_private=True, timeout=10, lease_seconds=30
    )
    return SimpleNamespace(clock=clock, hub=hub, hook=hook, service=service)


def say(room, user, *bodies):
    log.append_events([SendRequest(room.slug, user.id, user.username, b, None) for b in bodies])


def test_events_go_one_at_a_time_and_failures_are_retried_with_backoff(world, posts, lobby, alice):
    clock, hook, service = world.clock, world.hook, world.service
    say(lobby, alice, "one", "two")
    service.claim()
    assert [p.seq for p in posts] == [1]
    assert signing.verify("k", posts[0].payload, posts[0].headers["X-Parley-Signature"])
    posts[0].answer.callback(Outcome(status=500))
    clock.advance(0.99)
    assert len(posts) == 1  # 1 s after the first failure
    clock.advance(0.02)
    assert [p.seq for p in posts] == [1, 1]
    posts[1].answer.callback(Outcome(error="no complete answer within 10 s"))
    clock.advance(1.9)
    assert len(posts) == 2  # then 2 s
    clock.advance(0.2)
    assert [p.seq for p in posts] == [1, 1, 1]
    hook.refresh_from_db()
    assert hook.failing_since is not None and "within 10 s" in hook.last_error
    posts[2].answer.callback(Outcome(status=204, complete=True))
    assert db.positions(hook.id) == {lobby.id: 1}  # written before the next is sent
    assert [p.seq for p in posts] == [1, 1, 1, 2]
    hook.refresh_from_db()
    assert hook.failing_since is None
    posts[3].answer.callback(Outcome(status=200, complete=True))
    assert db.positions(hook.id) == {lobby.id: 2}
    service.stop()


def test_a_reply_is_posted_as_the_bot_and_its_own_message_is_passed_over(
    world, posts, lobby, alice, bob
):
    hub, hook, service = world.hub, world.hook, world.service
    say(lobby, alice, "ping")
    service.claim()
    posts[0].answer.callback(Outcome(200, b'{"body": "pong"}', True))
    assert hub.writes == [
        ("lobby", "bob", {"type": "send", "body": "pong", "client_id": f"webhook-{hook.id}-1"})
    ]
    say(lobby, bob, "pong")  # what the hub would have appended
    service.wake("lobby")
    assert len(posts) == 1  # the bot is not sent its own message
    assert db.positions(hook.id) == {lobby.id: 2}
    service.stop()


def test_no_delivery_starts_without_enough_lease_left(world, posts, lobby, alice):
    clock, service = world.clock, world.service
    say(lobby, alice, "one")
    service.claim()
    posts[0].answer.callback(Outcome(status=500))
    service._lease_end = clock.seconds() + 5  # less than the 10 s deadline + 1 s
    clock.advance(1.5)
    clock.advance(3)
    assert len(posts) == 1
    service.claim()  # renewed
    clock.advance(0.5)
    assert len(posts) == 2
    service.stop()


def test_a_lost_lease_stops_the_worker(world, posts, lobby, alice):
    hook, service = world.hook, world.service
    say(lobby, alice, "one")
    service.claim()
    Webhook.objects.filter(id=hook.id).update(lease_owner="someone-else")
    posts[0].answer.callback(Outcome(status=200, complete=True))
    assert db.positions(hook.id).get(lobby.id, 0) == 0  # fenced: not written
    assert service.workers == {}


def test_idle_workers_are_woken_by_their_rooms_events_only(world, posts, lobby, secret, alice):
    service = world.service
    service.claim()
    assert posts == []
    say(lobby, alice, "now")
    service.wake("secret")  # another room: nothing
    assert posts == []
    service.wake("lobby")
    assert [p.seq for p in posts] == [1]
    service.stop()


def test_an_idle_worker_looks_again_after_the_poll_interval(world, posts, lobby, alice):
    clock, service = world.clock, world.service
    service.claim()
    say(lobby, alice, "from another process")
    clock.advance(deliverer.POLL_SECONDS + 0.01)
    assert [p.seq for p in posts] == [1]
    service.stop()
