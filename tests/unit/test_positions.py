"""chat/positions.py: read positions move forward only, clamped to last_seq, members only.

Runs on SQLite, and on PostgreSQL with DATABASE_URL=postgres://... (test_on_postgres.py).
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from log_rows import append

from chat.models import ReadPosition, Room
from chat.positions import ReadResult, mark_read, mark_read_many, position

pytestmark = pytest.mark.django_db


@pytest.fixture
def talk(lobby, alice, bob):
    """lobby: alice is a member from seq 0; bob wrote 10 messages, 3 and 7 mention her."""
    lobby.members.add(alice)
    append(lobby, bob, 2)
    append(lobby, bob, 1, mentions=[alice])
    append(lobby, bob, 3)
    append(lobby, bob, 1, mentions=[alice])
    append(lobby, bob, 3)
    return lobby


def test_a_read_moves_the_position_and_answers_the_counts_after_it(talk, alice):
    assert mark_read(talk.id, alice.id, 4) == ReadResult(4, 6, 1, 10, True)
    assert position(talk.id, alice.id) == 4


def test_a_read_at_or_below_the_position_changes_nothing(talk, alice):
    mark_read(talk.id, alice.id, 6)
    assert mark_read(talk.id, alice.id, 6) == ReadResult(6, 4, 1, 10, False)
    assert mark_read(talk.id, alice.id, 2) == ReadResult(6, 4, 1, 10, False)
    assert mark_read(talk.id, alice.id, 0) == ReadResult(6, 4, 1, 10, False)
    assert position(talk.id, alice.id) == 6


def test_a_read_beyond_last_seq_is_clamped(talk, alice):
    assert mark_read(talk.id, alice.id, 10**6) == ReadResult(10, 0, 0, 10, True)
    assert mark_read(talk.id, alice.id, 2**63 - 1) == ReadResult(10, 0, 0, 10, False)
    append(talk, talk.members.first(), 0)
    assert position(talk.id, alice.id) == 10


def test_out_of_range_seqs_are_bounded(talk, alice):
    assert mark_read(talk.id, alice.id, -5).moved is False
    assert mark_read(talk.id, alice.id, 2**70).read_seq == 10


def test_a_non_member_has_no_position(talk, bob, secret, alice):
    assert mark_read(talk.id, bob.id, 5) is None
    assert position(talk.id, bob.id) is None
    assert mark_read(secret.id, bob.id, 0) is None
    assert not ReadPosition.objects.filter(user=bob).exists()
    assert mark_read(999_999, alice.id, 1) is None


def test_a_batch_is_one_transaction_of_two_statements(talk, secret, alice, bob, mallory):
    secret.members.add(bob)
    items = [
        (talk.id, alice.id, 3),
        (secret.id, bob.id, 0),
        (talk.id, mallory.id, 3),  # not a member
        (talk.id, alice.id, 8),  # the same pair again: the highest seq wins
        (talk.id, alice.id, 8),
    ]
    with CaptureQueriesContext(connection) as queries:
        results = mark_read_many(items)
    statements = [q["sql"] for q in queries if not q["sql"].startswith(("BEGIN", "SAVEPOINT"))]
    assert len([s for s in statements if "INSERT" in s or "SELECT" in s]) == 2
    assert results == [
        ReadResult(8, 2, 0, 10, False),
        ReadResult(0, 0, 0, 0, False),
        None,
        ReadResult(8, 2, 0, 10, True),  # the move is reported once
        ReadResult(8, 2, 0, 10, False),
    ]
    assert mark_read_many([]) == []


def test_a_member_without_a_row_gets_one_at_last_seq(talk, alice):
    ReadPosition.objects.filter(user=alice).delete()
    assert position(talk.id, alice.id) == 10
    result = mark_read(talk.id, alice.id, 3)  # below the implicit position: not a move back
    assert result.read_seq == 10 and result.unread == 0
    assert ReadPosition.objects.get(user=alice, room=talk).read_seq == 10


def test_positions_of_many_rooms_in_one_batch(alice, bob, db):
    made = Room.objects.bulk_create(Room(slug=f"r{i}", name=f"R{i}") for i in range(50))
    alice.chat_rooms.add(*made)
    for room in made:
        append(room, bob, 4)
    results = mark_read_many([(room.id, alice.id, 2) for room in made])
    assert all(r == ReadResult(2, 2, 0, 4, True) for r in results)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seqs=st.lists(st.integers(min_value=-3, max_value=15), min_size=1, max_size=8))
def test_any_sequence_of_reads_is_monotonic_and_clamped(talk, alice, seqs):
    ReadPosition.objects.filter(user=alice, room=talk).update(read_seq=0)
    expected = 0
    for seq in seqs:
        result = mark_read(talk.id, alice.id, seq)
        moved_to = max(expected, min(seq, 10))
        assert result.moved == (moved_to > expected)
        expected = moved_to
        assert result.read_seq == expected == position(talk.id, alice.id)
    assert mark_read_many([(talk.id, alice.id, s) for s in seqs])[0].read_seq == expected
