"""The Python API (chat/parley.py), its ``event_appended`` signal, the reactorless Redis
notes (chat/live/redis_publish.py) and ``manage.py parley_send``: PROTOCOL.md "Python
API for Django code".

No hub runs here, so writes take chat/writes.py's way through chat.log; two tests install
a recording hub door to see that the hub's way is taken when there is one (and not inside
a caller's transaction). The Redis tests use the machine's Redis, on a prefix of their own.
"""

from __future__ import annotations

import io
import json
import secrets
import threading
import time

import pytest
import redis
from django.core.management import CommandError, call_command
from django.db import OperationalError, connection, transaction

from chat import log, parley, services
from chat.live import publish, redis_publish
from chat.live.events import OutboundEvent, encode
from chat.live.publish import AccessChange
from chat.live.records import ErrorCode, ReadNotice, SendResult, UserInfo
from chat.models import Message, ReadPosition
from chat.signals import event_appended

pytestmark = pytest.mark.django_db

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def heard():
    """The events ``event_appended`` delivered, in order."""
    got: list[dict] = []

    def receiver(sender, event, **kwargs):
        got.append(event)

    event_appended.connect(receiver, dispatch_uid="test_parley_api")
    yield got
    event_appended.disconnect(dispatch_uid="test_parley_api")


# -- each function ----------------------------------------------------------------------


def test_send_returns_the_committed_event(lobby, alice):
    event = parley.send("lobby", alice, "hi **there**", client_id="c-1")
    assert event["type"] == "message" and event["room"] == "lobby" and event["seq"] == 1
    assert event["user"] == "alice" and event["body"] == "hi **there**"
    assert event["html"] == "hi <strong>there</strong>" and event["client_id"] == "c-1"
    row = Message.objects.get(room=lobby, seq=1)
    assert row.body == "hi **there**" and row.user == alice
    # Sending in a public room joins it, as on the wire.
    assert lobby.members.filter(pk=alice.pk).exists()


def test_user_by_name_and_room_as_object(lobby, alice):
    event = parley.send(lobby, "alice", "by name")
    assert event["user"] == "alice" and event["seq"] == 1


def test_a_reply(lobby, alice, bob):
    first = parley.send("lobby", alice, "question")
    answer = parley.send("lobby", bob, "answer", reply_to=first["seq"])
    assert answer["reply_to"] == first["seq"]


def test_edit_delete_react(lobby, alice, bob):
    sent = parley.send("lobby", alice, "draft @bob")
    edited = parley.edit("lobby", alice, sent["seq"], "final @bob")
    assert edited["type"] == "edited" and edited["target"] == sent["seq"]
    assert edited["body"] == "final @bob" and edited["mentions"] == ["bob"]
    reacted = parley.react("lobby", bob, sent["seq"], "👍")
    assert reacted["type"] == "reaction" and reacted["op"] == "add"
    assert parley.react("lobby", bob, sent["seq"], "👍") is None  # already in effect
    removed = parley.react("lobby", bob, sent["seq"], "👍", op="remove")
    assert removed["op"] == "remove"
    deleted = parley.delete("lobby", alice, sent["seq"])
    assert deleted["type"] == "deleted" and deleted["user"] == "alice"
    assert Message.objects.get(room=lobby, seq=sent["seq"]).deleted_at is not None
    assert [e["seq"] for e in (sent, edited, reacted, removed, deleted)] == [1, 2, 3, 4, 5]


def test_mark_read_moves_forward_only_and_clamps(lobby, alice, bob):
    lobby.members.add(bob)
    for text in ("one", "two @bob", "three"):
        parley.send("lobby", alice, text)
    read = parley.mark_read("lobby", bob, 1)
    assert read == {"room": "lobby", "read_seq": 1, "unread": 2, "mentions": 1}
    assert parley.mark_read("lobby", bob, 0)["read_seq"] == 1  # never back
    assert parley.mark_read("lobby", "bob", 99)["read_seq"] == 3  # clamped to last_seq
    assert ReadPosition.objects.get(room=lobby, user=bob).read_seq == 3


@pytest.mark.django_db(transaction=True)
def test_mark_read_announces_a_move_after_the_commit(lobby, alice, bob, monkeypatch):
    lobby.members.add(bob)
    parley.send("lobby", alice, "one")
    told: list[ReadNotice] = []
    monkeypatch.setattr(publish, "announce_read", told.append)
    with transaction.atomic():
        parley.mark_read("lobby", bob, 1)
        assert told == []
    parley.mark_read("lobby", bob, 1)  # no move: no notice
    assert [(n.user_id, n.room, n.read_seq, n.unread) for n in told] == [(bob.pk, "lobby", 1, 0)]


# -- idempotence ------------------------------------------------------------------------


def test_a_repeated_client_id_returns_the_original_event(lobby, alice):
    first = parley.send("lobby", alice, "once", client_id="ci-812")
    again = parley.send("lobby", alice, "once more?", client_id="ci-812")
    assert again["seq"] == first["seq"] and again["body"] == "once"
    assert Message.objects.filter(room=lobby).count() == 1


def test_idempotent_edits_deletes_and_reactions(lobby, alice):
    sent = parley.send("lobby", alice, "x")
    e1 = parley.edit("lobby", alice, sent["seq"], "y", client_id="e")
    e2 = parley.edit("lobby", alice, sent["seq"], "z", client_id="e")
    assert e1["seq"] == e2["seq"] and e2["type"] == "edited"
    d1 = parley.delete("lobby", alice, sent["seq"], client_id="d")
    d2 = parley.delete("lobby", alice, sent["seq"], client_id="d")
    assert d1["seq"] == d2["seq"] and d2["type"] == "deleted"
    assert Message.objects.filter(room=lobby).count() == 3


@pytest.mark.django_db(transaction=True)
def test_the_returned_event_is_the_callers_own_copy(lobby, alice, heard):
    event = parley.send("lobby", alice, "mine")
    event["body"] = "changed"
    assert heard[0]["body"] == "mine"


# -- refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (lambda: parley.send("nowhere", "alice", "x"), "not_found"),
        (lambda: parley.send("lobby", "nobody", "x"), "not_found"),
        (lambda: parley.send("BAD slug!", "alice", "x"), "not_found"),
        (lambda: parley.send(42, "alice", "x"), "not_found"),
        (lambda: parley.send("secret", "bob", "x"), "forbidden"),
        (lambda: parley.send("attic", "alice", "x"), "forbidden"),
        (lambda: parley.send("lobby", "alice", "   "), "bad_request"),
        (lambda: parley.send("lobby", "alice", None), "bad_request"),
        (lambda: parley.send("lobby", "alice", "x" * 4001), "too_large"),
        (lambda: parley.send("lobby", "alice", "\ud800"), "bad_request"),
        (lambda: parley.send("lobby", "alice", "nul\x00"), "bad_request"),
        (lambda: parley.send("lobby", "alice", "x", client_id="c" * 65), "bad_request"),
        (lambda: parley.send("lobby", "alice", "x", reply_to=0), "bad_request"),
        (lambda: parley.send("lobby", "alice", "x", reply_to=999), "bad_request"),
        (lambda: parley.edit("lobby", "alice", True, "x"), "bad_request"),
        (lambda: parley.react("lobby", "alice", 1, "not an emoji"), "bad_request"),
        (lambda: parley.react("lobby", "alice", 1, "👍", op="toggle"), "bad_request"),
        (lambda: parley.mark_read("lobby", "alice", -1), "bad_request"),
        (lambda: parley.mark_read("lobby", "alice", 1.0), "bad_request"),
        (lambda: parley.mark_read("secret", "bob", 1), "forbidden"),
        (lambda: parley.mark_read("nowhere", "alice", 1), "not_found"),
    ],
)
def test_refusals_raise_with_the_protocols_code(rooms, alice, bob, call, code):
    before = Message.objects.count()
    with pytest.raises(parley.Refused) as refused:
        call()
    assert refused.value.code == code and refused.value.detail
    assert not isinstance(refused.value, parley.Unavailable)
    assert Message.objects.count() == before


def test_a_non_member_has_no_read_position(lobby, alice):
    with pytest.raises(parley.Refused) as refused:
        parley.mark_read("lobby", alice, 0)
    assert refused.value.code == "forbidden"


def test_only_the_author_edits(lobby, alice, bob):
    sent = parley.send("lobby", alice, "mine")
    with pytest.raises(parley.Refused) as refused:
        parley.edit("lobby", bob, sent["seq"], "yours now")
    assert refused.value.code == "forbidden"
    with pytest.raises(parley.Refused):
        parley.delete("lobby", bob, sent["seq"])


def test_an_anonymous_user_may_not_write(lobby):
    from django.contrib.auth.models import AnonymousUser

    with pytest.raises(parley.Refused) as refused:
        parley.send("lobby", AnonymousUser(), "hi")
    assert refused.value.code == "forbidden"


def test_a_database_outage_raises_unavailable(lobby, alice, monkeypatch):
    def down(_requests):
        raise OperationalError("database is locked")

    monkeypatch.setattr(log, "append_events", down)
    with pytest.raises(parley.Unavailable) as refused:
        parley.send("lobby", alice, "hi")
    assert refused.value.code == "unavailable"


# -- the hub's door ---------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_with_a_hub_the_write_goes_through_it(lobby, alice, monkeypatch):
    asked = []

    def hub_submit(slug, user, frame):
        asked.append((slug, user, frame))
        return SendResult(error=ErrorCode.RATE_LIMITED, retry_after=2.5)

    monkeypatch.setattr(publish, "_submit", hub_submit)
    with pytest.raises(parley.Refused) as refused:
        parley.send("lobby", alice, "hi", client_id="c-9")
    assert refused.value.code == "rate_limited" and refused.value.retry_after == 2.5
    assert asked == [
        (
            "lobby",
            UserInfo(alice.pk, "alice"),
            {"type": "send", "body": "hi", "client_id": "c-9", "reply_to": None},
        )
    ]
    assert Message.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_inside_the_callers_transaction_the_write_joins_it(lobby, alice, monkeypatch):
    asked = []
    monkeypatch.setattr(publish, "_submit", lambda *a: asked.append(a))
    published: list[dict] = []
    monkeypatch.setattr(publish, "_sink", published.append)
    monkeypatch.setattr(publish, "_call_from_thread", lambda fn, *a: fn(*a))
    with transaction.atomic():
        event = parley.send("lobby", alice, "in a transaction")
        assert published == []  # not before the commit
    assert asked == [] and published == [event]
    with pytest.raises(RuntimeError), transaction.atomic():
        parley.send("lobby", alice, "rolled back")
        raise RuntimeError
    assert published == [event]
    assert list(Message.objects.values_list("body", flat=True)) == ["in a transaction"]


# -- event_appended ---------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_signal_fires_once_after_the_commit(lobby, alice, heard):
    with transaction.atomic():
        event = parley.send("lobby", alice, "hello", client_id="s-1")
        assert heard == []  # not before the commit
    assert heard == [event]
    parley.send("lobby", alice, "hello", client_id="s-1")  # a repeat appends nothing
    assert len(heard) == 1


@pytest.mark.django_db(transaction=True)
def test_the_signal_is_not_sent_for_a_rollback(lobby, alice, heard):
    with pytest.raises(RuntimeError), transaction.atomic():
        parley.send("lobby", alice, "gone")
        raise RuntimeError
    assert heard == []
    assert Message.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_the_signal_covers_every_door(lobby, alice, heard):
    from chat.live.records import SendRequest

    # The hub's store path: chat/log.py append_events, as chat/live/store.py calls it.
    [stored] = log.append_events([SendRequest("lobby", alice.pk, "alice", "from the store", None)])
    # The admin's delete (chat/services.py).
    row = Message.objects.get(room=lobby, seq=stored.seq)
    deleted = services.delete_message(row.pk, alice.pk)
    assert heard == [stored.event, deleted]
    assert [e["type"] for e in heard] == ["message", "deleted"]


@pytest.mark.django_db(transaction=True)
def test_a_failing_receiver_does_not_stop_the_others(lobby, alice, heard):
    def broken(sender, event, **kwargs):
        raise ValueError("receiver bug")

    event_appended.connect(broken, dispatch_uid="test_parley_api_broken")
    try:
        event = parley.send("lobby", alice, "still fine")
    finally:
        event_appended.disconnect(dispatch_uid="test_parley_api_broken")
    assert heard == [event]


# -- threads ----------------------------------------------------------------------------


def _in_memory_sqlite() -> bool:
    return connection.vendor == "sqlite" and connection.is_in_memory_db()


@pytest.mark.skipif(
    "_in_memory_sqlite()",
    reason="SQLite's shared in-memory test database locks whole tables without waiting; "
    "run this module with DATABASE_URL=postgres://... (a file database waits as it should)",
)
@pytest.mark.django_db(transaction=True)
def test_from_many_threads_each_write_once_in_order(lobby, alice, bob, heard):
    from django.db import connections

    errors: list[BaseException] = []

    def worker(user, n: int) -> None:
        try:
            for i in range(10):
                # Every write sent twice with its client_id: stored once.
                for _ in range(2):
                    parley.send("lobby", user, f"{user}-{n}-{i}", client_id=f"{n}-{i}")
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=worker, args=(user, n))
        for n, user in enumerate([alice, bob, "alice", "bob"])
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    seqs = list(Message.objects.filter(room=lobby).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, 41))
    assert sorted(e["seq"] for e in heard) == seqs


# -- the Redis bus from a process with no reactor ------------------------------------------


@pytest.fixture
def redis_bus(settings):
    """A Redis prefix of this test's own, and a subscriber on its channels."""
    prefix = f"test-parley-{secrets.token_hex(4)}"
    settings.REDIS_URL = REDIS_URL
    settings.CHAT_REDIS_PREFIX = prefix
    redis_publish.reset()
    client = redis.Redis.from_url(REDIS_URL)
    pubsub = client.pubsub()
    pubsub.psubscribe(f"{prefix}:*")
    assert pubsub.get_message(timeout=2)["type"] == "psubscribe"

    def messages(count: int, kind: str) -> list[tuple[str, bytes]]:
        """The next ``count`` notes on the ``kind`` channel(s) (room:..., access, reads)."""
        got = []
        deadline = time.monotonic() + (3 if count else 0.3)
        while time.monotonic() < deadline and (len(got) < count or not count):
            message = pubsub.get_message(timeout=0.1)
            if message and message["type"] == "pmessage":
                channel = message["channel"].decode()
                if channel.startswith(f"{prefix}:{kind}"):
                    got.append((channel, message["data"]))
        return got

    yield prefix, messages
    pubsub.close()
    client.close()
    redis_publish.reset()


@pytest.mark.django_db(transaction=True)
def test_without_a_hub_events_go_on_the_bus_after_the_commit(lobby, alice, bob, redis_bus):
    prefix, messages = redis_bus
    with transaction.atomic():
        event = parley.send("lobby", alice, "from a worker")
        assert messages(0, "") == []  # nothing before the commit
    [(channel, data)] = messages(1, "room:")
    assert channel == f"{prefix}:room:lobby"
    assert data == encode(event)  # the bytes a server would publish (OutboundEvent.data)
    assert OutboundEvent(event).data == data


@pytest.mark.django_db(transaction=True)
def test_without_a_hub_access_changes_and_reads_go_on_the_bus(lobby, alice, bob, redis_bus):
    prefix, messages = redis_bus
    lobby.members.add(bob)  # an access change (chat/signals.py)
    [(channel, data)] = messages(1, "access")
    assert channel == f"{prefix}:access"
    note = json.loads(data)
    assert note["type"] == "access_change" and note["node"] == redis_publish.node()
    assert AccessChange.from_json(note["change"]) == AccessChange.room_changed("lobby", (bob.pk,))
    parley.send("lobby", alice, "read me")
    parley.mark_read("lobby", bob, 1)
    [(channel, data)] = messages(1, "reads")
    assert channel == f"{prefix}:reads"
    assert json.loads(data)["notice"] == {
        "room": "lobby",
        "user_id": bob.pk,
        "read_seq": 1,
        "unread": 0,
        "mentions": 0,
        "through": 1,
    }


def test_the_notes_are_the_ones_the_servers_bus_reads():
    """redis_publish.py writes the formats of redis_bus.py/redis_link.py again (those
    import Twisted): a server's RedisEventBus must take every one of them."""
    from twisted.internet.testing import MemoryReactorClock

    from chat.live.redis_bus import RedisEventBus
    from chat.live.redis_link import RedisLink

    link = RedisLink(MemoryReactorClock(), REDIS_URL, prefix="p")
    assert link.room_channel("lobby") == redis_publish.room_channel("p", "lobby")
    assert link.access_channel == redis_publish.access_channel("p")
    assert link.reads_channel == redis_publish.reads_channel("p")

    class Listener:
        def __init__(self):
            self.got = []

        def deliver(self, event):
            self.got.append(("event", event.event, event.data))

        def access_changed(self, change):
            self.got.append(("access", change))

        def read_moved(self, notice):
            self.got.append(("read", notice))

    bus = RedisEventBus(link, presence_note=lambda *a: None)
    bus.listener = listener = Listener()
    event = {"type": "message", "room": "lobby", "seq": 3, "user": "bob", "body": "é"}
    change = AccessChange.room_changed("lobby", (7,))
    notice = ReadNotice(user_id=7, room="lobby", read_seq=3, unread=0, mentions=0, through=3)
    for data in (
        encode(event),
        redis_publish.access_note(change),
        redis_publish.read_note(notice),
    ):
        bus.received(data)
    assert listener.got == [("event", event, encode(event)), ("access", change), ("read", notice)]


@pytest.mark.django_db(transaction=True)
def test_a_redis_outage_is_logged_and_the_write_stands(lobby, alice, settings, caplog):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    redis_publish.reset()
    try:
        started = time.monotonic()
        event = parley.send("lobby", alice, "still committed")
        assert time.monotonic() - started < 3
    finally:
        redis_publish.reset()
    assert Message.objects.filter(room=lobby, seq=event["seq"]).exists()
    assert "redis publish" in caplog.text


# -- manage.py parley_send ---------------------------------------------------------------


def test_parley_send_prints_the_event(lobby, alice):
    out = io.StringIO()
    call_command("parley_send", "lobby", "alice", "from cron", "--client-id", "cron-1", stdout=out)
    event = json.loads(out.getvalue())
    assert event["body"] == "from cron" and event["seq"] == 1 and event["client_id"] == "cron-1"
    out = io.StringIO()
    call_command("parley_send", "lobby", "alice", "again", "--client-id", "cron-1", stdout=out)
    assert json.loads(out.getvalue())["seq"] == 1
    assert Message.objects.count() == 1


def test_parley_send_refusal_is_a_command_error(lobby, alice):
    with pytest.raises(CommandError, match="not_found"):
        call_command("parley_send", "nowhere", "alice", "x")
    with pytest.raises(CommandError, match="bad_request"):
        call_command("parley_send", "lobby", "alice", " ")
