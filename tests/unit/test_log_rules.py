"""The moderation rules of a write inside the append transaction (chat/log_rules.py):
mutes (``forbidden`` + ``retry_after``), slow mode (``rate_limited`` + ``retry_after``,
``LastPost``), idempotent resends, the audit of a moderator's deletion, the query cost."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chat import log
from chat.live.records import ErrorCode, SendRequest, WriteKind
from chat.models import LastPost, ModerationAction, Mute, Room

pytestmark = pytest.mark.django_db


def send(user, body="hi", client_id=None, room="lobby", **fields) -> SendRequest:
    return SendRequest(room, user.id, user.username, body, client_id, **fields)


def append(*requests):
    return log.append_events(list(requests))


def slow(room, seconds):
    # update_fields: a plain save() would write the stale last_seq of this instance.
    room.slow_mode_seconds = seconds
    room.save(update_fields=["slow_mode_seconds"])


def mute(room, user, minutes=10):
    return Mute.objects.create(
        room=room, user=user, until=timezone.now() + timedelta(minutes=minutes)
    )


def test_a_muted_user_may_not_send_edit_or_react(lobby, alice, bob):
    (first,) = append(send(bob, "before"))
    mute(lobby, bob, minutes=10)
    results = append(
        send(bob, "during"),
        send(bob, "edit", kind=WriteKind.EDIT, target=first.seq),
        send(bob, "", kind=WriteKind.REACT, target=first.seq, emoji="👍", op="add"),
        send(alice, "others still talk"),
    )
    for result in results[:3]:
        assert result.error == ErrorCode.FORBIDDEN
        assert 590 <= result.retry_after <= 600
        assert "muted" in result.detail
    assert results[3].error is None and results[3].seq == first.seq + 1
    assert Room.objects.get(pk=lobby.pk).last_seq == first.seq + 1  # nothing else appended


def test_a_muted_user_may_delete_their_own_message(lobby, bob):
    (first,) = append(send(bob, "oops"))
    mute(lobby, bob)
    (deleted,) = append(send(bob, "", kind=WriteKind.DELETE, target=first.seq))
    assert deleted.error is None and deleted.event["type"] == "deleted"
    assert not ModerationAction.objects.exists()  # one's own: no moderation


def test_a_mute_that_ended_or_in_another_room_does_not_hold(lobby, bob):
    other = Room.objects.create(slug="other", name="Other")
    Mute.objects.create(room=lobby, user=bob, until=timezone.now() - timedelta(seconds=1))
    mute(other, bob)
    results = append(send(bob), send(bob, room="other"))
    assert results[0].error is None
    assert results[1].error == ErrorCode.FORBIDDEN


def test_a_resend_gets_its_seq_even_when_muted_since(lobby, bob):
    (first,) = append(send(bob, "hello", client_id="c-1"))
    mute(lobby, bob)
    again, fresh = append(send(bob, "hello", client_id="c-1"), send(bob, "new", client_id="c-2"))
    assert again.error is None and again.seq == first.seq and not again.created
    assert fresh.error == ErrorCode.FORBIDDEN


def test_slow_mode_lets_one_message_through_per_interval(lobby, alice, bob):
    slow(lobby, 30)
    first, second, other = append(send(bob, "one"), send(bob, "two"), send(alice, "mine"))
    assert first.error is None and other.error is None
    assert second.error == ErrorCode.RATE_LIMITED and second.retry_after == 30
    assert "Slow mode" in second.detail
    (later,) = append(send(bob, "three"))
    assert later.error == ErrorCode.RATE_LIMITED and 1 <= later.retry_after <= 30
    # Once the interval has passed, the next one goes through.
    LastPost.objects.filter(room=lobby, user=bob).update(at=timezone.now() - timedelta(seconds=31))
    (after,) = append(send(bob, "four"))
    assert after.error is None


def test_slow_mode_spares_moderators_staff_and_non_sends(lobby, alice, bob, mallory):
    slow(lobby, 60)
    lobby.moderators.add(alice)
    mallory.is_staff = True
    mallory.save()
    results = append(*(send(u, f"{u.username} {i}") for u in (alice, mallory) for i in range(3)))
    assert [r.error for r in results] == [None] * 6
    (mine,) = append(send(bob, "one"))
    edit, react = append(
        send(bob, "edited", kind=WriteKind.EDIT, target=mine.seq),
        send(bob, "", kind=WriteKind.REACT, target=mine.seq, emoji="👍", op="add"),
    )
    assert edit.error is None and react.error is None
    assert set(LastPost.objects.values_list("user_id", flat=True)) == {bob.id}


def test_slow_mode_off_writes_no_last_post_and_a_refused_send_uses_no_slot(lobby, bob):
    append(send(bob, "free"), send(bob, "talk"))
    assert not LastPost.objects.exists()
    slow(lobby, 10)
    (refused,) = append(send(bob, "bad reply", reply_to=999))
    assert refused.error == ErrorCode.BAD_REQUEST
    assert not LastPost.objects.exists()
    (ok,) = append(send(bob, "good"))
    assert ok.error is None and LastPost.objects.filter(user=bob).count() == 1


def test_a_moderators_deletion_of_anothers_message_is_audited(lobby, alice, bob):
    lobby.moderators.add(alice)
    (message,) = append(send(bob, "spam"))
    (deleted,) = append(send(alice, "", kind=WriteKind.DELETE, target=message.seq))
    assert deleted.event["user"] == "alice"
    (row,) = ModerationAction.objects.all()
    assert (row.action, row.actor, row.target_user, row.target_seq, row.room) == (
        "delete",
        alice,
        bob,
        message.seq,
        lobby,
    )


def test_a_non_moderator_may_not_delete_anothers_message(lobby, alice, bob):
    (message,) = append(send(bob, "mine"))
    (refused,) = append(send(alice, "", kind=WriteKind.DELETE, target=message.seq))
    assert refused.error == ErrorCode.FORBIDDEN
    assert not ModerationAction.objects.exists()


def test_the_rules_cost_one_query_per_batch_not_per_write(lobby, django_user_model):
    users = [django_user_model.objects.create_user(f"u{i}") for i in range(20)]
    for user in users[:5]:
        mute(lobby, user)
    requests = [send(u, f"m{i}") for i in range(3) for u in users]
    with CaptureQueriesContext(connection) as queries:
        results = append(*requests)
    mutes = [q for q in queries if "chat_mute" in q["sql"]]
    assert len(mutes) == 2  # who is muted (plain SQL), then the ends of those found
    assert sum(r.error == ErrorCode.FORBIDDEN for r in results) == 15
    # Slow mode on: one more query for moderators' staff, one for the rooms' moderators,
    # one for LastPost, one upsert; still not per write.
    slow(lobby, 5)
    requests = [send(u, f"n{i}") for i in range(3) for u in users[5:]]
    with CaptureQueriesContext(connection) as queries:
        results = append(*requests)
    last_posts = [q for q in queries if "chat_lastpost" in q["sql"]]
    assert len(last_posts) == 2  # the read and the upsert
    assert sum(r.error is None for r in results) == 15  # one each
    assert sum(r.error == ErrorCode.RATE_LIMITED for r in results) == 30
