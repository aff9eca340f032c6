"""chat/webhooks/db.py: leases between owners, durable positions, failures (the ORM side
the deliverer runs on the store's threads). Runs on PostgreSQL too with DATABASE_URL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from chat import log
from chat.live.records import SendRequest
from chat.models import Room, Webhook
from chat.webhooks import db

pytestmark = pytest.mark.django_db


def say(room: Room, user, *bodies: str) -> None:
    log.append_events([SendRequest(room.slug, user.id, user.username, b, None) for b in bodies])


@pytest.fixture
def hook(lobby):
    return Webhook.objects.create(room=lobby, url="https://example.com/h", secret="k")


def test_one_owner_holds_a_lease_the_other_waits(hook):
    assert db.claim("a", 30) == [hook.id]
    assert db.claim("b", 30) == []
    assert db.claim("a", 30) == [hook.id]  # renewed, still a's
    hook.refresh_from_db()
    assert hook.lease_owner == "a" and hook.lease_until > timezone.now() + timedelta(seconds=25)


def test_an_expired_lease_is_taken_over_and_the_old_owner_is_fenced(hook, lobby, alice):
    say(lobby, alice, "one", "two")
    assert db.claim("a", 30) == [hook.id]
    # a was killed: its lease runs out.
    Webhook.objects.filter(id=hook.id).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert db.claim("b", 30) == [hook.id]
    assert not db.advance(hook.id, "a", lobby.id, 1)  # a may no longer move the position
    assert db.pending(hook.id, "a") is None
    assert db.advance(hook.id, "b", lobby.id, 1)
    assert db.positions(hook.id) == {lobby.id: 1}
    assert db.claim("a", 30) == []


def test_a_released_lease_is_free_at_once(hook):
    db.claim("a", 30)
    assert db.release("a") == 1
    assert db.claim("b", 30) == [hook.id]


def test_inactive_webhooks_are_not_claimed(hook):
    Webhook.objects.filter(id=hook.id).update(is_active=False)
    assert db.claim("a", 30) == []


def test_a_new_webhook_starts_at_the_rooms_last_seq(lobby, secret, alice):
    say(lobby, alice, "old", "older")
    everywhere = Webhook.objects.create(url="https://example.com/h", secret="k")
    one = Webhook.objects.create(room=lobby, url="https://example.com/h", secret="k")
    assert db.positions(one.id) == {lobby.id: 2}
    assert db.positions(everywhere.id) == {lobby.id: 2}  # secret has no events yet
    db.claim("a", 30)
    config, rooms, scope = db.pending(everywhere.id, "a")
    assert rooms == [] and scope is None
    say(lobby, alice, "new")
    say(secret, alice, "hidden")
    config, rooms, scope = db.pending(everywhere.id, "a")
    assert [(r.slug, r.position) for r in rooms] == [("lobby", 2), ("secret", 0)]
    assert config.url == "https://example.com/h" and not config.failing
    _, rooms, scope = db.pending(one.id, "a")
    assert [(r.slug, r.position) for r in rooms] == [("lobby", 2)] and scope == "lobby"


def test_moving_a_webhook_to_another_room_starts_there_at_its_last_seq(hook, secret, alice):
    say(secret, alice, "a", "b", "c")
    hook.room = secret
    hook.save()
    assert db.positions(hook.id)[secret.id] == 3


def test_a_position_never_moves_back(hook, lobby, alice):
    say(lobby, alice, "1", "2", "3")
    db.claim("a", 30)
    assert db.advance(hook.id, "a", lobby.id, 3)
    assert db.advance(hook.id, "a", lobby.id, 2)  # a late write of an older one
    assert db.positions(hook.id) == {lobby.id: 3}
    assert db.pending(hook.id, "a")[1] == []


def test_failures_are_remembered_and_24_hours_of_them_disable(hook):
    db.claim("a", 30)
    assert not db.record_failure(hook.id, "a", "answered 500")
    hook.refresh_from_db()
    first = hook.failing_since
    assert first is not None and "answered 500" in hook.last_error
    assert not db.record_failure(hook.id, "a", "answered 502")
    hook.refresh_from_db()
    assert hook.failing_since == first  # the clock runs from the first failure
    Webhook.objects.filter(id=hook.id).update(failing_since=first - timedelta(hours=24))
    assert db.record_failure(hook.id, "a", "answered 503")
    hook.refresh_from_db()
    assert not hook.is_active and "24 hours" in hook.disabled_reason
    assert "answered 503" in hook.disabled_reason and hook.lease_owner == ""
    assert db.claim("a", 30) == []
    assert db.reenable(Webhook.objects.filter(id=hook.id)) == 1
    hook.refresh_from_db()
    assert hook.is_active and hook.failing_since is None and hook.disabled_reason == ""


def test_a_success_ends_the_failing(hook):
    db.claim("a", 30)
    db.record_failure(hook.id, "a", "x")
    db.record_success(hook.id)
    hook.refresh_from_db()
    assert hook.failing_since is None
    assert db.pending(hook.id, "a")[0].failing is False


def test_the_bot_user_is_the_reply_author(hook, alice):
    hook.bot_user = alice
    hook.save()
    db.claim("a", 30)
    assert db.pending(hook.id, "a")[0].bot.username == "alice"
    alice.is_active = False
    alice.save()
    assert db.pending(hook.id, "a")[0].bot is None  # a deactivated bot does not reply


def test_the_config_is_read_again_while_held(hook):
    db.claim("a", 30)
    Webhook.objects.filter(id=hook.id).update(url="https://example.org/fixed", secret="new")
    config = db.config(hook.id, "a")
    assert (config.url, config.secret) == ("https://example.org/fixed", "new")
    assert db.config(hook.id, "b") is None
