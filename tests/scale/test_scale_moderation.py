"""Moderation across ``--workers 2`` on Redis and PostgreSQL (PROTOCOL.md "Moderation",
"Losing access"): a kick handled by one worker ends the kicked user's connections held by
both workers within 1 s (the kick crosses ``<prefix>:access`` as ``AccessChange.kicked``),
in a public room whose rule would let them read on; a ban then makes both refuse the next
connection; a mute set through one holds for a write through the other."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from live_clients import WSClient
from parley_testing import ServerProcess
from scale_support import PASSWORD, SLUG, socket_owners, wait_workers
from websockets.exceptions import InvalidStatus

pytestmark = pytest.mark.scale

WITHIN = 1.0


def is_type(kind: str):
    return lambda f: isinstance(f, dict) and f.get("type") == kind


async def moderate(server, account, payload: dict) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, trust_env=False) as http:
        return await http.post(
            f"/api/rooms/{SLUG}/moderation/",
            content=json.dumps(payload),
            headers={
                "Cookie": account.cookie_header,
                "X-CSRFToken": account.csrftoken,
                "Content-Type": "application/json",
            },
        )


def test_a_kick_on_one_worker_ends_connections_on_both(cluster):
    (server,) = cluster.start(1, args=["--workers", "2"])
    pids = wait_workers(server, 2)
    accounts = cluster.provision(
        ["alice", "bob", "carol"], [{"slug": SLUG, "members": ["alice", "bob", "carol"]}]
    )
    manager = ServerProcess(cluster.root / "manage-mod", env=cluster.env(), database_url=None)
    manager.manage(
        "shell",
        "-c",
        "from django.contrib.auth.models import User; from chat.models import Room; "
        f"Room.objects.get(slug={SLUG!r}).moderators.set([User.objects.get(username='alice')])",
    )
    alice, bob, carol = accounts["alice"], accounts["bob"], accounts["carol"]
    assert PASSWORD  # the accounts' password, unused: sessions are provisioned

    def owner(ws) -> int | None:
        port = ws.conn.local_address[1]
        return socket_owners(server.port, {port}, pids).get(port)

    async def room_ws(account) -> WSClient:
        ws = await WSClient.connect(server, SLUG, account)
        await ws.wait_for(is_type("hello"), what="the room hello")
        return ws

    async def one_on_each(account, what: str) -> dict[int, WSClient]:
        held: dict[int, WSClient] = {}
        spare: list[WSClient] = []
        for _ in range(60):
            ws = await room_ws(account)
            pid = owner(ws)
            if pid is not None and pid not in held:
                held[pid] = ws
            else:
                spare.append(ws)
            if len(held) == 2:
                break
        for ws in spare:
            await ws.close()
        assert len(held) == 2, f"{what}: every connection landed on one worker of {pids}"
        return held

    async def refusals(account, tries: int = 8) -> set:
        """The answers of new connections (spread over both workers): 403 or None."""
        answers = set()
        for _ in range(tries):
            try:
                ws = await WSClient.connect(server, SLUG, account)
            except InvalidStatus as error:
                answers.add(error.response.status_code)
            else:
                answers.add(None)
                await ws.close()
        return answers

    async def main():
        bobs = await one_on_each(bob, "bob")
        carols = await one_on_each(carol, "carol")
        try:
            started = time.monotonic()
            response = await moderate(server, alice, {"action": "kick", "user": "bob"})
            assert response.status_code == 200, response.text
            codes = {}
            for pid, ws in bobs.items():
                try:
                    remaining = max(started + WITHIN - time.monotonic(), 0)
                    codes[pid] = await ws.wait_closed(timeout=remaining)
                except AssertionError:
                    codes[pid] = "still open"
            elapsed = time.monotonic() - started
            assert codes == {pid: 4403 for pid in pids}, (codes, elapsed)
            for pid, ws in carols.items():
                assert not ws.closed, (pid, ws.describe_close())
            # Kicked from a public room: bob may come back, on either worker.
            assert await refusals(bob) == {None}
            # Banned: refused by both workers at once (their cached answers are stale).
            response = await moderate(server, alice, {"action": "ban", "user": "bob"})
            assert response.status_code == 200, response.text
            assert await refusals(bob) == {403}
            # A mute made through one worker holds for carol's send through each.
            response = await moderate(
                server, alice, {"action": "mute", "user": "carol", "minutes": 5}
            )
            assert response.status_code == 200, response.text
            for pid, ws in carols.items():
                await ws.send("muted?", f"carol-{pid}")
                reply = await ws.wait_reply(f"carol-{pid}")
                assert reply["code"] == "forbidden" and reply["retry_after"] >= 290, reply
        finally:
            for ws in (*bobs.values(), *carols.values()):
                await ws.close()

    asyncio.run(asyncio.wait_for(main(), 120))
