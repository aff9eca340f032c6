"""Bearer tokens on every transport of a real server (PROTOCOL.md "Authentication",
"Losing access"): WebSocket, SSE, long-poll GET and POST, the inbox streams and the REST
API accept ``Authorization: Bearer``; a bad, revoked or expired token is a 401 on each
(the WebSocket handshake: HTTP 401); a token in the query string is ignored; revoking a
token through the page ends its open connections at once (close 4403, the SSE stream
ended, a held long-poll answered 403), and one that expires mid-stream is ended by the
room check.
"""

from __future__ import annotations

import asyncio
import json
import time
from types import SimpleNamespace

import httpx
import pytest
from live_clients import PollClient, SSEClient, WSClient, provision, run, shared_server
from token_testing import bearer, make_tokens
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

PASSWORD = "pw-token-live-8812"
WITHIN = 1.0  # PROTOCOL.md: a revoked token's connections end within 1 s
ROOM_CHECK = 1  # the room check's interval on this module's server (expiry)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    server = shared_server(
        tmp_path_factory,
        "token-live",
        {"CHAT_RATE_LIMIT": "0", "CHAT_ROOM_CHECK_SECONDS": str(ROOM_CHECK)},
    )
    accounts = provision(
        server,
        users=[("tara", PASSWORD), ("omar", PASSWORD)],
        rooms=[
            {"slug": "tok-open"},
            {"slug": "tok-private", "public": False, "members": ["tara"]},
        ],
    )
    return SimpleNamespace(server=server, accounts=accounts)


def ws_url(server, path: str) -> str:
    return server.url.replace("http://", "ws://", 1) + path


async def ws_status(server, path: str, headers: dict[str, str]) -> int | None:
    """The HTTP status a WebSocket handshake is refused with (None: let in)."""
    try:
        conn = await connect(ws_url(server, path), additional_headers=headers, open_timeout=10)
    except InvalidStatus as error:
        return error.response.status_code
    await conn.close()
    return None


async def sse_status(server, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=10, trust_env=False) as client,
        client.stream("GET", path, headers=headers) as response,
    ):
        if response.status_code != 200:
            return response.status_code, await response.aread()
        return 200, b""


def test_a_good_token_works_on_every_transport(world):
    server = world.server
    secret = make_tokens(server, ("all", "tara", None))["all"]

    async def main():
        # REST: read and write, no CSRF token, no cookie.
        async with httpx.AsyncClient(
            base_url=server.url, headers=bearer(secret), timeout=10, trust_env=False
        ) as api:
            me = await api.get("/api/me/")
            assert me.status_code == 200 and me.json()["user"] == "tara"
            sent = await api.post(
                "/api/rooms/tok-private/messages/", json={"body": "rest", "client_id": "r-1"}
            )
            assert sent.status_code == 201, sent.text
            assert "set-cookie" not in sent.headers
        # WebSocket: hello names the user; a send is acked.
        async with await WSClient.connect(
            server, "tok-private", headers=bearer(secret), since=0
        ) as ws:
            hello = await ws.wait_for(lambda f: f.get("type") == "hello", what="hello")
            assert hello["user"] == "tara"
            seq = await ws.send_and_ack("ws", client_id="w-1")
            # SSE sees the private room's events with the token.
            sse = await SSEClient.connect(server, "tok-private", since=0, headers=bearer(secret))
            async with sse:
                assert sse.status == 200
                await sse.wait_seq(seq)
            # Long-poll GET and a POST without CSRF.
            poll = PollClient(server, "tok-private")
            try:
                got = await poll.get(since=0, timeout=1, headers=bearer(secret))
                assert got.status_code == 200 and got.json()["last_seq"] >= seq
                posted = await poll.post("poll", "p-1", csrf=None, headers=bearer(secret))
                assert posted.status_code == 201, posted.text
            finally:
                await poll.close()
        # The inbox: WebSocket, SSE and long-poll.
        conn = await connect(
            ws_url(server, "/ws/me/"), additional_headers=bearer(secret), open_timeout=10
        )
        hello = json.loads(await asyncio.wait_for(conn.recv(), 10))
        assert hello["type"] == "hello" and hello["user"] == "tara"
        await conn.close()
        assert (await sse_status(server, "/events/me/", bearer(secret)))[0] == 200
        async with httpx.AsyncClient(base_url=server.url, timeout=10, trust_env=False) as h:
            inbox = await h.get("/poll/me/", headers=bearer(secret))
            assert inbox.status_code == 200 and inbox.json()["events"][0]["user"] == "tara"

    run(main())


def test_bad_tokens_are_401_on_every_transport_and_query_tokens_are_ignored(world):
    server = world.server
    made = make_tokens(server, ("revoked", "tara", None), ("expired", "tara", -5))
    revoked, expired = made["revoked"], made["expired"]
    server.manage(
        "shell",
        "-c",
        "from chat.models import Token; from chat import tokens; "
        "[tokens.revoke(t) for t in Token.objects.filter(name='revoked')]",
    )
    bad = [revoked, expired, "prl_" + "A" * 43, "not-a-token", ""]
    before = len(history_of(server, "tok-open"))

    async def main():
        for secret in bad:
            headers = {"Authorization": f"Bearer {secret}".strip()}
            for path in ("/ws/rooms/tok-open/", "/ws/me/"):
                assert await ws_status(server, path, headers) == 401, (path, secret)
            for path in ("/events/rooms/tok-open/", "/events/me/"):
                status, body = await sse_status(server, path, headers)
                assert status == 401 and json.loads(body)["error"]["code"] == "unauthorized"
            async with httpx.AsyncClient(base_url=server.url, timeout=10, trust_env=False) as h:
                for method, path, body in (
                    ("GET", "/poll/rooms/tok-open/?timeout=1", None),
                    ("POST", "/poll/rooms/tok-open/", {"body": "x", "client_id": "bad-1"}),
                    ("GET", "/poll/me/", None),
                    ("GET", "/api/me/", None),
                    ("POST", "/api/rooms/tok-open/messages/", {"body": "x", "client_id": "b"}),
                    ("GET", "/", None),
                ):
                    answer = await h.request(method, path, json=body, headers=headers)
                    assert answer.status_code == 401, (method, path, secret, answer.text)
                    assert answer.json()["error"]["code"] == "unauthorized"
        # A good token in the query string signs nobody in: anonymous, as without it.
        good = make_tokens(server, ("query", "tara", None))["query"]
        for name in ("token", "access_token"):
            assert await ws_status(server, f"/ws/rooms/tok-private/?{name}={good}", {}) == 403
            assert await ws_status(server, f"/ws/me/?{name}={good}", {}) == 403
            async with httpx.AsyncClient(base_url=server.url, timeout=10, trust_env=False) as h:
                answer = await h.post(
                    f"/api/rooms/tok-open/messages/?{name}={good}",
                    json={"body": "x", "client_id": "q-1"},
                )
                assert answer.status_code == 403

    run(main())
    assert len(history_of(server, "tok-open")) == before  # nothing stored


async def inbox_close_code(conn, timeout: float) -> int | None:
    """Read an inbox WebSocket's frames until the server closes it: its close code."""
    try:
        async with asyncio.timeout(timeout):
            async for _frame in conn:
                pass
    except ConnectionClosed:
        pass
    return conn.close_code


async def sse_ended(sse: SSEClient, timeout: float) -> None:
    """Wait until the server ends the SSE stream."""
    await asyncio.wait_for(asyncio.shield(sse._reader), timeout)


def history_of(server, slug: str) -> list[dict]:
    with server.client() as client:
        return client.get(f"/api/rooms/{slug}/messages/", params={"limit": 200}).json()["events"]


async def revoke_on_page(server, account, name: str) -> None:
    """Revoke the token ``name`` through /accounts/tokens/ as its owner would."""
    cookies = {"sessionid": account.sessionid, "csrftoken": account.csrftoken}
    async with httpx.AsyncClient(
        base_url=server.url, cookies=cookies, timeout=10, trust_env=False
    ) as page:
        listing = (await page.get("/accounts/tokens/")).text
        marker = listing.index(f'aria-label="Revoke {name}"')
        start = listing.rindex('name="token" value="', 0, marker) + len('name="token" value="')
        pk = listing[start : listing.index('"', start)]
        answer = await page.post(
            "/accounts/tokens/",
            data={"action": "revoke", "token": pk, "csrfmiddlewaretoken": account.csrftoken},
        )
        assert answer.status_code == 302, answer.text


def test_revoking_a_token_ends_its_connections_at_once(world):
    server = world.server
    made = make_tokens(server, ("doomed", "tara", None), ("kept", "tara", None))
    doomed, kept = made["doomed"], made["kept"]

    async def main():
        ws = await WSClient.connect(server, "tok-open", headers=bearer(doomed))
        other = await WSClient.connect(server, "tok-open", headers=bearer(kept))
        sse = await SSEClient.connect(server, "tok-open", headers=bearer(doomed))
        inbox = await connect(
            ws_url(server, "/ws/me/"), additional_headers=bearer(doomed), open_timeout=10
        )
        poll = PollClient(server, "tok-open")
        held = asyncio.ensure_future(poll.get(timeout=30, headers=bearer(doomed)))
        await ws.wait_for(lambda f: f.get("type") == "hello", what="hello")
        await asyncio.sleep(0.3)  # the long-poll is held
        started = time.monotonic()
        await revoke_on_page(server, world.accounts["tara"], "doomed")
        revoked_at = time.monotonic()
        assert await ws.wait_closed(WITHIN + 1) == 4403
        ws_ended = time.monotonic() - revoked_at
        await sse_ended(sse, WITHIN + 1)
        sse_end = time.monotonic() - revoked_at
        answer = await asyncio.wait_for(held, WITHIN + 1)
        assert answer.status_code == 403
        assert await inbox_close_code(inbox, WITHIN + 1) == 4403
        assert ws_ended < WITHIN and sse_end < WITHIN, (ws_ended, sse_end)
        # The other token's connection is untouched; the next attempt is a 401.
        assert not other.closed
        seq = await other.send_and_ack("still here", client_id="k-1")
        assert seq > 0
        assert await ws_status(server, "/ws/rooms/tok-open/", bearer(doomed)) == 401
        await other.close()
        await sse.close()
        await poll.close()
        return time.monotonic() - started

    run(main())


def test_a_token_that_expires_mid_stream_is_ended_by_the_room_check(world):
    server = world.server
    secret = make_tokens(server, ("brief", "tara", 3))["brief"]

    async def main():
        ws = await WSClient.connect(server, "tok-private", headers=bearer(secret))
        sse = await SSEClient.connect(server, "tok-private", headers=bearer(secret))
        inbox = await connect(
            ws_url(server, "/ws/me/"), additional_headers=bearer(secret), open_timeout=10
        )
        assert sse.status == 200
        # Expires 3 s after it was made; the room check runs every ROOM_CHECK seconds.
        assert await ws.wait_closed(3 + ROOM_CHECK + 3) == 4403
        await sse_ended(sse, ROOM_CHECK + 3)
        assert await inbox_close_code(inbox, ROOM_CHECK + 6) == 4403
        await sse.close()
        assert await ws_status(server, "/ws/rooms/tok-private/", bearer(secret)) == 401

    run(main(), timeout=60)
