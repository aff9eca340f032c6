"""The v2 client frames on the WebSocket and the long-poll POST: ``edit``, ``delete``,
``react``, ``read``, ``typing`` (PROTOCOL.md "Client -> server").

Writes are acked with their seq or answered with an error that keeps the connection;
``read`` and ``typing`` get no answer on a WebSocket and a 204 over long-poll. The hub,
store and reads are tests/unit/conftest.py's fakes (the log's answers about targets are
tests/unit/test_log_writes.py's).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from live_fakes import ALICE
from test_transport_longpoll import post
from twisted.internet import defer

from chat.live.records import WriteKind


@pytest.fixture
def alice_ws(ws, authorizer):
    authorizer.sessions["k-alice"] = ALICE
    peer = ws("lobby", session="k-alice")
    peer.read()  # hello, presence
    return peer


def test_edit_delete_react_are_acked_with_their_seqs(alice_ws, store):
    alice_ws.send_json({"type": "send", "body": "hi", "client_id": "s"})
    alice_ws.send_json({"type": "edit", "target": 1, "body": "hi!", "client_id": "e"})
    alice_ws.send_json({"type": "delete", "target": 1, "client_id": "d"})
    acks = [(a["client_id"], a["seq"]) for a in alice_ws.of_type("ack")]
    assert acks == [("s", 1), ("e", 2), ("d", 3)]  # (the hub allows 3 writes a 10 s)
    assert [r.kind for r in store.appended] == [WriteKind.SEND, WriteKind.EDIT, WriteKind.DELETE]


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "edit", "target": "one", "body": "x", "client_id": "c"},
        {"type": "delete", "client_id": "c"},
        {"type": "react", "target": 1, "emoji": "not one", "op": "add", "client_id": "c"},
        {"type": "react", "target": 1, "emoji": "👍", "op": "sideways", "client_id": "c"},
        {"type": "send", "body": "x", "reply_to": [1], "client_id": "c"},
    ],
)
def test_a_malformed_write_is_bad_request_and_the_socket_stays(alice_ws, store, deliver, frame):
    alice_ws.send_json(frame)
    (error,) = alice_ws.of_type("error")
    assert (error["code"], error["client_id"]) == ("bad_request", "c")
    assert store.appended == []
    deliver(1)
    assert [e["seq"] for e in alice_ws.of_type("message")] == [1]


def test_an_anonymous_edit_is_forbidden(ws, store):
    peer = ws("lobby")
    peer.send_json({"type": "edit", "target": 1, "body": "x", "client_id": "c"})
    (error,) = peer.of_type("error")
    assert error["code"] == "forbidden" and store.appended == []


def test_a_read_frame_goes_to_the_reads_and_gets_no_answer(alice_ws, live):
    alice_ws.send_json({"type": "read", "seq": 7})
    assert live.reads.reads == [("lobby", ALICE, 7)]
    assert alice_ws.of_type("error") == [] and alice_ws.of_type("ack") == []


def test_a_refused_read_is_answered_with_its_error(alice_ws, live):
    def refuse(slug, user, seq):
        return defer.succeed(SimpleNamespace(error="forbidden", detail="Not a member."))

    live.reads.read = refuse
    alice_ws.send_json({"type": "read", "seq": 7})
    (error,) = alice_ws.of_type("error")
    assert (error["code"], error["detail"]) == ("forbidden", "Not a member.")


def test_the_hello_carries_the_read_position(ws, authorizer, live):
    authorizer.sessions["k-alice"] = ALICE
    live.reads.position = lambda room, user: defer.succeed(5 if user == ALICE else None)
    hello = ws("lobby", session="k-alice").read()[0]
    assert (hello["type"], hello["read_seq"]) == ("hello", 5)


# -- long-poll POST with "type" ----------------------------------------------------------


def status_of(client) -> int:
    return int(client.transport.value().split(b" ", 2)[1])


def test_a_typed_post_writes_like_the_websocket(peer, authorizer, store):
    authorizer.sessions["k-alice"] = ALICE
    assert post(peer, {"body": "hi"}, session="k-alice").json() == (201, {"seq": 1})
    frame = {"type": "react", "target": 1, "emoji": "🎉", "op": "add", "client_id": "r"}
    assert post(peer, frame, session="k-alice").json() == (201, {"seq": 2})
    assert post(peer, frame, session="k-alice").json() == (200, {"seq": 2})
    assert [r.kind for r in store.appended] == [WriteKind.SEND, WriteKind.REACT]


def test_read_and_typing_posts_are_204(peer, authorizer, live):
    authorizer.sessions["k-alice"] = ALICE
    assert status_of(post(peer, {"type": "read", "seq": 3}, session="k-alice")) == 204
    assert status_of(post(peer, {"type": "typing"}, session="k-alice")) == 204
    assert live.reads.reads == [("lobby", ALICE, 3)]


def test_a_refused_read_post_has_the_error_status(peer, authorizer, live):
    authorizer.sessions["k-alice"] = ALICE
    live.reads.read = lambda *a: defer.succeed(SimpleNamespace(error="bad_request", detail="x"))
    status, body = post(peer, {"type": "read", "seq": -1}, session="k-alice").json()
    assert (status, body["error"]["code"]) == (400, "bad_request")


@pytest.mark.parametrize(
    ("frame", "status", "code"),
    [
        ({"type": "shout"}, 400, "bad_request"),
        ({"type": "edit", "target": 0, "body": "x"}, 400, "bad_request"),
        ({"type": "react", "target": 1, "emoji": "👍👍", "op": "add"}, 400, "bad_request"),
        ({"type": "edit", "target": 1, "body": "x" * 101}, 413, "too_large"),
    ],
)
def test_malformed_typed_posts_store_nothing(peer, authorizer, store, frame, status, code):
    authorizer.sessions["k-alice"] = ALICE
    got_status, body = post(peer, frame, session="k-alice").json()
    assert (got_status, body["error"]["code"]) == (status, code)
    assert store.appended == []


def test_anonymous_typing_is_forbidden(peer):
    status, body = post(peer, {"type": "typing"}).json()
    assert (status, body["error"]["code"]) == (403, "forbidden")
