"""chat/counts.py: unread and mention counts of a user's member rooms, in one statement.

Runs on SQLite, and on PostgreSQL with DATABASE_URL=postgres://... (test_on_postgres.py).
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from log_rows import append, delete

from chat.counts import CAP, Counts, counts, counts_of_pairs
from chat.models import ReadPosition, Room

pytestmark = pytest.mark.django_db


def test_a_new_member_has_nothing_unread(lobby, alice, bob):
    append(lobby, bob, 5)
    lobby.members.add(alice)
    assert counts(alice.id) == {lobby.id: Counts(lobby.id, 5, 0, 0, 5)}


def test_unread_counts_others_messages_after_the_position(lobby, alice, bob):
    lobby.members.add(alice)
    append(lobby, bob, 3)
    append(lobby, alice, 2)  # one's own messages are never unread
    append(lobby, None, 1)  # a message whose author was deleted is someone else's
    assert counts(alice.id)[lobby.id] == Counts(lobby.id, 0, 4, 0, 6)


def test_deleted_messages_and_other_kinds_do_not_count(lobby, alice, bob):
    lobby.members.add(alice)
    append(lobby, bob, 4)
    delete(lobby, 2)
    append(lobby, bob, 1, kind="deleted")
    append(lobby, bob, 1, kind="reaction")
    append(lobby, bob, 1, kind="edited")
    assert counts(alice.id)[lobby.id] == Counts(lobby.id, 0, 3, 0, 7)


def test_mentions_after_the_position(lobby, alice, bob):
    lobby.members.add(alice)
    append(lobby, bob, 2, mentions=[alice])
    append(lobby, bob, 1, mentions=[bob])
    ReadPosition.objects.filter(user=alice, room=lobby).update(read_seq=1)
    assert counts(alice.id)[lobby.id] == Counts(lobby.id, 1, 2, 1, 3)


def test_a_mention_of_oneself_is_not_counted(lobby, alice):
    """Mentions count among the unread messages, and one's own are never unread."""
    from chat import log
    from chat.live.records import SendRequest

    lobby.members.add(alice)
    log.append_events([SendRequest("lobby", alice.id, "alice", "note to @alice", None)])
    assert counts(alice.id)[lobby.id] == Counts(lobby.id, 0, 0, 0, 1)


def test_counts_are_exact_to_99_and_stop_at_100(lobby, secret, alice, bob):
    lobby.members.add(alice)
    secret.members.add(bob)
    append(lobby, bob, 99, mentions=[alice])
    append(secret, bob, 250, mentions=[alice])
    found = counts(alice.id)
    assert (found[lobby.id].unread, found[lobby.id].mentions) == (99, 99)
    assert (found[secret.id].unread, found[secret.id].mentions) == (CAP, CAP)
    append(lobby, bob, 1, mentions=[alice])
    assert counts(alice.id)[lobby.id].unread == CAP


def test_only_member_rooms_have_counts(rooms, alice, mallory):
    assert set(counts(alice.id)) == {rooms["secret"].id}
    assert counts(mallory.id) == {}


def test_room_ids_narrow_the_answer(rooms, alice):
    rooms["lobby"].members.add(alice)
    assert set(counts(alice.id, [rooms["lobby"].id, rooms["attic"].id])) == {rooms["lobby"].id}
    assert counts(alice.id, []) == {}


def test_a_missing_position_reads_as_read_through_last_seq(lobby, alice, bob):
    lobby.members.add(alice)
    append(lobby, bob, 3)
    ReadPosition.objects.filter(user=alice).delete()
    assert counts(alice.id)[lobby.id] == Counts(lobby.id, 3, 0, 0, 3)


def test_one_statement_for_two_hundred_rooms(alice, bob, db):
    made = Room.objects.bulk_create(Room(slug=f"r{i}", name=f"R{i}") for i in range(200))
    alice.chat_rooms.add(*made)
    for room in made[:20]:
        append(room, bob, 3)
    with CaptureQueriesContext(connection) as queries:
        found = counts(alice.id)
    assert len(queries) == 1
    assert len(found) == 200
    assert sum(c.unread for c in found.values()) == 60


def test_counts_of_pairs_answers_members_only(lobby, secret, alice, bob):
    lobby.members.add(alice, bob)
    append(lobby, alice, 2)
    found = counts_of_pairs([(lobby.id, alice.id), (lobby.id, bob.id), (secret.id, bob.id)])
    assert found == {
        (lobby.id, alice.id): Counts(lobby.id, 0, 0, 0, 2),
        (lobby.id, bob.id): Counts(lobby.id, 0, 2, 0, 2),
    }


def test_the_unread_count_walks_the_partial_index(lobby, alice):
    """The plan, not just the answer: the count must use chat_message_live (SQLite and
    PostgreSQL name the index they use in EXPLAIN), never scan the table."""
    from chat import counts as module

    sql = module._SELECT.format(source=f"{module.MEMBERS} mb", where="WHERE mb.user_id = %s")
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("EXPLAIN QUERY PLAN " + sql, [alice.id])
            plan = " ".join(str(row[-1]) for row in cursor.fetchall())
            assert "chat_message_live" in plan
            assert "SCAN m " not in plan and "SCAN x " not in plan
        else:
            cursor.execute("SET LOCAL enable_seqscan = off")  # tiny tables: force the choice
            cursor.execute("EXPLAIN " + sql, [alice.id])
            plan = " ".join(row[0] for row in cursor.fetchall())
            assert "chat_message_live" in plan
