"""Direct messages across ``--workers 2`` on Redis and PostgreSQL: a DM made through one
worker reaches the other member's inbox streams on both workers (a ``rooms`` frame), and
its messages are counted there; a third user's inboxes on both workers hear nothing."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from live_clients import WSClient
from scale_support import socket_owners, wait_workers
from websockets.asyncio.client import connect

pytestmark = pytest.mark.scale


def is_type(kind: str):
    return lambda f: isinstance(f, dict) and f.get("type") == kind


async def inbox_ws(server, account) -> WSClient:
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


def test_a_new_dm_reaches_inboxes_on_every_worker(cluster):
    (server,) = cluster.start(1, args=["--workers", "2"])
    pids = wait_workers(server, 2)
    accounts = cluster.provision(["alice", "bob", "carol"], [])
    alice, bob, carol = accounts["alice"], accounts["bob"], accounts["carol"]

    def owner(ws) -> int | None:
        port = ws.conn.local_address[1]
        return socket_owners(server.port, {port}, pids).get(port)

    async def one_on_each(account, what: str) -> dict[int, WSClient]:
        held: dict[int, WSClient] = {}
        spare: list[WSClient] = []
        for _ in range(60):
            ws = await inbox_ws(server, account)
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

    def open_dm(account, username: str) -> httpx.Response:
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

    async def main():
        bobs = await one_on_each(bob, "bob's inbox")
        carols = await one_on_each(carol, "carol's inbox")
        made = await asyncio.to_thread(open_dm, alice, "bob")
        assert made.status_code == 201, made.text
        slug = made.json()["slug"]
        for pid, ws in bobs.items():
            frame = await ws.wait_for(
                lambda f: is_type("rooms")(f) and any(r["slug"] == slug for r in f["rooms"]),
                what=f"bob's rooms on worker {pid}",
            )
            room = next(r for r in frame["rooms"] if r["slug"] == slug)
            assert (room["name"], room["read_seq"]) == ("alice", 0)
        async with await WSClient.connect(server, slug, alice) as ws:
            seq = await ws.send_and_ack("hello across workers", "x-dm-1")
        for pid, ws in bobs.items():
            activity = await ws.wait_for(
                lambda f: is_type("activity")(f) and f["seq"] == seq,
                what=f"bob's activity on worker {pid}",
            )
            assert (activity["room"], activity["unread"]) == (slug, 1)
        await asyncio.sleep(0.5)
        for ws in carols.values():
            assert slug not in json.dumps(ws.frames)
        for ws in [*bobs.values(), *carols.values()]:
            await ws.close()

    asyncio.run(asyncio.wait_for(main(), 90))
