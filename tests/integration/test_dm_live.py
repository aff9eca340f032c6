"""Direct messages against a real serve.py: ``POST /api/dms/`` reaches both members'
inbox streams as a ``rooms`` frame, the two talk over WebSocket with counts in their
inboxes, and a third user (and anonymous) is refused on every transport and hears
nothing of it in their inbox."""

from __future__ import annotations

import asyncio
import json
import secrets

import httpx
import pytest
from live_clients import PollClient, SSEClient, WSClient, handshake_refusal, provision, run
from websockets.asyncio.client import connect

PASSWORD = "pw-dm-7741"
TAG = secrets.token_hex(3)


def is_type(kind: str):
    return lambda f: isinstance(f, dict) and f.get("type") == kind


@pytest.fixture(scope="module")
def people(live_server):
    users = {who: f"d{TAG}{who}" for who in ("alice", "bob", "carol")}
    accounts = provision(live_server, users=[(u, PASSWORD) for u in users.values()])
    return users, {who: accounts[u] for who, u in users.items()}


async def inbox(server, account) -> WSClient:
    conn = await connect(
        server.url.replace("http://", "ws://", 1) + "/ws/me/",
        additional_headers={"Cookie": account.cookie_header},
        compression=None,
        proxy=None,
        ping_interval=None,
        open_timeout=10,
        close_timeout=2,
    )
    ws = WSClient(conn)
    await ws.wait_for(is_type("hello"), what="the inbox hello")
    return ws


def open_dm(server, account, username: str) -> httpx.Response:
    with httpx.Client(base_url=server.url, timeout=10, trust_env=False) as client:
        return client.post(
            "/api/dms/",
            content=json.dumps({"user": username}),
            headers={
                "Cookie": account.cookie_header,
                "X-CSRFToken": account.csrftoken,
                "Content-Type": "application/json",
            },
        )


def rooms_frame_with(slug: str):
    return lambda f: is_type("rooms")(f) and any(r["slug"] == slug for r in f["rooms"])


def test_a_new_dm_reaches_both_inboxes_and_they_talk(live_server, people):
    users, accounts = people
    alice, bob, carol = accounts["alice"], accounts["bob"], accounts["carol"]

    async def main():
        inboxes = {who: await inbox(live_server, accounts[who]) for who in accounts}
        made = await asyncio.to_thread(open_dm, live_server, alice, users["bob"])
        assert made.status_code == 201, made.text
        slug = made.json()["slug"]
        assert made.json()["name"] == users["bob"]
        for who, other in (("alice", "bob"), ("bob", "alice")):
            frame = await inboxes[who].wait_for(rooms_frame_with(slug), what=f"{who}'s rooms")
            room = next(r for r in frame["rooms"] if r["slug"] == slug)
            assert (room["name"], room["kind"], room["read_seq"], room["unread"]) == (
                users[other],
                "direct",
                0,
                0,
            )
        again = await asyncio.to_thread(open_dm, live_server, bob, users["alice"])
        assert (again.status_code, again.json()["slug"]) == (200, slug)

        async with (
            await WSClient.connect(live_server, slug, alice) as alice_ws,
            await WSClient.connect(live_server, slug, bob) as bob_ws,
        ):
            await bob_ws.wait_for(is_type("hello"), what="bob's room hello")
            seq = await alice_ws.send_and_ack("just between us", "dm-1")
            got = await bob_ws.wait_for(
                lambda f: is_type("message")(f) and f["seq"] == seq, what="alice's message"
            )
            assert got["body"] == "just between us"
            activity = await inboxes["bob"].wait_for(
                lambda f: is_type("activity")(f) and f["room"] == slug, what="bob's activity"
            )
            assert (activity["unread"], activity["user"]) == (1, users["alice"])
            await bob_ws.send_and_ack("got it", "dm-2")
            await alice_ws.wait_for(
                lambda f: is_type("message")(f) and f.get("body") == "got it", what="bob's reply"
            )

            # carol: refused on every transport, and her inbox heard nothing of it.
            assert await handshake_refusal(live_server, slug, carol) == 403
            assert await handshake_refusal(live_server, slug, None) == 403
            for account in (carol, None):
                sse = await SSEClient.connect(live_server, slug, account)
                assert sse.status == 403
                poll = PollClient(live_server, slug, account)
                try:
                    assert (await poll.get(since=0, timeout=1)).status_code == 403
                    sent = await poll.post("let me in", "c-1")
                    assert sent.status_code == 403
                finally:
                    await poll.close()
            await asyncio.sleep(0.5)  # anything for carol would have arrived by now
            assert slug not in json.dumps(inboxes["carol"].frames)
        for ws in inboxes.values():
            await ws.close()
        return slug

    slug = run(main())
    with httpx.Client(base_url=live_server.url, timeout=10, trust_env=False) as client:
        headers = {"Cookie": carol.cookie_header}
        assert client.get(f"/api/rooms/{slug}/messages/", headers=headers).status_code == 403
        listed = client.get("/api/rooms/", headers=headers).json()
        assert slug not in json.dumps(listed)
        fresh = client.get("/api/me/", headers=headers).json()
        assert slug not in json.dumps(fresh)
        found = client.get("/api/search/", params={"q": "between"}, headers=headers).json()
        assert found["results"] == []
        mine = client.get(
            "/api/search/", params={"q": "between"}, headers={"Cookie": bob.cookie_header}
        ).json()
        assert [r["room"] for r in mine["results"]] == [slug]
