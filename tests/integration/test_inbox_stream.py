"""The inbox stream and read positions against a real serve.py (PROTOCOL.md "The inbox
stream (v2)", "read", guarantee 8): every inbox transport, what a member sees when others
write and when they read, the refusals, and the ends."""

from __future__ import annotations

import asyncio
import json
import secrets
from types import SimpleNamespace

import httpx
import pytest
from live_clients import SSEClient, WSClient, provision, run
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

PASSWORD = "pw-inbox-5531"
TAG = secrets.token_hex(3)


def name(kind: str) -> str:
    return f"in-{kind}-{TAG}"


def is_type(kind: str):
    return lambda f: isinstance(f, dict) and f.get("type") == kind


@pytest.fixture(scope="module")
def world(live_server):
    users = {who: f"i{TAG}{who}" for who in ("alice", "bob", "carol", "dave")}
    rooms = {
        "main": {"slug": name("main"), "members": [users["alice"], users["bob"]]},
        "other": {"slug": name("other"), "members": [users["bob"]]},
        "quiet": {"slug": name("quiet"), "members": [users["dave"]]},
    }
    accounts = provision(
        live_server, users=[(u, PASSWORD) for u in users.values()], rooms=list(rooms.values())
    )
    return SimpleNamespace(
        server=live_server,
        users=users,
        rooms={k: v["slug"] for k, v in rooms.items()},
        accounts={who: accounts[u] for who, u in users.items()},
    )


def me_url(server) -> str:
    return server.url.replace("http://", "ws://", 1) + "/ws/me/"


async def inbox_ws(server, account=None, headers=None) -> WSClient:
    extra = dict(headers or {})
    if account is not None:
        extra["Cookie"] = account.cookie_header
    conn = await connect(
        me_url(server),
        additional_headers=extra,
        compression=None,
        proxy=None,
        ping_interval=None,
        open_timeout=10,
        close_timeout=2,
    )
    ws = WSClient(conn)
    await ws.wait_for(is_type("hello"), what="the inbox hello")
    return ws


async def inbox_sse(server, account) -> SSEClient:
    client = httpx.AsyncClient(
        base_url=server.url, timeout=httpx.Timeout(10, read=None), trust_env=False
    )
    headers = {"Accept": "text/event-stream", "Cookie": account.cookie_header}
    request = client.build_request("GET", "/events/me/", headers=headers)
    response = await client.send(request, stream=True)
    return SSEClient(client, response)


def http(server, account=None) -> httpx.Client:
    headers = {"Cookie": account.cookie_header} if account else {}
    return httpx.Client(base_url=server.url, timeout=70, headers=headers, trust_env=False)


def api_read(server, account, slug: str, seq) -> httpx.Response:
    with http(server, account) as client:
        return client.post(
            f"/api/rooms/{slug}/read/",
            content=json.dumps({"seq": seq}),
            headers={"Content-Type": "application/json", "X-CSRFToken": account.csrftoken},
        )


def room_of(hello: dict, slug: str) -> dict:
    return next(r for r in hello["rooms"] if r["slug"] == slug)


def test_anonymous_inboxes_are_refused_on_every_transport(world):
    async def main():
        with pytest.raises(InvalidStatus) as refused:
            await inbox_ws(world.server)
        return refused.value.response.status_code

    assert run(main()) == 403
    with http(world.server) as client:
        assert client.get("/events/me/").status_code == 403
        assert client.get("/poll/me/").status_code == 403
        assert client.get("/ws/me/nothing/").status_code == 404
    with http(world.server, world.accounts["alice"]) as client:
        foreign = client.get("/poll/me/", headers={"Origin": "http://evil.example"})
        assert foreign.status_code == 403


def test_others_messages_are_activity_and_a_read_reaches_every_connection_of_the_reader(world):
    server, slug = world.server, world.rooms["main"]
    alice, bob = world.accounts["alice"], world.accounts["bob"]

    async def main():
        inbox = await inbox_ws(server, alice)
        hello = inbox.frames[0]
        assert hello["user"] == world.users["alice"]
        assert [r["slug"] for r in hello["rooms"]] == [slug]
        start = room_of(hello, slug)
        async with (
            await WSClient.connect(server, slug, bob) as bob_ws,
            await WSClient.connect(server, slug, alice) as alice_ws,
        ):
            room_hello = await alice_ws.wait_for(is_type("hello"), what="room hello")
            assert room_hello["read_seq"] == start["read_seq"]
            first = await bob_ws.send_and_ack("hello there", "m-1")
            second = await bob_ws.send_and_ack(f"hi @{world.users['alice']}", "m-2")
            await alice_ws.send_and_ack("my own", "m-3")  # not counted for alice
            activity = [
                await inbox.wait_for(
                    lambda f, s=s: is_type("activity")(f) and f["seq"] == s, what=f"activity {s}"
                )
                for s in (first, second)
            ]
            assert [(a["unread"], a["user"], a["kind"]) for a in activity] == [
                (start["unread"] + 1, world.users["bob"], "message"),
                (start["unread"] + 2, world.users["bob"], "message"),
            ]
            assert activity[1]["mention"] is True
            assert activity[1]["mentions"] == start["mentions"] + 1
            # alice reads on her room stream: her connections hear of it, bob's do not.
            await alice_ws.send_json({"type": "read", "seq": second})
            moved = await alice_ws.wait_for(is_type("read"), what="the read event")
            assert moved == {"type": "read", "room": slug, "seq": second}
            read = await inbox.wait_for(is_type("read"), what="the inbox read")
            assert (read["seq"], read["unread"], read["mentions"]) == (second, 0, 0)
            await asyncio.sleep(0.3)
            assert not [f for f in bob_ws.frames if is_type("read")(f)]
            own = world.users["alice"]
            assert not [f for f in inbox.frames if is_type("activity")(f) and f["user"] == own]
        await inbox.close()

    run(main())


def test_reads_are_checked_clamped_and_forward_only(world):
    server, slug = world.server, world.rooms["main"]
    alice, carol = world.accounts["alice"], world.accounts["carol"]

    async def main():
        async with await WSClient.connect(server, slug, alice) as ws:
            await ws.wait_for(is_type("hello"), what="hello")
            for bad in (-1, "3", 1.5, True, None):
                start = len(ws.frames)
                await ws.send_json({"type": "read", "seq": bad})
                error = await ws.wait_error(start=start)
                assert error["code"] == "bad_request", bad
            assert ws.close_code is None
        async with await WSClient.connect(server, slug, carol) as ws:  # public, not a member
            await ws.wait_for(is_type("hello"), what="hello")
            await ws.send_json({"type": "read", "seq": 1})
            assert (await ws.wait_error())["code"] == "forbidden"

    run(main())
    clamped = api_read(server, alice, slug, 10**9)
    assert clamped.status_code == 200, clamped.text
    last = clamped.json()["read_seq"]
    back = api_read(server, alice, slug, 1)
    assert back.status_code == 200 and back.json()["read_seq"] == last  # never back
    assert api_read(server, carol, slug, 1).status_code == 403
    assert api_read(server, alice, slug, "x").status_code == 400
    with http(server, alice) as client:  # the long-poll POST form
        response = client.post(
            f"/poll/rooms/{slug}/",
            content=json.dumps({"type": "read", "seq": -5}),
            headers={"Content-Type": "application/json", "X-CSRFToken": alice.csrftoken},
        )
        assert response.status_code == 400


def test_frames_sent_on_the_inbox_are_bad_requests_and_it_stays_open(world):
    server, slug = world.server, world.rooms["main"]

    async def main():
        inbox = await inbox_ws(server, world.accounts["alice"])
        await inbox.send_json({"type": "send", "body": "nope"})
        await inbox.send_raw("not json")
        errors = [await inbox.wait_error(start=1), await inbox.wait_error(start=2)]
        assert {e["code"] for e in errors} == {"bad_request"}
        async with await WSClient.connect(server, slug, world.accounts["bob"]) as bob_ws:
            seq = await bob_ws.send_and_ack("still there?", "open-1")
        await inbox.wait_for(lambda f: is_type("activity")(f) and f["seq"] == seq, what="activity")
        assert inbox.close_code is None
        await inbox.close()

    run(main())


def test_the_sse_inbox_has_event_types_and_no_ids(world):
    server, slug = world.server, world.rooms["main"]

    async def main():
        sse = await inbox_sse(server, world.accounts["alice"])
        assert sse.status == 200
        await sse.wait_for(is_type("hello"), what="hello")
        async with await WSClient.connect(server, slug, world.accounts["bob"]) as bob_ws:
            seq = await bob_ws.send_and_ack("over sse", "sse-1")
        await sse.wait_for(lambda f: is_type("activity")(f) and f["seq"] == seq, what="activity")
        assert [e.event for e in sse.raw[:1]] == ["hello"]
        assert all(e.id is None for e in sse.raw)
        assert {e.event for e in sse.raw} <= {"hello", "activity", "read", "rooms"}
        await sse.close()

    run(main())


def test_the_poll_inbox_sessions(world):
    server, slug, alice = world.server, world.rooms["main"], world.accounts["alice"]
    with http(server, alice) as client:
        first = client.get("/poll/me/")
        assert first.status_code == 200
        body = first.json()
        assert [e["type"] for e in body["events"]] == ["hello"]
        token = body["session"]
        assert client.get("/poll/me/", params={"session": "bad token!"}).status_code == 400
        assert client.get("/poll/me/", params={"timeout": "soon"}).status_code == 400
        unknown = client.get("/poll/me/", params={"session": "A" * 22, "timeout": 1})
        assert unknown.json()["events"][0]["type"] == "hello"
        assert unknown.json()["session"] != token
        quiet = client.get("/poll/me/", params={"session": token, "timeout": 1})
        assert quiet.json() == {"events": [], "session": token}

        async def send_later():
            await asyncio.sleep(0.5)
            async with await WSClient.connect(server, slug, world.accounts["bob"]) as bob_ws:
                return await bob_ws.send_and_ack("to the poller", "poll-1")

        async def both():
            held = asyncio.to_thread(
                client.get, "/poll/me/", params={"session": token, "timeout": 20}
            )
            return await asyncio.gather(held, send_later())

        answer, seq = run(both())
        events = answer.json()["events"]
        assert [(e["type"], e["seq"]) for e in events][:1] == [("activity", seq)]


def test_joining_a_room_sends_rooms(world):
    server, alice, other = world.server, world.accounts["alice"], world.rooms["other"]

    async def main():
        inbox = await inbox_ws(server, alice)
        joined = await asyncio.to_thread(
            lambda: http(server, alice).post(
                f"/api/rooms/{other}/join/", headers={"X-CSRFToken": alice.csrftoken}
            )
        )
        assert joined.status_code == 200, joined.text
        rooms = await inbox.wait_for(is_type("rooms"), what="the rooms frame")
        assert other in [r["slug"] for r in rooms["rooms"]]
        async with await WSClient.connect(server, other, world.accounts["bob"]) as bob_ws:
            seq = await bob_ws.send_and_ack("welcome", "join-1")
        activity = await inbox.wait_for(
            lambda f: is_type("activity")(f) and f["room"] == other, what="new room activity"
        )
        assert (activity["seq"], activity["unread"]) == (seq, 1)
        await inbox.close()

    run(main())


def test_a_logout_ends_the_inbox_with_4403(world):
    server, dave = world.server, world.accounts["dave"]

    async def main():
        inbox = await inbox_ws(server, dave)
        response = await asyncio.to_thread(
            lambda: http(server, dave).post(
                "/accounts/logout/", data={"csrfmiddlewaretoken": dave.csrftoken}
            )
        )
        assert response.status_code in (200, 302), response.status_code
        assert await inbox.wait_closed(5) == 4403

    run(main())
    with http(server, dave) as client:
        assert client.get("/poll/me/").status_code == 403
