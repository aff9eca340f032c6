"""The API's writes (send, edit, delete, react) through chat/writes.py: PROTOCOL.md "HTTP
API", the same semantics as the live frames, and every bad input answered in the
protocol's error shape, never a 500.

No hub runs here (Django's test client), so writes take chat/writes.py's own path through
chat.log; one test installs a fake hub to see that the hub's path is taken when there is one.
"""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chat.live import publish
from chat.live.records import ErrorCode, SendResult, UserInfo
from chat.models import Message, Reaction

pytestmark = pytest.mark.django_db

SEND = "/api/rooms/lobby/messages/"


def one(seq: int, slug: str = "lobby") -> str:
    return f"/api/rooms/{slug}/messages/{seq}/"


def react_url(seq: int) -> str:
    return f"{one(seq)}reactions/"


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code
    assert isinstance(body["error"]["detail"], str) and body["error"]["detail"]
    return body["error"]


def send(client, body="hello", url=SEND, **fields):
    payload = {"body": body, **fields}
    return client.post(url, json.dumps(payload), content_type="application/json")


def patch(client, url, payload):
    return client.patch(url, json.dumps(payload), content_type="application/json")


def react(client, seq, emoji="👍", op="add", **fields):
    payload = {"emoji": emoji, "op": op, **fields}
    return client.post(react_url(seq), json.dumps(payload), content_type="application/json")


@pytest.fixture
def as_alice(client, lobby, alice):
    client.force_login(alice)
    return client


@pytest.fixture
def published(monkeypatch):
    """``published()``: the events handed to the live hub so far. They are handed over on
    commit, which a test's transaction never reaches: the callbacks waiting for it run
    here (as django_capture_on_commit_callbacks would, but as the test goes)."""
    seen = []
    monkeypatch.setattr(publish, "publish_committed", seen.append)
    start = len(connection.run_on_commit)
    ran = start

    def events() -> list[dict]:
        nonlocal ran
        waiting = connection.run_on_commit
        while ran < len(waiting):
            waiting[ran][1]()
            ran += 1
        return seen

    return events


# send


def test_send_answers_201_with_the_event_and_publishes_it(as_alice, published):
    response = send(as_alice, "hi **there**", client_id="c-1")
    assert response.status_code == 201
    body = response.json()
    assert body["seq"] == 1
    event = body["event"]
    assert (event["type"], event["seq"], event["user"], event["body"]) == (
        "message",
        1,
        "alice",
        "hi **there**",
    )
    assert "<strong>there</strong>" in event["html"]
    assert published() == [event]


def test_a_repeated_client_id_answers_200_with_the_original(as_alice, published):
    first = send(as_alice, "once", client_id="c-1").json()
    again = send(as_alice, "twice?", client_id="c-1")
    assert again.status_code == 200
    assert again.json()["seq"] == first["seq"]
    assert again.json()["event"]["body"] == "once"
    assert Message.objects.count() == 1 and len(published()) == 1


def test_send_with_reply_to(as_alice):
    send(as_alice, "first")
    reply = send(as_alice, "second", reply_to=1).json()
    assert reply["event"]["reply_to"] == 1
    assert_error(send(as_alice, "third", reply_to=99), 400, "bad_request")


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"body": ""},
        {"body": "   "},
        {"body": 7},
        {"body": None},
        {"body": ["x"]},
        {"body": "ok", "client_id": 5},
        {"body": "ok", "client_id": "x" * 65},
        {"body": "ok", "reply_to": "1"},
        {"body": "ok", "reply_to": 0},
        {"body": "ok", "reply_to": True},
        {"body": "a\x00b"},
        {"body": "ok", "attachments": ["nope"]},
    ],
)
def test_send_bad_fields_are_400(as_alice, payload):
    response = as_alice.post(SEND, json.dumps(payload), content_type="application/json")
    assert_error(response, 400, "bad_request")
    assert Message.objects.count() == 0


def test_a_lone_surrogate_is_refused_not_a_500(as_alice):
    response = as_alice.post(SEND, '{"body": "\\ud800"}', content_type="application/json")
    assert_error(response, 400, "bad_request")


def test_a_body_over_the_limit_is_413(as_alice, settings):
    settings.CHAT_MAX_MESSAGE_CHARS = 10
    assert_error(send(as_alice, "x" * 11), 413, "too_large")


def test_an_oversized_request_is_413(as_alice, settings):
    settings.CHAT_MAX_FRAME_BYTES = 2048
    assert_error(send(as_alice, "x" * 3000), 413, "too_large")


@pytest.mark.parametrize("raw", ["", "{", "[]", "null", '"body"', '{"body": Infinity}'])
def test_send_malformed_json_is_400(as_alice, raw):
    assert_error(as_alice.post(SEND, raw, content_type="application/json"), 400, "bad_request")


def test_send_refusals(client, rooms, mallory):
    assert_error(send(client), 403, "forbidden")  # anonymous
    client.force_login(mallory)
    assert_error(send(client, url="/api/rooms/secret/messages/"), 403, "forbidden")
    assert_error(send(client, url="/api/rooms/attic/messages/"), 403, "forbidden")  # archived
    assert_error(send(client, url="/api/rooms/nowhere/messages/"), 404, "not_found")
    assert Message.objects.count() == 0


def test_sending_in_a_public_room_joins_it(as_alice, lobby, alice):
    send(as_alice)
    assert lobby.members.filter(pk=alice.pk).exists()


def test_missing_csrf_token_is_a_json_403(lobby, alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    error = assert_error(send(client), 403, "forbidden")
    assert "CSRF" in error["detail"]
    assert_error(client.delete(one(1)), 403, "forbidden")
    assert Message.objects.count() == 0


# edit


def test_edit_own_message(as_alice, published):
    send(as_alice, "tpyo")
    response = patch(as_alice, one(1), {"body": "typo", "client_id": "e-1"})
    assert response.status_code == 200
    body = response.json()
    assert body["seq"] == 2
    assert (body["event"]["type"], body["event"]["target"], body["event"]["body"]) == (
        "edited",
        1,
        "typo",
    )
    current = as_alice.get(one(1)).json()["event"]
    assert current["body"] == "typo" and current["edited_at"] is not None
    again = patch(as_alice, one(1), {"body": "other", "client_id": "e-1"})
    assert again.status_code == 200 and again.json()["seq"] == 2


def test_edit_someone_else_s_message_is_forbidden(as_alice, bob):
    send(as_alice, "mine")
    other = Client()
    other.force_login(bob)
    assert_error(patch(other, one(1), {"body": "yours now"}), 403, "forbidden")


def test_edit_bad_targets_and_bodies(as_alice):
    send(as_alice, "mine")
    assert_error(patch(as_alice, one(9), {"body": "x"}), 400, "bad_request")
    assert_error(patch(as_alice, one(1), {"body": ""}), 400, "bad_request")
    assert_error(patch(as_alice, one(1), {"body": 3}), 400, "bad_request")
    assert_error(patch(as_alice, one(0), {"body": "x"}), 400, "bad_request")
    assert_error(patch(as_alice, one(-1), {"body": "x"}), 400, "bad_request")
    assert_error(
        patch(as_alice, "/api/rooms/lobby/messages/1e3/", {"body": "x"}), 400, "bad_request"
    )
    assert_error(
        patch(as_alice, "/api/rooms/lobby/messages/99999999999999999999/", {"body": "x"}),
        400,
        "bad_request",
    )


# delete


def test_delete_own_message_with_client_id(as_alice, published):
    send(as_alice, "oops")
    response = as_alice.delete(f"{one(1)}?client_id=d-1")
    assert response.status_code == 200
    body = response.json()
    assert (body["seq"], body["event"]["type"], body["event"]["target"]) == (2, "deleted", 1)
    assert body["event"]["user"] == "alice"
    repeat = as_alice.delete(f"{one(1)}?client_id=d-1")
    assert repeat.status_code == 200 and repeat.json()["seq"] == 2
    assert_error(as_alice.delete(one(1)), 400, "bad_request")  # already deleted
    assert as_alice.get(one(1)).json()["event"]["deleted"] is True


def test_delete_refusals(as_alice, bob, lobby):
    send(as_alice, "mine")
    other = Client()
    other.force_login(bob)
    assert_error(other.delete(one(1)), 403, "forbidden")
    assert_error(Client().delete(one(1)), 403, "forbidden")  # anonymous
    assert_error(as_alice.delete(one(5)), 400, "bad_request")
    assert_error(as_alice.delete(f"{one(1)}?client_id={'x' * 65}"), 400, "bad_request")


def test_staff_delete_anyone_s_message(as_alice, bob):
    send(as_alice, "mine")
    bob.is_staff = True
    bob.save()
    staff = Client()
    staff.force_login(bob)
    assert staff.delete(one(1)).json()["event"]["user"] == "bob"


# react


def test_react_add_noop_and_remove(as_alice, published):
    send(as_alice, "nice")
    added = react(as_alice, 1, client_id="r-1")
    assert added.status_code == 200
    assert added.json()["seq"] == 2 and added.json()["event"]["emoji"] == "👍"
    noop = react(as_alice, 1)
    assert noop.status_code == 200 and noop.json() == {"seq": None, "event": None}
    assert as_alice.get(one(1)).json()["event"]["reactions"] == [
        {"emoji": "👍", "users": ["alice"]}
    ]
    removed = react(as_alice, 1, op="remove")
    assert removed.json()["seq"] == 3 and removed.json()["event"]["op"] == "remove"
    assert react(as_alice, 1, op="remove").json()["seq"] is None
    assert Reaction.objects.count() == 0
    assert len(published()) == 3  # the message, the add, the remove


@pytest.mark.parametrize(
    "emoji", ["", "a", "👍👍", " 👍", "🏽", 7, None, ["👍"], "x" * 100, "\ud800"]
)
def test_bad_emoji_is_400(as_alice, emoji):
    send(as_alice, "nice")
    assert_error(react(as_alice, 1, emoji=emoji), 400, "bad_request")


@pytest.mark.parametrize("op", ["", "toggle", None, 1, "ADD"])
def test_bad_op_is_400(as_alice, op):
    send(as_alice, "nice")
    assert_error(react(as_alice, 1, op=op), 400, "bad_request")


def test_react_to_unknown_or_deleted_message_is_400(as_alice):
    assert_error(react(as_alice, 1), 400, "bad_request")
    send(as_alice, "soon gone")
    as_alice.delete(one(1))
    assert_error(react(as_alice, 1), 400, "bad_request")
    assert_error(react(as_alice, 2), 400, "bad_request")  # the deleted event: not a message


def test_react_refusals(client, rooms, alice, mallory):
    assert_error(react(client, 1), 403, "forbidden")
    client.force_login(mallory)
    assert_error(
        client.post(
            "/api/rooms/secret/messages/1/reactions/",
            json.dumps({"emoji": "👍", "op": "add"}),
            content_type="application/json",
        ),
        403,
        "forbidden",
    )
    response = client.get(react_url(1))
    assert_error(response, 405, "bad_request")
    assert response["Allow"] == "POST"


def test_message_url_methods(as_alice):
    response = as_alice.post(one(1), "{}", content_type="application/json")
    assert_error(response, 405, "bad_request")
    assert response["Allow"] == "GET, HEAD, PATCH, DELETE"


# the hub's path


def test_with_a_hub_the_write_goes_through_it(as_alice, alice, monkeypatch):
    asked = []

    def hub_submit(slug, user, frame):
        asked.append((slug, user, frame))
        return SendResult(error=ErrorCode.RATE_LIMITED, retry_after=2.5)

    monkeypatch.setattr(publish, "_submit", hub_submit)
    error = assert_error(send(as_alice, "hi", client_id="c-9"), 429, "rate_limited")
    assert error["retry_after"] == 2.5
    assert asked == [
        (
            "lobby",
            UserInfo(alice.id, "alice"),
            {"type": "send", "body": "hi", "client_id": "c-9", "reply_to": None},
        )
    ]
    assert Message.objects.count() == 0


def test_a_database_outage_is_503(as_alice, monkeypatch):
    from django.db import OperationalError

    def down(_requests):
        raise OperationalError("database is locked")

    monkeypatch.setattr("chat.log.append_events", down)
    assert_error(send(as_alice), 503, "unavailable")


# fuzz: whatever the JSON, the answer is the protocol's, never a 500

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
fields = st.fixed_dictionaries(
    {},
    optional={
        name: json_values | st.sampled_from(["👍", "add", "remove", "x", 1, 2**64])
        for name in ("body", "client_id", "reply_to", "emoji", "op", "seq", "type", "target")
    },
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    payload=fields | json_values,
    where=st.sampled_from(["send", "edit", "react", "read"]),
)
def test_any_json_body_gets_a_protocol_answer(as_alice, payload, where):
    if not Message.objects.exists():
        send(as_alice, "target")
    raw = json.dumps(payload)
    if where == "edit":
        response = as_alice.patch(one(1), raw, content_type="application/json")
    else:
        url = {"send": SEND, "react": react_url(1), "read": "/api/rooms/lobby/read/"}[where]
        response = as_alice.post(url, raw, content_type="application/json")
    assert response["Content-Type"] == "application/json"
    body = response.json()
    if response.status_code in (200, 201):
        assert set(body) <= {"seq", "event", "read_seq", "unread", "mentions"}
    else:
        assert response.status_code in (400, 403, 413)
        assert set(body) == {"error"}
        assert body["error"]["code"] in {c.value for c in ErrorCode}
