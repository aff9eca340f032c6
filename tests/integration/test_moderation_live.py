"""Moderation against a real server (PROTOCOL.md "Moderation", "Losing access").

A moderator's kick or ban through ``POST /api/rooms/<slug>/moderation/`` ends the user's
live connections to the room within 1 s on every transport (WebSocket close 4403, the SSE
stream ended, a held long-poll answered 403), even in a public room whose rule would let
them read on; a kicked user may reconnect, a banned one is refused. A mute makes the
user's next write ``forbidden`` with ``retry_after`` over WebSocket, long-poll and REST.
"""

from __future__ import annotations

import asyncio
import json
import time
from types import SimpleNamespace

import httpx
import pytest
from live_clients import (
    PollClient,
    SSEClient,
    WSClient,
    handshake_refusal,
    provision,
    run,
    shared_server,
)

PASSWORD = "pw-moderation-8812"
WITHIN = 1.0  # PROTOCOL.md: ended within 1 s
ROOMS = [
    {"slug": "mod-kick", "public": True, "members": ["alice", "bob", "carol"]},
    {"slug": "mod-ban", "public": True, "members": ["alice", "bob"]},
    {"slug": "mod-mute", "public": True, "members": ["alice", "bob"]},
]
ENDED = {"ws": 4403, "sse": "ended", "poll": 403}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    # The same server (and settings) as test_revocation.py: one start for both.
    server = shared_server(tmp_path_factory, "live-rate-free", {"CHAT_RATE_LIMIT": "0"})
    accounts = provision(
        server,
        users=[("alice", PASSWORD), ("bob", PASSWORD), ("carol", PASSWORD)],
        rooms=ROOMS,
    )
    server.manage(
        "shell",
        "-c",
        "from django.contrib.auth.models import User; from chat.models import Room, Mute, Ban; "
        "alice = User.objects.get(username='alice'); "
        "Mute.objects.all().delete(); Ban.objects.all().delete(); "
        "[Room.objects.get(slug=s).moderators.set([alice]) "
        "for s in ('mod-kick', 'mod-ban', 'mod-mute')]",
    )
    return SimpleNamespace(server=server, accounts=accounts)


def is_type(kind: str):
    return lambda f: isinstance(f, dict) and f.get("type") == kind


async def moderate(world, slug: str, account, payload: dict) -> httpx.Response:
    async with httpx.AsyncClient(base_url=world.server.url, trust_env=False) as http:
        return await http.post(
            f"/api/rooms/{slug}/moderation/",
            content=json.dumps(payload),
            headers={
                "Cookie": account.cookie_header,
                "X-CSRFToken": account.csrftoken,
                "Content-Type": "application/json",
            },
        )


class Watch:
    """One user's WebSocket, SSE stream and held long-poll to a room, and how each ended."""

    def __init__(self, server, slug: str, account) -> None:
        self.server, self.slug, self.account = server, slug, account

    async def open(self) -> Watch:
        self.ws = await WSClient.connect(self.server, self.slug, self.account)
        await self.ws.wait_for(is_type("hello"), what="hello")
        self.sse = await SSEClient.connect(self.server, self.slug, self.account)
        assert self.sse.status == 200, (self.sse.status, self.sse.body[:300])
        await self.sse.wait_for(is_type("presence"), what="presence")
        self.poll = PollClient(self.server, self.slug, self.account)
        self.poll.start(None, hold=30)
        await asyncio.sleep(0.5)  # the long-poll is held by the server
        assert not self.poll.closed, self.poll.describe_close()
        return self

    async def ended(self, since: float) -> dict:
        outcome: dict = {}
        try:
            remaining = max(since + WITHIN - time.monotonic(), 0)
            outcome["ws"] = await self.ws.wait_closed(timeout=remaining)
        except AssertionError:
            outcome["ws"] = "still open"
        deadline = since + WITHIN
        while not (self.sse.closed and self.poll.closed) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        outcome["sse"] = "ended" if self.sse.closed else "still open"
        outcome["poll"] = int(self.poll.error.split()[0]) if self.poll.closed else "still held"
        return outcome

    async def close(self) -> None:
        await asyncio.gather(self.ws.close(), self.sse.close(), self.poll.close())


def test_a_kick_ends_every_live_connection_in_a_public_room_within_a_second(world):
    server, slug = world.server, "mod-kick"
    alice, bob, carol = (world.accounts[n] for n in ("alice", "bob", "carol"))

    async def main():
        bob_watch = await Watch(server, slug, bob).open()
        carol_ws = await WSClient.connect(server, slug, carol)
        await carol_ws.wait_for(is_type("hello"), what="hello")
        try:
            started = time.monotonic()
            response = await moderate(world, slug, alice, {"action": "kick", "user": "bob"})
            assert response.status_code == 200, response.text
            outcome = await bob_watch.ended(started)
            elapsed = time.monotonic() - started
            seq = await carol_ws.send_and_ack("carol stays", "carol-1")
            await carol_ws.wait_seq(seq)
            got = {
                **outcome,
                # A kicked user may come back to a public room (and rejoin it).
                "new ws": await handshake_refusal(server, slug, bob),
                "carol": "open" if not carol_ws.closed else carol_ws.describe_close(),
            }
            assert got == {**ENDED, "new ws": None, "carol": "open"}, (got, elapsed)
        finally:
            await asyncio.gather(bob_watch.close(), carol_ws.close())

    run(main())


def test_a_ban_ends_every_live_connection_and_refuses_the_next(world):
    server, slug = world.server, "mod-ban"
    alice, bob = world.accounts["alice"], world.accounts["bob"]

    async def main():
        bob_watch = await Watch(server, slug, bob).open()
        try:
            # bob's answer is cached as "may read" by now (his connections were admitted).
            started = time.monotonic()
            response = await moderate(
                world, slug, alice, {"action": "ban", "user": "bob", "reason": "spam"}
            )
            assert response.status_code == 200, response.text
            outcome = await bob_watch.ended(started)
            post = await bob_watch.poll.post("after the ban", "bob-banned")
            got = {
                **outcome,
                "new ws": await handshake_refusal(server, slug, bob),
                "post": post.status_code,
            }
            assert got == {**ENDED, "new ws": 403, "post": 403}, got
            unban = await moderate(world, slug, alice, {"action": "unban", "user": "bob"})
            assert unban.status_code == 200, unban.text
            assert await handshake_refusal(server, slug, bob) is None
        finally:
            await bob_watch.close()

    run(main())


def test_a_muted_users_writes_get_forbidden_with_retry_after_on_every_transport(world):
    server, slug = world.server, "mod-mute"
    alice, bob = world.accounts["alice"], world.accounts["bob"]

    async def main():
        bob_ws = await WSClient.connect(server, slug, bob)
        await bob_ws.wait_for(is_type("hello"), what="hello")
        poll = PollClient(server, slug, bob)
        try:
            before = await bob_ws.send_and_ack("before the mute", "bob-before")
            response = await moderate(
                world, slug, alice, {"action": "mute", "user": "bob", "minutes": 10}
            )
            assert response.status_code == 200, response.text
            await bob_ws.send("while muted", "bob-muted")
            reply = await bob_ws.wait_reply("bob-muted")
            assert reply["type"] == "error" and reply["code"] == "forbidden", reply
            assert 590 <= reply["retry_after"] <= 600, reply
            # The socket stays open (an error never closes it), and a resend of what was
            # stored before the mute still gets its seq.
            await bob_ws.send("before the mute", "bob-before")
            again = await bob_ws.wait_reply("bob-before")
            assert again == {**again, "type": "ack", "seq": before}, again
            answer = await poll.post("by long-poll", "bob-poll")
            assert answer.status_code == 403, answer.text
            error = answer.json()["error"]
            assert error["code"] == "forbidden" and 590 <= error["retry_after"] <= 600
            assert 590 <= int(answer.headers["Retry-After"]) <= 600
            async with httpx.AsyncClient(base_url=server.url, trust_env=False) as http:
                rest = await http.post(
                    f"/api/rooms/{slug}/messages/",
                    content=json.dumps({"body": "by REST", "client_id": "bob-rest"}),
                    headers={
                        "Cookie": bob.cookie_header,
                        "X-CSRFToken": bob.csrftoken,
                        "Content-Type": "application/json",
                    },
                )
            assert rest.status_code == 403 and rest.json()["error"]["retry_after"] >= 590
            assert int(rest.headers["Retry-After"]) >= 590
            unmute = await moderate(world, slug, alice, {"action": "unmute", "user": "bob"})
            assert unmute.status_code == 200
            assert await bob_ws.send_and_ack("free again", "bob-free") > before
        finally:
            await asyncio.gather(bob_ws.close(), poll.close())

    run(main())
