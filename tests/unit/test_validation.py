"""What may reach the database (chat/live/validation.py), checked against the database.

The property: whatever the text, the checks either refuse it or ``chat.log`` stores it
exactly. And the log refuses unstorable text itself, without failing the other sends of
its batch (the admin and the Python API call it directly, not through the hub).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from chat import log
from chat.live.records import ErrorCode, SendRequest
from chat.live.validation import (
    check_body,
    check_client_id,
    check_room_slug,
    check_stored_send,
    storable,
)
from chat.models import Message, Room

MAX_CHARS = 4000
UNSTORABLE = ["\ud800", "a\udfffb", "\udbff\udc00", "nul\x00", "\x00"]
# Any code point at all, lone surrogates included (Hypothesis leaves them out by default),
# with the troublemakers drawn more often than chance would.
any_char = st.characters(codec=None, exclude_categories=()) | st.sampled_from(
    ["\x00", "\ud800", "\udfff", " ", "\n", "\u2028", "\ufeff", "😀"]
)
any_text = st.text(any_char, max_size=80)


@pytest.mark.parametrize("text", UNSTORABLE)
def test_unstorable_text_is_refused_as_body_and_client_id(text):
    assert not storable(text)
    assert check_body(f"hi {text}", MAX_CHARS) == (
        ErrorCode.BAD_REQUEST,
        "body holds a character that cannot be stored.",
    )
    assert check_client_id(text)[0] == ErrorCode.BAD_REQUEST


@pytest.mark.parametrize("text", ["hi", "😀", "é" * MAX_CHARS, "a\u2028b", "\ufffd", "\uffff"])
def test_storable_text_passes(text):
    assert storable(text)
    assert check_body(text, MAX_CHARS) is None


@pytest.mark.parametrize(
    ("value", "code"),
    [(7, "bad_request"), ([], "bad_request"), ("x" * 65, "bad_request"), (None, None)],
)
def test_client_id_shape(value, code):
    problem = check_client_id(value)
    assert (problem and problem[0]) == code or (problem is None and code is None)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (None, "bad_request"),
        (5, "bad_request"),
        ("", "bad_request"),
        (" \n", "bad_request"),
        ("x" * (MAX_CHARS + 1), "too_large"),
    ],
)
def test_body_shape(body, code):
    assert check_body(body, MAX_CHARS)[0] == code


@pytest.mark.parametrize("slug", ["", "Lobby", "a" * 51, "-x", "lobby\n", "lob\ud800", 5, None])
def test_what_is_not_a_slug_names_no_room(slug):
    assert check_room_slug(slug) == (ErrorCode.NOT_FOUND, "No such room.")


def request(body, client_id=None, room="lobby", user_id=1) -> SendRequest:
    return SendRequest(room, user_id, "alice", body, client_id)


def test_what_the_log_insists_on():
    assert check_stored_send(request("x" * 100_000)) is None  # length is the hub's business
    assert check_stored_send(request("ok", "c-1")) is None
    assert check_stored_send(request("\ud800"))[0] == ErrorCode.BAD_REQUEST
    assert check_stored_send(request("ok", "\x00"))[0] == ErrorCode.BAD_REQUEST
    assert check_stored_send(request("ok", "c" * 65))[0] == ErrorCode.BAD_REQUEST
    assert check_stored_send(request(None))[0] == ErrorCode.BAD_REQUEST
    assert check_stored_send(request("ok", room="lob\ud800"))[0] == ErrorCode.NOT_FOUND


# --------------------------------------------------------------------------- the database


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice", password="pw-alice-123")


@pytest.fixture
def lobby():
    return Room.objects.create(slug="lobby", name="Lobby")


@pytest.fixture
def attic():
    return Room.objects.create(slug="attic", name="Attic")


def stored_row(seq: int) -> tuple[str, str | None]:
    return Message.objects.filter(room__slug="lobby", seq=seq).values_list("body", "client_id")[0]


# The db fixture's transaction spans every example; each example's rows stay, which is
# fine: client_ids are told apart by the example's own text.
DB_EXAMPLES = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.mark.django_db
@DB_EXAMPLES
@given(text=any_text)
@example(text="\ud800")
@example(text="a\x00b")
@example(text="\udbff\udfff")
def test_any_text_is_refused_by_the_checks_or_stored_exactly(alice, lobby, text):
    if check_body(text, MAX_CHARS) is None:
        (result,) = log.append_events([request(text, user_id=alice.id)])
        assert result.created, result
        assert stored_row(result.seq) == (text, None)
    if check_client_id(text) is None:
        (result,) = log.append_events([request("body", text, user_id=alice.id)])
        assert result.seq is not None, result
        assert stored_row(result.seq)[1] == text


@pytest.mark.django_db
@DB_EXAMPLES
@given(body=any_text, client_id=st.none() | any_text)
@example(body="\ud800", client_id=None)
@example(body="fine", client_id="\ud800")
@example(body="a\x00b", client_id=None)
def test_the_log_never_lets_one_send_fail_its_batch(alice, lobby, attic, body, client_id):
    """Sent to the log directly, between two good sends of another room and this one:
    the odd send is stored exactly or refused with bad_request, and the others are stored."""
    before = Room.objects.get(slug="attic").last_seq
    results = log.append_events(
        [
            request("before", room="attic", user_id=alice.id),
            request(body, client_id, user_id=alice.id),
            request("after", user_id=alice.id),
        ]
    )
    first, odd, last = results
    assert first.created and first.seq == before + 1
    assert last.created and stored_row(last.seq) == ("after", None)
    if odd.error is not None:
        assert odd.error == ErrorCode.BAD_REQUEST and odd.detail
        assert check_stored_send(request(body, client_id)) is not None
    elif odd.created:
        assert stored_row(odd.seq) == (body, client_id)
    else:  # a client_id an earlier example stored: answered with its seq
        assert client_id is not None and stored_row(odd.seq)[1] == client_id
