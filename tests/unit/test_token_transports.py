"""Bearer tokens on the live transports, on a fake clock (real Twisted HTTP channels over a
StringTransport; the Authorizer is the conftest's fake, which knows credential keys as it
knows session keys): the header becomes the connection's credential, a token that signs
in nobody is a 401 before anything else, the long-poll POST needs no CSRF token with a
token, and a token in the query string is never read. The real Authorizer and store are
tests/integration/test_token_live.py's.
"""

from __future__ import annotations

import json

import pytest
from live_fakes import ALICE, BOB

from chat import tokens

GOOD = "prl_" + "G" * 43
UNKNOWN = "prl_" + "U" * 43


@pytest.fixture
def known(authorizer):
    authorizer.sessions[tokens.credential(GOOD)] = ALICE
    authorizer.private["lobby"] = {ALICE.id}  # a private room: only alice may read it
    return authorizer


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}".strip()}


def assert_401(client) -> None:
    status, body = client.json()
    assert status == 401 and body["error"]["code"] == "unauthorized", (status, body)


BAD = [UNKNOWN, "", "junk", "prl_short", "prl_" + "A" * 5000, "a b"]


def test_a_token_opens_a_websocket_as_its_user(ws, known):
    client = ws(headers=bearer(GOOD))
    assert client.upgraded, client.transport.value()
    hello = client.of_type("hello")[0]
    assert hello["user"] == "alice"


@pytest.mark.parametrize("secret", BAD)
def test_a_bad_token_is_a_401_handshake(ws, known, secret):
    client = ws(headers=bearer(secret))
    assert not client.upgraded
    assert_401(client)


@pytest.mark.parametrize("secret", BAD)
def test_a_bad_token_is_a_401_on_sse_and_long_poll(peer, known, secret, store):
    assert_401(peer().request("/events/rooms/lobby/", headers=bearer(secret)))
    assert_401(peer().request("/poll/rooms/lobby/?since=0", headers=bearer(secret)))
    frame = json.dumps({"body": "x", "client_id": "c-1"}).encode()
    posted = peer().request(
        "/poll/rooms/lobby/",
        method="POST",
        headers={"Content-Type": "application/json", **bearer(secret)},
        body=frame,
    )
    assert_401(posted)
    assert store.appended == []


def test_a_token_post_needs_no_csrf_token(peer, known, store):
    frame = json.dumps({"body": "hi", "client_id": "c-1"}).encode()
    posted = peer().request(
        "/poll/rooms/lobby/",
        method="POST",
        headers={"Content-Type": "application/json", **bearer(GOOD)},
        body=frame,
    )
    assert posted.json() == (201, {"seq": 1})
    assert len(store.appended) == 1


def test_a_session_post_still_needs_its_csrf_token(peer, known, store):
    known.sessions["k-alice"] = ALICE
    frame = json.dumps({"body": "hi", "client_id": "c-1"}).encode()
    posted = peer().request(
        "/poll/rooms/lobby/",
        method="POST",
        headers={"Content-Type": "application/json"},
        body=frame,
        session="k-alice",
    )
    status, body = posted.json()
    assert (status, body["error"]["code"]) == (403, "forbidden")
    assert store.appended == []


@pytest.mark.parametrize("name", ["token", "access_token", "bearer"])
def test_a_token_in_the_query_string_is_not_read(ws, peer, known, name):
    # Anonymous, as without it: the private room refuses with 403, not 401, not alice.
    client = ws(query=f"?{name}={GOOD}")
    assert not client.upgraded and client.json()[0] == 403
    assert peer().request(f"/events/rooms/lobby/?{name}={GOOD}").json()[0] == 403


def test_the_token_wins_over_a_cookie(ws, known):
    known.sessions["k-bob"] = BOB
    client = ws(headers=bearer(GOOD), session="k-bob")
    assert client.of_type("hello")[0]["user"] == "alice"
    refused = ws(headers=bearer(UNKNOWN), session="k-bob")
    assert_401(refused)  # a bad token is never "fall back to the cookie"


def test_another_scheme_is_not_a_token(ws, known):
    known.private.pop("lobby")
    client = ws(headers={"Authorization": "Basic YWxpY2U6cHc="})
    assert client.upgraded and client.of_type("hello")[0]["user"] is None
