"""The API's room endpoints: one room, /api/me/, history with ``after``, one message,
read positions, join and leave (PROTOCOL.md "HTTP API").

The accounts (alice, bob, mallory) and rooms (lobby, secret, attic) are
tests/unit/conftest.py's; log rows are written straight to the tables (log_rows.py).
"""

from __future__ import annotations

import json

import pytest
from django.test import Client
from log_rows import append, delete

from chat.live import publish
from chat.models import ReadPosition

pytestmark = pytest.mark.django_db


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code
    assert isinstance(body["error"]["detail"], str) and body["error"]["detail"]


def post(client, url: str, body=None, raw: bytes | None = None):
    data = raw if raw is not None else json.dumps(body if body is not None else {})
    return client.post(url, data, content_type="application/json")


@pytest.fixture
def announced(monkeypatch):
    seen = []
    monkeypatch.setattr(publish, "announce_read", seen.append)
    return seen


# /api/rooms/<slug>/


def test_one_room(client, rooms, alice, bob):
    rooms["lobby"].members.add(alice)
    append(rooms["lobby"], bob, 2)
    assert client.get("/api/rooms/lobby/").json()["last_seq"] == 2
    client.force_login(alice)
    shown = client.get("/api/rooms/lobby/").json()
    assert (shown["slug"], shown["unread"], shown["is_member"]) == ("lobby", 2, True)


def test_one_room_refusals(client, rooms, mallory):
    assert_error(client.get("/api/rooms/nowhere/"), 404, "not_found")
    assert_error(client.get("/api/rooms/secret/"), 403, "forbidden")
    client.force_login(mallory)
    assert_error(client.get("/api/rooms/secret/"), 403, "forbidden")
    response = client.post("/api/rooms/lobby/")
    assert_error(response, 405, "bad_request")
    assert response["Allow"] == "GET, HEAD"


# /api/me/


def test_me(client, rooms, alice, bob):
    append(rooms["secret"], bob, 4, mentions=[alice])
    client.force_login(alice)
    body = client.get("/api/me/").json()
    assert set(body) == {"user", "is_staff", "is_bot", "rooms"}
    assert (body["user"], body["is_staff"], body["is_bot"]) == ("alice", False, False)
    [secret] = body["rooms"]
    assert (secret["slug"], secret["unread"], secret["mentions"]) == ("secret", 4, 4)


def test_me_anonymous_is_forbidden(client, rooms):
    assert_error(client.get("/api/me/"), 403, "forbidden")


# history: after, and one message


def seqs(client, query: str) -> tuple[list[int], bool]:
    body = client.get(f"/api/rooms/lobby/messages/?{query}").json()
    return [e["seq"] for e in body["events"]], body["has_more"]


def test_history_after_reads_forward(client, lobby, alice):
    append(lobby, alice, 120)
    assert seqs(client, "after=0") == (list(range(1, 51)), True)
    assert seqs(client, "after=100") == (list(range(101, 121)), False)
    assert seqs(client, "after=70&limit=50") == (list(range(71, 121)), False)
    assert seqs(client, "after=69&limit=50") == (list(range(70, 120)), True)
    assert seqs(client, "after=120") == ([], False)
    assert seqs(client, "after=10&before=15") == ([11, 12, 13, 14], False)
    assert seqs(client, "after=10&before=15&limit=2") == ([11, 12], True)
    assert seqs(client, "after=10&before=11") == ([], False)


@pytest.mark.parametrize("query", ["after=-1", "after=x", "after=", "after=1.0", "after=%2B1"])
def test_history_bad_after_is_400(client, lobby, query):
    assert_error(client.get(f"/api/rooms/lobby/messages/?{query}"), 400, "bad_request")


def test_one_message(client, rooms, alice):
    append(rooms["lobby"], alice, 2)
    delete(rooms["lobby"], 2)
    body = client.get("/api/rooms/lobby/messages/1/").json()
    assert (body["event"]["seq"], body["event"]["body"]) == (1, "m1")
    deleted = client.get("/api/rooms/lobby/messages/2/").json()["event"]
    assert deleted["deleted"] is True and deleted["body"] == ""
    assert_error(client.get("/api/rooms/lobby/messages/3/"), 404, "not_found")
    assert_error(client.get("/api/rooms/secret/messages/1/"), 403, "forbidden")
    assert_error(client.get("/api/rooms/nowhere/messages/1/"), 404, "not_found")


@pytest.mark.parametrize("seq", ["0", "-1", "abc", "1.5", "99999999999999999999", "%D9%A3"])
def test_one_message_bad_seq_is_400(client, lobby, seq):
    assert_error(client.get(f"/api/rooms/lobby/messages/{seq}/"), 400, "bad_request")


# read positions


@pytest.fixture
def reader(client, lobby, alice, bob):
    lobby.members.add(alice)
    append(lobby, bob, 4)
    append(lobby, bob, 2, mentions=[alice])
    client.force_login(alice)
    return client


def test_read_moves_the_position_and_announces_it(reader, lobby, alice, announced):
    response = post(reader, "/api/rooms/lobby/read/", {"seq": 4})
    assert response.status_code == 200
    assert response.json() == {"read_seq": 4, "unread": 2, "mentions": 2}
    [notice] = announced
    assert (notice.user_id, notice.room, notice.read_seq, notice.through) == (
        alice.id,
        "lobby",
        4,
        6,
    )
    assert (notice.unread, notice.mentions) == (2, 2)


def test_read_below_the_position_changes_nothing_and_is_not_announced(reader, announced):
    post(reader, "/api/rooms/lobby/read/", {"seq": 5})
    response = post(reader, "/api/rooms/lobby/read/", {"seq": 2})
    assert response.json() == {"read_seq": 5, "unread": 1, "mentions": 1}
    assert len(announced) == 1


def test_read_beyond_last_seq_is_clamped(reader, lobby, alice, announced):
    response = post(reader, "/api/rooms/lobby/read/", {"seq": 10**12})
    assert response.json() == {"read_seq": 6, "unread": 0, "mentions": 0}
    assert ReadPosition.objects.get(room=lobby, user=alice).read_seq == 6


@pytest.mark.parametrize(
    "body",
    [{}, {"seq": -1}, {"seq": "3"}, {"seq": 3.0}, {"seq": True}, {"seq": None}, {"seq": 2**63}],
)
def test_read_bad_seq_is_400(reader, body):
    assert_error(post(reader, "/api/rooms/lobby/read/", body), 400, "bad_request")


@pytest.mark.parametrize("raw", [b"", b"{", b"[1]", b'"seq"', b"\xff\xfe", b'{"seq": NaN}'])
def test_read_malformed_json_is_400(reader, raw):
    assert_error(post(reader, "/api/rooms/lobby/read/", raw=raw), 400, "bad_request")


def test_read_oversized_body_is_413(reader, settings):
    settings.CHAT_MAX_FRAME_BYTES = 1024
    raw = json.dumps({"seq": 1, "pad": "x" * 2000}).encode()
    assert_error(post(reader, "/api/rooms/lobby/read/", raw=raw), 413, "too_large")


def test_read_refusals(client, rooms, mallory, announced):
    assert_error(post(client, "/api/rooms/lobby/read/", {"seq": 1}), 403, "forbidden")
    client.force_login(mallory)
    # A non-member of a public room has no position to move.
    assert_error(post(client, "/api/rooms/lobby/read/", {"seq": 1}), 403, "forbidden")
    assert_error(post(client, "/api/rooms/secret/read/", {"seq": 1}), 403, "forbidden")
    assert_error(post(client, "/api/rooms/nowhere/read/", {"seq": 1}), 404, "not_found")
    response = client.get("/api/rooms/lobby/read/")
    assert_error(response, 405, "bad_request")
    assert response["Allow"] == "POST"
    assert announced == []


# join and leave


def test_join_and_leave_a_public_room(client, lobby, alice, bob):
    append(lobby, bob, 3)
    client.force_login(alice)
    joined = post(client, "/api/rooms/lobby/join/")
    assert joined.status_code == 200
    assert (joined.json()["is_member"], joined.json()["read_seq"]) == (True, 3)
    assert post(client, "/api/rooms/lobby/join/").json()["read_seq"] == 3  # twice: the same
    left = post(client, "/api/rooms/lobby/leave/").json()
    assert (left["is_member"], left["read_seq"], left["unread"]) == (False, None, 0)
    assert not ReadPosition.objects.filter(user=alice).exists()


def test_join_refusals(client, rooms, alice, mallory):
    assert_error(post(client, "/api/rooms/lobby/join/"), 403, "forbidden")
    client.force_login(mallory)
    assert_error(post(client, "/api/rooms/secret/join/"), 403, "forbidden")
    assert_error(post(client, "/api/rooms/nowhere/join/"), 404, "not_found")
    assert_error(post(client, "/api/rooms/secret/leave/"), 403, "forbidden")


def test_leaving_a_private_room_loses_it(client, rooms, alice):
    client.force_login(alice)
    left = post(client, "/api/rooms/secret/leave/")
    assert left.status_code == 200 and left.json()["is_member"] is False
    assert_error(client.get("/api/rooms/secret/"), 403, "forbidden")
    assert_error(post(client, "/api/rooms/secret/join/"), 403, "forbidden")


def test_writes_need_the_csrf_token_with_a_session(rooms, alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    for url in ("/api/rooms/lobby/join/", "/api/rooms/lobby/read/", "/api/rooms/lobby/leave/"):
        assert_error(post(client, url, {"seq": 1}), 403, "forbidden")
    assert not rooms["lobby"].members.filter(pk=alice.pk).exists()
    client.cookies["csrftoken"] = "a" * 32
    response = client.post(
        "/api/rooms/lobby/join/", "{}", content_type="application/json", HTTP_X_CSRFTOKEN="a" * 32
    )
    assert response.status_code == 200 and response.json()["is_member"] is True
