"""chat.log: seq allocation, idempotency, permissions, soft delete and reads.

The accounts (alice, bob) and rooms (lobby; secret, alice's; attic, archived) are
tests/unit/conftest.py's.
"""

from __future__ import annotations

import pytest

from chat import log
from chat.live.records import SendRequest
from chat.models import Message, Room

pytestmark = pytest.mark.django_db


def send(user, body: str, room: str = "lobby", client_id: str | None = None, **kw) -> SendRequest:
    return SendRequest(
        room=room,
        user_id=user.id,
        username=user.username,
        body=body,
        client_id=client_id,
        **kw,
    )


def stored(room: Room) -> list[tuple[int, str, str]]:
    return list(room.events.order_by("seq").values_list("seq", "kind", "body"))


def test_seqs_start_at_one_and_have_no_gaps(alice, lobby):
    singles = [log.append_events([send(alice, f"m{i}")])[0].seq for i in range(3)]
    batch = [r.seq for r in log.append_events([send(alice, f"b{i}") for i in range(4)])]
    assert singles == [1, 2, 3]
    assert batch == [4, 5, 6, 7]
    assert [seq for seq, _, _ in stored(lobby)] == list(range(1, 8))
    lobby.refresh_from_db()
    assert lobby.last_seq == 7


def test_batch_keeps_request_order(alice, bob, lobby):
    bodies = ["first", "second", "third", "fourth"]
    users = [alice, bob, alice, bob]
    results = log.append_events([send(u, b) for u, b in zip(users, bodies, strict=True)])
    assert [r.seq for r in results] == [1, 2, 3, 4]
    assert [body for _, _, body in stored(lobby)] == bodies
    assert [r.event["user"] for r in results] == ["alice", "bob", "alice", "bob"]


def test_rooms_have_independent_logs_within_one_batch(alice, lobby, secret):
    requests = [
        send(alice, "l1"),
        send(alice, "s1", room="secret"),
        send(alice, "l2"),
        send(alice, "s2", room="secret"),
    ]
    assert [r.seq for r in log.append_events(requests)] == [1, 1, 2, 2]
    assert [body for _, _, body in stored(lobby)] == ["l1", "l2"]
    assert [body for _, _, body in stored(secret)] == ["s1", "s2"]


def test_new_message_event_shape(alice, lobby):
    (result,) = log.append_events([send(alice, "hi there", client_id="c-1")])
    assert result.created
    event = result.event
    assert set(event) == {
        *("type", "room", "seq", "user", "body", "html", "mentions", "reply_to"),
        *("attachments", "ts", "client_id", "edited_at", "reactions"),
    }
    assert event["type"] == "message"
    assert event["room"] == "lobby"
    assert event["seq"] == 1
    assert event["user"] == "alice"
    assert event["body"] == "hi there"
    assert event["client_id"] == "c-1"


def test_live_event_and_history_agree_on_ts(alice, lobby):
    (result,) = log.append_events([send(alice, "hi there")])
    (replayed,) = log.read_events(lobby.id, "lobby", after=0, limit=1)
    assert result.event == replayed


def test_resend_of_a_client_id_returns_the_original_seq(alice, lobby):
    (first,) = log.append_events([send(alice, "hello", client_id="c-7f3a")])
    log.append_events([send(alice, "in between")])
    (again,) = log.append_events([send(alice, "a different body", client_id="c-7f3a")])
    assert again.seq == first.seq == 1
    assert not again.created and again.event is None and again.error is None
    assert stored(lobby) == [(1, "message", "hello"), (2, "message", "in between")]


def test_same_client_id_from_another_user_is_a_new_message(alice, bob, lobby):
    (mine,) = log.append_events([send(alice, "mine", client_id="c-1")])
    (theirs,) = log.append_events([send(bob, "theirs", client_id="c-1")])
    assert (mine.seq, theirs.seq) == (1, 2)
    assert theirs.created
    assert Message.objects.filter(room=lobby, client_id="c-1").count() == 2


def test_same_client_id_in_another_room_is_a_new_message(alice, lobby, secret):
    (a,) = log.append_events([send(alice, "here", client_id="c-1")])
    (b,) = log.append_events([send(alice, "there", room="secret", client_id="c-1")])
    assert a.created and b.created
    assert (a.seq, b.seq) == (1, 1)


def test_repeat_within_one_batch_gets_the_first_seq(alice, lobby):
    results = log.append_events(
        [
            send(alice, "one", client_id="c-1"),
            send(alice, "two", client_id="c-2"),
            send(alice, "one again", client_id="c-1"),
        ]
    )
    assert [r.seq for r in results] == [1, 2, 1]
    assert [r.created for r in results] == [True, True, False]
    assert stored(lobby) == [(1, "message", "one"), (2, "message", "two")]


def test_sends_without_client_id_are_never_merged(alice, lobby):
    results = log.append_events([send(alice, "same"), send(alice, "same")])
    assert [r.seq for r in results] == [1, 2]
    assert all(r.created for r in results)


def test_archived_room_is_forbidden_and_takes_no_seq(alice, attic):
    (result,) = log.append_events([send(alice, "hello?", room="attic")])
    assert result.error == "forbidden"
    assert result.seq is None and result.event is None
    attic.refresh_from_db()
    assert attic.last_seq == 0
    assert not attic.events.exists()


def test_private_room_forbids_non_members_and_admits_members(alice, bob, secret):
    results = log.append_events(
        [send(bob, "let me in", room="secret"), send(alice, "welcome", room="secret")]
    )
    assert results[0].error == "forbidden"
    assert results[1].error is None
    # The refused send took no seq: the member's message is the room's first event.
    assert results[1].seq == 1
    assert stored(secret) == [(1, "message", "welcome")]


def test_unknown_room_is_not_found(alice, lobby):
    results = log.append_events([send(alice, "x", room="nowhere"), send(alice, "y")])
    assert results[0].error == "not_found"
    assert results[1].seq == 1


@pytest.mark.django_db(transaction=True)
def test_a_failed_batch_hands_out_no_seq(alice, lobby, monkeypatch):
    """Seqs come from the inserting transaction: when it fails, nothing is used up."""

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(log, "flush_all", fail)
    with pytest.raises(RuntimeError):
        log.append_events([send(alice, "lost"), send(alice, "lost too")])
    monkeypatch.undo()
    lobby.refresh_from_db()
    assert lobby.last_seq == 0
    (result,) = log.append_events([send(alice, "kept")])
    assert result.seq == 1


def test_delete_message_is_soft_and_appends_a_deleted_event(alice, bob, lobby):
    log.append_events([send(alice, "oops"), send(alice, "fine")])
    target = Message.objects.get(room=lobby, seq=1)

    event = log.delete_message(target.id, by_user_id=bob.id)

    assert event == {"type": "deleted", "room": "lobby", "seq": 3, "target": 1, "user": "bob"}
    target.refresh_from_db()
    assert target.deleted_at is not None
    assert target.body == "oops"  # kept for audit; only the wire form blanks it
    deleted_row = Message.objects.get(room=lobby, seq=3)
    assert (deleted_row.kind, deleted_row.target, deleted_row.user_id) == ("deleted", 1, bob.id)
    lobby.refresh_from_db()
    assert lobby.last_seq == 3
    assert Message.objects.get(room=lobby, seq=2).deleted_at is None


def test_delete_message_twice_or_of_an_event_does_nothing(alice, lobby):
    log.append_events([send(alice, "oops")])
    target = Message.objects.get(room=lobby, seq=1)
    log.delete_message(target.id)
    deleted_event = Message.objects.get(room=lobby, seq=2)

    assert log.delete_message(target.id) is None
    assert log.delete_message(deleted_event.id) is None
    lobby.refresh_from_db()
    assert lobby.last_seq == 2
    assert lobby.events.count() == 2


def test_delete_message_then_send_continues_the_sequence(alice, lobby):
    log.append_events([send(alice, "a")])
    log.delete_message(Message.objects.get(room=lobby, seq=1).id)
    (result,) = log.append_events([send(alice, "b")])
    assert result.seq == 3


def test_read_events_replays_after_a_seq_with_deletions(alice, lobby):
    log.append_events([send(alice, f"m{i}") for i in range(1, 6)])
    log.delete_message(Message.objects.get(room=lobby, seq=2).id)

    events = log.read_events(lobby.id, "lobby", after=1, limit=100)

    assert [e["seq"] for e in events] == [2, 3, 4, 5, 6]
    assert events[0]["body"] == "" and events[0]["deleted"] is True
    assert "deleted" not in events[1]
    assert events[-1] == {
        "type": "deleted",
        "room": "lobby",
        "seq": 6,
        "target": 2,
        "user": None,
    }
    assert [e["seq"] for e in log.read_events(lobby.id, "lobby", after=0, limit=2)] == [1, 2]
    assert log.read_events(lobby.id, "lobby", after=6, limit=10) == []


def test_read_page_is_newest_last_and_pages_backwards(alice, lobby):
    log.append_events([send(alice, f"m{i}") for i in range(1, 11)])

    newest = log.read_page(lobby.id, "lobby", None, 3)
    older = log.read_page(lobby.id, "lobby", 8, 3)
    oldest = log.read_page(lobby.id, "lobby", 3, 50)

    assert [e["seq"] for e in newest] == [8, 9, 10]
    assert [e["seq"] for e in older] == [5, 6, 7]
    assert [e["seq"] for e in oldest] == [1, 2]
    assert [e["body"] for e in newest] == ["m8", "m9", "m10"]
    assert log.read_page(lobby.id, "lobby", 1, 50) == []


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("body", "lone \ud800 surrogate", "bad_request"),
        ("body", "nul \x00 byte", "bad_request"),
        ("body", None, "bad_request"),
        ("client_id", "c-\udfff", "bad_request"),
        ("client_id", "c" * 65, "bad_request"),  # over the column: PostgreSQL refuses it
        ("room", "lobby\ud800", "not_found"),  # a query parameter that cannot be encoded
    ],
)
def test_unstorable_send_is_refused_alone_and_the_batch_commits(
    alice, lobby, secret, field, value, code
):
    """The log's own door (the admin and the Python API call it directly): one send the
    database would refuse is answered with its error, and the rest of its batch commits."""
    bad = {"body": "fine", "client_id": "c-bad", "room": "lobby", field: value}
    results = log.append_events(
        [
            send(alice, "first", client_id="c-1"),
            send(alice, bad["body"], room=bad["room"], client_id=bad["client_id"]),
            send(alice, "elsewhere", room="secret"),
            send(alice, "last"),
        ]
    )
    assert [r.error for r in results] == [None, code, None, None]
    assert results[1].seq is None and results[1].event is None
    assert [r.seq for r in results] == [1, None, 1, 2]
    assert stored(lobby) == [(1, "message", "first"), (2, "message", "last")]
    assert stored(secret) == [(1, "message", "elsewhere")]


def test_a_batch_of_only_unstorable_sends_touches_nothing(alice, lobby, django_assert_num_queries):
    with django_assert_num_queries(0):
        results = log.append_events([send(alice, "\ud800"), send(alice, "x", client_id="\x00")])
    assert [r.error for r in results] == ["bad_request", "bad_request"]
    lobby.refresh_from_db()
    assert lobby.last_seq == 0


def test_a_batch_costs_the_same_queries_whatever_its_number_of_rooms(alice, bob):
    """With many rooms and few senders in each, a batch holds as many rooms as sends; the
    statements of a batch must not grow with them (bench/write_path.py measures the time)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    rooms = [Room.objects.create(slug=f"many-{i}", name=f"many {i}") for i in range(8)]

    def queries(slugs: list[str], tag: str) -> int:
        requests = [
            send(alice if i % 2 else bob, f"hi {i}", room=slug, client_id=f"{tag}-{i}")
            for i, slug in enumerate(slugs)
        ]
        with CaptureQueriesContext(connection) as ctx:
            results = log.append_events(requests)
        assert all(r.created for r in results), results
        return len(ctx.captured_queries)

    slugs = [r.slug for r in rooms]
    queries(slugs, "warm")  # both users join every room by sending (joins cost inserts)
    queries(slugs[1:] + slugs[:1], "warm2")
    one = queries([rooms[0].slug] * 8, "one")
    many = queries([r.slug for r in rooms], "many")
    assert many == one
    for room in rooms:
        assert [seq for seq, _, _ in stored(room)] == list(range(1, len(stored(room)) + 1))
    # The repeats are recognised across rooms in one query, each with its own seq.
    again = log.append_events(
        [send(bob, "hi 0", room=rooms[0].slug, client_id="many-0"),
         send(alice, "hi 1", room=rooms[1].slug, client_id="many-1")]
    )  # fmt: skip
    assert [(r.created, r.seq) for r in again] == [(False, 11), (False, 3)]
    assert len(stored(rooms[0])) == 11 and len(stored(rooms[1])) == 3
