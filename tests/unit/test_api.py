"""The JSON API: /api/rooms/ and /api/rooms/<slug>/messages/ (PROTOCOL.md).

The accounts (alice, mallory) and rooms (lobby, secret, attic) are tests/unit/conftest.py's.
"""

from __future__ import annotations

import pytest
from django.test import Client

from chat import log
from chat.live.records import ErrorCode, SendRequest, error_body
from chat.models import Message

pytestmark = pytest.mark.django_db

ROOMS_URL = "/api/rooms/"


def history_url(slug: str) -> str:
    return f"/api/rooms/{slug}/messages/"


def post_messages(user, slug: str, count: int) -> None:
    log.append_events(
        [SendRequest(slug, user.id, user.username, f"m{i}", None) for i in range(1, count + 1)]
    )


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["detail"], str) and body["error"]["detail"]


# /api/rooms/


def test_rooms_anonymous_sees_public_rooms_including_archived(client, rooms):
    response = client.get(ROOMS_URL)
    assert response.status_code == 200
    assert [r["slug"] for r in response.json()["rooms"]] == ["attic", "lobby"]


def test_rooms_member_also_sees_private_rooms(client, rooms, alice):
    client.force_login(alice)
    slugs = [r["slug"] for r in client.get(ROOMS_URL).json()["rooms"]]
    assert slugs == ["attic", "lobby", "secret"]


def test_rooms_non_member_does_not_see_private_rooms(client, rooms, mallory):
    client.force_login(mallory)
    slugs = [r["slug"] for r in client.get(ROOMS_URL).json()["rooms"]]
    assert slugs == ["attic", "lobby"]


def test_rooms_entry_shape(client, rooms, alice):
    """The PROTOCOL room object; the per-user fields for signed-in users only."""
    post_messages(alice, "lobby", 3)
    lobby = {
        "slug": "lobby",
        "name": "Lobby",
        "description": "Everyone's welcome",
        "kind": "room",
        "is_public": True,
        "is_archived": False,
        "last_seq": 3,
        "slow_mode_seconds": 0,
    }
    anonymous = {r["slug"]: r for r in client.get(ROOMS_URL).json()["rooms"]}
    assert anonymous["lobby"] == lobby
    client.force_login(alice)
    by_slug = {r["slug"]: r for r in client.get(ROOMS_URL).json()["rooms"]}
    # Sending in a public room joins it, at the first message sent: all of it is read.
    assert by_slug["lobby"] == {
        **lobby,
        "is_member": True,
        "read_seq": 1,
        "unread": 0,
        "mentions": 0,
        "is_moderator": False,
    }
    assert by_slug["secret"]["is_public"] is False
    assert by_slug["attic"]["is_archived"] is True
    assert by_slug["attic"]["is_member"] is False and by_slug["attic"]["read_seq"] is None


def test_rooms_lists_a_private_room_once_with_several_members(client, rooms, alice, mallory):
    rooms["secret"].members.add(mallory)
    client.force_login(alice)
    slugs = [r["slug"] for r in client.get(ROOMS_URL).json()["rooms"]]
    assert slugs.count("secret") == 1


# /api/rooms/<slug>/messages/ permissions


def test_history_public_room_is_readable_anonymously(client, rooms, alice):
    post_messages(alice, "lobby", 2)
    response = client.get(history_url("lobby"))
    assert response.status_code == 200
    assert [e["body"] for e in response.json()["events"]] == ["m1", "m2"]


def test_history_archived_room_is_readable(client, rooms):
    assert client.get(history_url("attic")).json() == {"events": [], "has_more": False}


def test_history_private_room_anonymous_is_forbidden(client, rooms):
    assert_error(client.get(history_url("secret")), 403, "forbidden")


def test_history_private_room_non_member_is_forbidden(client, rooms, mallory):
    client.force_login(mallory)
    assert_error(client.get(history_url("secret")), 403, "forbidden")


def test_history_private_room_member_reads_it(client, rooms, alice):
    post_messages(alice, "secret", 1)
    client.force_login(alice)
    response = client.get(history_url("secret"))
    assert response.status_code == 200
    assert response.json()["events"][0]["room"] == "secret"


def test_history_unknown_room_is_not_found(client, rooms):
    assert_error(client.get(history_url("nowhere")), 404, "not_found")


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_api_only_answers_its_methods(rooms, method):
    # As a browser would send it: without a CSRF token, and still answered in JSON.
    client = Client(enforce_csrf_checks=True)
    urls = [ROOMS_URL] if method == "post" else [ROOMS_URL, history_url("lobby")]
    for url in urls:
        response = getattr(client, method)(url)
        assert_error(response, 405, "bad_request")
        assert "GET" in response["Allow"]


# parameters


@pytest.mark.parametrize(
    "query",
    [
        "before=abc",
        "before=-1",
        "before=1.5",
        "before=",
        "before=%201",
        "before=99999999999999999999",
        "before=9223372036854775808",
        "limit=-1",
        "limit=abc",
        "limit=",
        "limit=1e2",
        "limit=%C2%B9",  # "¹": a digit to str.isdigit(), not an ASCII one
        "before=%D9%A3",  # "٣": int() reads it as 3; the wire parser does not
        "limit=%2B5",  # "+5"
        "limit=5_0",
    ],
)
def test_history_bad_parameters_are_400(client, rooms, query):
    assert_error(client.get(f"{history_url('lobby')}?{query}"), 400, "bad_request")


def test_history_largest_values_are_accepted(client, rooms, alice):
    post_messages(alice, "lobby", 3)
    response = client.get(f"{history_url('lobby')}?before=9223372036854775807&limit=200")
    assert response.status_code == 200
    assert [e["seq"] for e in response.json()["events"]] == [1, 2, 3]


def test_history_limit_above_200_is_treated_as_200(client, rooms, alice):
    """PROTOCOL.md: "values above 200 are treated as 200" (a full page, has_more set)."""
    post_messages(alice, "lobby", 210)
    body = client.get(f"{history_url('lobby')}?limit=5000").json()
    assert [e["seq"] for e in body["events"]] == list(range(11, 211))
    assert body["has_more"] is True


def test_history_zero_limit_and_zero_before_are_empty_pages(client, rooms, alice):
    post_messages(alice, "lobby", 3)
    assert client.get(f"{history_url('lobby')}?limit=0").json() == {
        "events": [],
        "has_more": True,
    }
    assert client.get(f"{history_url('lobby')}?before=0").json() == {
        "events": [],
        "has_more": False,
    }


# shapes and pagination


def test_history_event_shapes_including_deletions(client, rooms, alice):
    log.append_events(
        [
            SendRequest("lobby", alice.id, "alice", "hello", "c-1"),
            SendRequest("lobby", alice.id, "alice", "regret", "c-2"),
        ]
    )
    log.delete_message(Message.objects.get(room=rooms["lobby"], seq=2).id)

    body = client.get(history_url("lobby")).json()

    assert set(body) == {"events", "has_more"}
    first, deleted_message, deleted_event = body["events"]
    assert set(first) == {
        *("type", "room", "seq", "user", "body", "html", "mentions", "reply_to"),
        *("attachments", "ts", "client_id", "edited_at", "reactions"),
    }
    assert (first["type"], first["seq"], first["user"], first["body"], first["client_id"]) == (
        "message",
        1,
        "alice",
        "hello",
        "c-1",
    )
    assert deleted_message["body"] == "" and deleted_message["deleted"] is True
    assert deleted_message["seq"] == 2 and deleted_message["client_id"] == "c-2"
    assert deleted_event == {
        "type": "deleted",
        "room": "lobby",
        "seq": 3,
        "target": 2,
        "user": None,
    }
    assert body["has_more"] is False


def test_history_pages_backwards_with_has_more(client, rooms, alice):
    post_messages(alice, "lobby", 120)
    url = history_url("lobby")

    def page(query: str = "") -> tuple[list[int], bool]:
        body = client.get(f"{url}?{query}").json()
        return [e["seq"] for e in body["events"]], body["has_more"]

    newest, more = page()
    assert newest == list(range(71, 121)) and more is True  # default limit 50, newest last
    older, more = page("before=71")
    assert older == list(range(21, 71)) and more is True
    oldest, more = page("before=21")
    assert oldest == list(range(1, 21)) and more is False
    # A page ending exactly at seq 1 has nothing before it.
    exact, more = page("before=51&limit=50")
    assert exact == list(range(1, 51)) and more is False
    everything, more = page("limit=120")
    assert everything == list(range(1, 121)) and more is False
    short, more = page("limit=119")
    assert short == list(range(2, 121)) and more is True
    assert page("before=1") == ([], False)
    assert page("before=100000")[0] == list(range(71, 121))


def test_history_is_not_cached(client, rooms):
    assert "no-cache" in client.get(history_url("lobby"))["Cache-Control"]


def test_errors_are_the_protocol_s_one_shape(client, rooms):
    """The API's errors come from chat.live.records.error_body, as every transport's."""
    response = client.get(history_url("nowhere"))
    assert response.json() == error_body(ErrorCode.NOT_FOUND)
    response = client.get(f"{history_url('lobby')}?limit=abc")
    assert response.json()["error"]["detail"].startswith("limit must be an integer from 0 ")
