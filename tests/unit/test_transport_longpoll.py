"""The long-poll transport on a fake clock: a real Twisted HTTP channel over a
StringTransport. Waiting and its timeout, a client that leaves mid-wait, the presence
lease, revocation (403), and the POST that sends. No sockets, no sleeping.
"""

from __future__ import annotations

import json

import pytest
from live_fakes import ALICE, BOB, Recorder

from chat.live.limits import LiveLimits
from chat.live.longpoll import DEFAULT_TIMEOUT, MAX_TIMEOUT, HeldPoll

LIMITS = LiveLimits()
CSRF = "a" * 32  # an unmasked secret: the cookie's form, and a valid header token too


def poll(peer, query: str = "", slug: str = "lobby", **kwargs):
    return peer().request(f"/poll/rooms/{slug}/{query}", **kwargs)


def post(peer, frame: dict | None = None, *, csrf: str | None = CSRF, body=None, **kwargs):
    headers = {"Content-Type": "application/json"}
    if csrf is not None:
        headers["X-CSRFToken"] = csrf
    raw = body if body is not None else json.dumps(frame or {}).encode()
    return peer().request(
        "/poll/rooms/lobby/",
        method="POST",
        headers=headers,
        body=raw,
        cookies={"csrftoken": CSRF},
        **kwargs,
    )


def answered(client) -> bool:
    return client.transport.value().startswith(b"HTTP/1.1 ")


def held(live) -> tuple[HeldPoll, ...]:
    return live.open_connections.of("longpoll")


def test_a_poll_waits_for_the_next_event(peer, deliver, live):
    client = poll(peer, "?since=0")
    assert not answered(client)
    assert len(held(live)) == 1
    deliver(1)
    status, body = client.json()
    assert status == 200
    assert [e["seq"] for e in body["events"]] == [1] and body["last_seq"] == 1
    assert held(live) == ()


def test_a_poll_behind_the_room_is_answered_at_once(peer, deliver):
    for seq in (1, 2, 3):
        deliver(seq)
    status, body = poll(peer, "?since=1").json()
    assert status == 200
    assert [e["seq"] for e in body["events"]] == [2, 3] and body["last_seq"] == 3


def test_a_quiet_poll_is_answered_empty_at_its_timeout(peer, clock):
    client = poll(peer, "?since=0&timeout=5")
    clock.advance(4.9)
    assert not answered(client)
    clock.advance(0.2)
    assert client.json() == (200, {"events": [], "last_seq": 0})


@pytest.mark.parametrize(("asked", "waited"), [(None, DEFAULT_TIMEOUT), (600, MAX_TIMEOUT)])
def test_the_timeout_defaults_and_is_capped(peer, clock, asked, waited):
    client = poll(peer, "" if asked is None else f"?timeout={asked}")
    clock.advance(waited - 0.1)
    assert not answered(client)
    clock.advance(0.2)
    assert client.json()[0] == 200


@pytest.mark.parametrize("query", ["?since=-1", "?since=x", "?timeout=1.5", "?since=%C2%B9"])
def test_a_bad_since_or_timeout_is_400(peer, query):
    status, body = poll(peer, query).json()
    assert (status, body["error"]["code"]) == (400, "bad_request")


def test_a_client_that_leaves_mid_wait_cancels_it(peer, live, hub):
    client = poll(peer, "?since=0")
    room = hub.rooms["lobby"]
    assert len(room.waiters) == 1
    client.lose()
    assert room.waiters == set()
    assert held(live) == ()


def test_a_poll_user_is_present_for_its_lease_not_only_mid_request(
    peer, hub, clock, authorizer, deliver
):
    authorizer.sessions["k-bob"] = BOB
    watcher = Recorder(ALICE)
    room_poll = poll(peer, "?since=0&timeout=5", session="k-bob")
    room = hub.rooms["lobby"]
    hub.subscribe(room, watcher, None)
    assert watcher.of_type("presence")[-1]["users"] == ["alice", "bob"]
    deliver(1)  # answers the poll; bob is still present between polls
    assert room_poll.json()[0] == 200
    clock.advance(5 + LIMITS.poll_lease_grace - 1)
    assert "bob" in watcher.of_type("presence")[-1]["users"]
    poll(peer, "?since=1&timeout=5", session="k-bob")  # polls again: the lease renews
    clock.advance(5 + LIMITS.poll_lease_grace - 1)
    assert "bob" in watcher.of_type("presence")[-1]["users"]
    clock.advance(2)  # the lease ran out; the departure is told an interval later
    clock.advance(LIMITS.presence_interval)
    assert watcher.of_type("presence")[-1]["users"] == ["alice"]


def test_a_held_poll_carries_its_user_and_session(peer, live, authorizer):
    authorizer.sessions["k-bob"] = BOB
    poll(peer, "?since=0", session="k-bob")
    (connection,) = held(live)
    assert (connection.user, connection.session_key) == (BOB, "k-bob")


def test_a_held_poll_whose_access_is_revoked_is_403(peer, live, hub, authorizer):
    authorizer.sessions["k-bob"] = BOB
    client = poll(peer, "?since=0", session="k-bob")
    (connection,) = held(live)
    connection.drop("revoked")
    status, body = client.json()
    assert (status, body["error"]["code"]) == (403, "forbidden")
    assert hub.rooms["lobby"].waiters == set()
    assert held(live) == ()


def test_a_revocation_the_room_makes_is_403_too(peer, live, hub, authorizer):
    authorizer.sessions["k-bob"] = BOB
    client = poll(peer, "?since=0", session="k-bob")
    hub.rooms["lobby"].revoke(lambda user, session: user == BOB)
    status, body = client.json()
    assert (status, body["error"]["code"]) == (403, "forbidden")
    assert held(live) == ()


def test_shutdown_answers_held_polls_empty(peer, hub):
    client = poll(peer, "?since=0")
    hub.drop_all("shutdown")
    assert client.json() == (200, {"events": [], "last_seq": 0})


# -- the POST that sends --------------------------------------------------------------


def test_a_post_sends_and_is_201_after_the_commit_and_200_for_a_resend(peer, authorizer, store):
    authorizer.sessions["k-alice"] = ALICE
    frame = {"body": "hi", "client_id": "c-1"}
    assert post(peer, frame, session="k-alice").json() == (201, {"seq": 1})
    assert post(peer, frame, session="k-alice").json() == (200, {"seq": 1})
    assert len(store.appended) == 1


@pytest.mark.parametrize("csrf", [None, "b" * 32, "short"])
def test_a_post_without_the_right_csrf_token_is_403(peer, authorizer, store, csrf):
    authorizer.sessions["k-alice"] = ALICE
    status, body = post(peer, {"body": "hi"}, csrf=csrf, session="k-alice").json()
    assert (status, body["error"]["code"]) == (403, "forbidden")
    assert store.appended == []


def test_a_post_body_over_the_frame_limit_is_413(peer, settings, authorizer):
    settings.CHAT_MAX_FRAME_BYTES = 100
    authorizer.sessions["k-alice"] = ALICE
    frame = {"body": "x" * 200}
    status, body = post(peer, frame, session="k-alice").json()
    assert (status, body["error"]["code"]) == (413, "too_large")


def test_a_rate_limited_post_is_429_with_retry_after(peer, authorizer):
    authorizer.sessions["k-alice"] = ALICE
    for n in range(3):  # the hub fixture allows 3 sends a 10 s
        assert post(peer, {"body": f"m{n}"}, session="k-alice").json()[0] == 201
    status, body = post(peer, {"body": "one more"}, session="k-alice").json()
    assert (status, body["error"]["code"]) == (429, "rate_limited")
    assert body["error"]["retry_after"] > 0


def test_a_post_whose_client_leaves_before_the_commit_is_stored_but_not_answered(
    peer, authorizer, store
):
    authorizer.sessions["k-alice"] = ALICE
    authorizer.hold = True
    client = post(peer, {"body": "hi", "client_id": "c-1"}, session="k-alice")
    client.lose()
    authorizer.release()
    assert [r.client_id for r in store.appended] == ["c-1"]  # a resend learns its seq
    assert not answered(client)


# -- methods --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "method", "allow"),
    [
        ("/ws/rooms/lobby/", "POST", "GET"),
        ("/events/rooms/lobby/", "DELETE", "GET"),
        ("/events/rooms/lobby/", "HEAD", "GET"),
        ("/poll/rooms/lobby/", "PUT", "GET, POST"),
    ],
)
def test_a_wrong_method_is_the_json_405_with_allow(peer, path, method, allow):
    client = peer().request(path, method=method)
    status, headers, body = client.response()
    assert status == 405
    assert headers["allow"] == allow
    assert headers["content-type"] == "application/json"
    if method != "HEAD":
        assert json.loads(body)["error"]["code"] == "bad_request"
