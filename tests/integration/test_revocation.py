"""Losing access ends live connections at once (PROTOCOL.md "Losing access", guarantee 9).

Against a real server: staff change a room in /admin/ (the change form, its members
widget, the admin's CSRF flow) or a user logs out, and within 1 s every live connection
that lost access ends on every transport (WebSocket close 4403, the SSE stream ended, a
held long-poll answered 403), the next attempt is refused with 403, and everyone else
keeps receiving.
"""

from __future__ import annotations

import asyncio
import contextlib
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
    history,
    login,
    provision,
    run,
    shared_server,
)
from websockets.exceptions import ConnectionClosed

PASSWORD = "pw-revocation-5521"
WITHIN = 1.0  # PROTOCOL.md: every live connection that lost access ends within 1 s
ROOMS = [
    {"slug": "rev-removed", "public": False, "members": ["alice", "bob"]},
    {"slug": "rev-private", "public": True, "members": ["alice"]},
    {"slug": "rev-logout", "public": False, "members": ["bob"]},
    {"slug": "rev-shell", "public": False, "members": ["alice", "bob"]},
]
# A process without a reactor (manage.py shell) tells no server; its changes are found by
# every server's room check, which re-authorizes every live connection this often.
ROOM_CHECK = 5.0


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    server = shared_server(tmp_path_factory, "live-rate-free", {"CHAT_RATE_LIMIT": "0"})
    accounts = provision(
        server,
        users=[("alice", PASSWORD), ("bob", PASSWORD), ("boss", PASSWORD, True)],
        rooms=ROOMS,
    )
    ids = json.loads(
        server.manage(
            "shell",
            "-c",
            "import json; from django.contrib.auth.models import User; "
            "from chat.models import Room; "
            "print(json.dumps({'users': dict(User.objects.values_list('username', 'pk')), "
            "'rooms': dict(Room.objects.values_list('slug', 'pk'))}))",
        ).splitlines()[-1]
    )
    return SimpleNamespace(server=server, accounts=accounts, **ids)


def is_type(kind: str):
    return lambda f: isinstance(f, dict) and f.get("type") == kind


async def admin_change_room(world, slug: str, *, public: bool, members: list[str]) -> None:
    """Save the room's change form as staff would: the members widget, CSRF and all."""
    boss = world.accounts["boss"]
    data = {
        "name": slug,
        "description": "",
        "members": [str(world.users[m]) for m in members],
        "csrfmiddlewaretoken": boss.csrftoken,
        "_save": "Save",
    }
    if public:
        data["is_public"] = "on"
    async with httpx.AsyncClient(base_url=world.server.url, trust_env=False) as admin:
        response = await admin.post(
            f"/admin/chat/room/{world.rooms[slug]}/change/",
            data=data,
            headers={"Cookie": boss.cookie_header},
        )
    assert response.status_code == 302, (response.status_code, response.text[:800])


class Watch:
    """The live connections of one reader, opened before the change, and how each ended."""

    def __init__(self, server, slug: str, account) -> None:
        self.server, self.slug, self.account = server, slug, account

    async def open(self) -> Watch:
        self.ws = await WSClient.connect(self.server, self.slug, self.account)
        await self.ws.wait_for(is_type("hello"), what="hello")
        self.sse = await SSEClient.connect(self.server, self.slug, self.account)
        assert self.sse.status == 200, (self.sse.status, self.sse.body[:300])
        await self.sse.wait_for(is_type("presence"), what="presence")
        # Polling as a client does: an answer (presence changes answer held polls too)
        # is followed by the next poll at once.
        self.poll = PollClient(self.server, self.slug, self.account)
        self.poll.start(None, hold=30)
        await asyncio.sleep(0.5)  # the long-poll is held by the server
        assert not self.poll.closed, self.poll.describe_close()
        return self

    async def ended(self, since: float) -> dict:
        """How each connection ended, and whether within WITHIN s of ``since``."""
        outcome: dict = {}
        try:
            code = await self.ws.wait_closed(timeout=max(since + WITHIN - time.monotonic(), 0))
            outcome["ws"] = code
        except AssertionError:
            outcome["ws"] = "still open"
        deadline = since + WITHIN
        while not self.sse.closed and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        outcome["sse"] = "ended" if self.sse.closed else "still open"
        while not self.poll.closed and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        outcome["poll"] = int(self.poll.error.split()[0]) if self.poll.closed else "still held"
        return outcome

    async def close(self) -> None:
        await asyncio.gather(self.ws.close(), self.sse.close(), self.poll.close())


ENDED = {"ws": 4403, "sse": "ended", "poll": 403}


def test_a_member_removed_in_the_admin_loses_every_live_connection_at_once(world):
    server, slug = world.server, "rev-removed"
    alice, bob = world.accounts["alice"], world.accounts["bob"]

    async def main():
        bob_watch = await Watch(server, slug, bob).open()
        alice_ws = await WSClient.connect(server, slug, alice)
        await alice_ws.wait_for(is_type("hello"), what="hello")
        try:
            assert (
                await handshake_refusal(server, slug, bob) is None
            )  # answer cached as "may read"
            await admin_change_room(world, slug, public=False, members=["alice"])
            removed_at = time.monotonic()
            # Sent at once, perhaps before the close arrives: the append re-checks the
            # rule, so whatever reaches the server is refused (nothing of bob's is stored).
            with contextlib.suppress(ConnectionClosed):
                await bob_watch.ws.send("after removal", "bob-after")
            outcome = await bob_watch.ended(removed_at)
            new_ws = await handshake_refusal(server, slug, bob)
            post = await bob_watch.poll.post("by long-poll", "bob-post")
            seq = await alice_ws.send_and_ack("alice stays", "alice-1")
            await alice_ws.wait_seq(seq)
            got = {
                **outcome,
                "new ws": new_ws,
                "post": post.status_code,
                "alice": "open" if not alice_ws.closed else alice_ws.describe_close(),
            }
            assert got == {**ENDED, "new ws": 403, "post": 403, "alice": "open"}, got
            logged = await asyncio.to_thread(history, server, slug, alice)
            assert [e.get("client_id") for e in logged if e.get("user") == "bob"] == []
        finally:
            await asyncio.gather(bob_watch.close(), alice_ws.close())

    run(main())


def test_a_room_made_private_ends_its_anonymous_readers_at_once(world):
    server, slug = world.server, "rev-private"
    alice = world.accounts["alice"]

    async def main():
        anonymous = await Watch(server, slug, None).open()
        alice_ws = await WSClient.connect(server, slug, alice)
        await alice_ws.wait_for(is_type("hello"), what="hello")
        try:
            assert await handshake_refusal(server, slug, None) is None
            await admin_change_room(world, slug, public=False, members=["alice"])
            outcome = await anonymous.ended(time.monotonic())
            seq = await alice_ws.send_and_ack("members only now", "alice-private")
            await alice_ws.wait_seq(seq)
            got = {
                **outcome,
                "new ws": await handshake_refusal(server, slug, None),
                "alice": "open" if not alice_ws.closed else alice_ws.describe_close(),
            }
            assert got == {**ENDED, "new ws": 403, "alice": "open"}, got
        finally:
            await asyncio.gather(anonymous.close(), alice_ws.close())

    run(main())


def test_logging_out_ends_the_connections_opened_with_that_session(world):
    server, slug = world.server, "rev-logout"
    other_session = world.accounts["bob"]  # provisioned: another session of bob's

    async def main():
        this_session = await asyncio.to_thread(login, server, "bob", PASSWORD)
        watch = await Watch(server, slug, this_session).open()
        other_ws = await WSClient.connect(server, slug, other_session)
        await other_ws.wait_for(is_type("hello"), what="hello")
        try:
            async with httpx.AsyncClient(base_url=server.url, trust_env=False) as browser:
                response = await browser.post(
                    "/accounts/logout/",
                    data={"csrfmiddlewaretoken": this_session.csrftoken},
                    headers={"Cookie": this_session.cookie_header},
                )
            assert response.status_code in (200, 302), (response.status_code, response.text)
            outcome = await watch.ended(time.monotonic())
            await asyncio.sleep(0.2)  # a wrongly ended other session would be closed by now
            got = {
                **outcome,
                "new ws": await handshake_refusal(server, slug, this_session),
                "other session": "open" if not other_ws.closed else other_ws.describe_close(),
            }
            assert got == {**ENDED, "new ws": 403, "other session": "open"}, got
        finally:
            await asyncio.gather(watch.close(), other_ws.close())

    run(main())


def test_a_removal_made_without_a_reactor_ends_connections_within_a_second(world):
    """No hub in the shell and no Redis: the change is written down (AccessNotice) and the
    server reads it at its cursor check (0.25 s), not at the 5 s room check."""
    server, slug = world.server, "rev-shell"
    alice, bob = world.accounts["alice"], world.accounts["bob"]

    async def main():
        bob_ws = await WSClient.connect(server, slug, bob)
        alice_ws = await WSClient.connect(server, slug, alice)
        for ws in (bob_ws, alice_ws):
            await ws.wait_for(is_type("hello"), what="hello")
        try:
            await asyncio.to_thread(
                server.manage,
                "shell",
                "-c",
                "from django.contrib.auth.models import User; from chat.models import Room; "
                f"Room.objects.get(slug={slug!r}).members.remove(User.objects.get(username='bob'))",
            )
            # The shell's start-up is not counted; its commit was before it exited.
            code = await bob_ws.wait_closed(timeout=1.0)
            got = {
                "ws": code,
                "new ws": await handshake_refusal(server, slug, bob),
                "alice": "open" if not alice_ws.closed else alice_ws.describe_close(),
            }
            assert got == {"ws": 4403, "new ws": 403, "alice": "open"}, got
        finally:
            await asyncio.gather(bob_ws.close(), alice_ws.close())

    run(main())
