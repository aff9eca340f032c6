"""The inbox and read positions across ``--workers 2`` on Redis and PostgreSQL: an inbox on
one worker counts messages sent through the other, and a read made on one worker reaches
the reader's connections (room streams and inboxes) on the other. And across a Redis
outage: a read whose notice was lost meanwhile reaches the inbox once Redis is back."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from live_clients import WSClient
from scale_support import SLUG, redis_ping, socket_owners, wait_workers
from websockets.asyncio.client import connect

pytestmark = pytest.mark.scale


def is_type(kind: str):
    return lambda f: isinstance(f, dict) and f.get("type") == kind


async def inbox_ws(server, account) -> WSClient:
    url = server.url.replace("http://", "ws://", 1) + "/ws/me/"
    conn = await connect(
        url,
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


def test_inbox_and_reads_cross_workers(cluster):
    (server,) = cluster.start(1, args=["--workers", "2"])
    pids = wait_workers(server, 2)
    accounts = cluster.provision(["alice", "bob"], [{"slug": SLUG, "members": ["alice", "bob"]}])
    alice, bob = accounts["alice"], accounts["bob"]

    def owner(ws) -> int | None:
        port = ws.conn.local_address[1]
        return socket_owners(server.port, {port}, pids).get(port)

    async def one_on_each(open_one, what: str) -> dict[int, WSClient]:
        """Connections opened one at a time until each worker holds one."""
        held: dict[int, WSClient] = {}
        spare: list[WSClient] = []
        for _ in range(60):
            ws = await open_one()
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

    async def room_ws(account) -> WSClient:
        ws = await WSClient.connect(server, SLUG, account)
        await ws.wait_for(is_type("hello"), what="the room hello")
        return ws

    async def main():
        inboxes = await one_on_each(lambda: inbox_ws(server, alice), "alice's inbox")
        alice_rooms = await one_on_each(lambda: room_ws(alice), "alice's room streams")
        senders = await one_on_each(lambda: room_ws(bob), "bob's room streams")
        a, b = pids
        try:
            # bob sends through worker B: alice's inbox on worker A counts it.
            seq = await senders[b].send_and_ack("across workers", "x-1")
            for pid in (a, b):
                activity = await inboxes[pid].wait_for(
                    lambda f: is_type("activity")(f) and f["seq"] == seq,
                    timeout=10,
                    what=f"activity on worker {pid}",
                )
                assert (activity["unread"], activity["user"]) == (1, "bob"), activity
            seq2 = await senders[a].send_and_ack("and back", "x-2")
            for pid in (a, b):
                activity = await inboxes[pid].wait_for(
                    lambda f: is_type("activity")(f) and f["seq"] == seq2,
                    timeout=10,
                    what=f"second activity on worker {pid}",
                )
                assert activity["unread"] == 2, activity
            # alice reads on worker A: her connections on worker B hear of it.
            await alice_rooms[a].send_json({"type": "read", "seq": seq2})
            moved = await alice_rooms[b].wait_for(is_type("read"), timeout=10, what="read on B")
            assert moved == {"type": "read", "room": SLUG, "seq": seq2}
            for pid in (a, b):
                read = await inboxes[pid].wait_for(
                    is_type("read"), timeout=10, what=f"inbox read on {pid}"
                )
                assert (read["seq"], read["unread"], read["mentions"]) == (seq2, 0, 0), read
            await asyncio.sleep(0.3)
            assert not [f for f in senders[a].frames + senders[b].frames if is_type("read")(f)]
            # A new inbox has the counts as the database has them.
            fresh = await inbox_ws(server, alice)
            (room,) = fresh.frames[0]["rooms"]
            assert (room["read_seq"], room["unread"], room["last_seq"]) == (seq2, 0, seq2)
            await fresh.close()
        finally:
            for group in (inboxes, alice_rooms, senders):
                for ws in group.values():
                    await ws.close()

    asyncio.run(asyncio.wait_for(main(), 120))


def test_a_read_lost_in_a_redis_outage_reaches_the_inbox_when_redis_is_back(cluster, own_redis):
    """Instances A and B on a Redis of the test's own. alice's inbox is on A; while Redis is
    down she reads the room on B, whose notice is lost. When A's subscription comes back it
    re-reads its counts and sends the changed one (before any database check would)."""
    cluster.redis_url = own_redis.url
    a, b = cluster.start(2)
    accounts = cluster.provision(["alice", "bob"], [{"slug": SLUG, "members": ["alice", "bob"]}])
    alice, bob = accounts["alice"], accounts["bob"]

    def read_on_b(seq: int) -> httpx.Response:
        with httpx.Client(base_url=b.url, timeout=20, trust_env=False) as client:
            return client.post(
                f"/api/rooms/{SLUG}/read/",
                content=json.dumps({"seq": seq}),
                headers={
                    "Content-Type": "application/json",
                    "X-CSRFToken": alice.csrftoken,
                    "Cookie": alice.cookie_header,
                },
            )

    async def main():
        inbox = await inbox_ws(a, alice)
        sender = await WSClient.connect(b, SLUG, bob)
        try:
            await sender.wait_for(is_type("hello"), what="the room hello")
            for i in range(2):
                seq = await sender.send_and_ack(f"before the outage {i}", f"o-{i}")
                await inbox.wait_for(
                    lambda f, s=seq: is_type("activity")(f) and f["seq"] == s,
                    timeout=10,
                    what=f"activity {seq} on A",
                )
            await asyncio.to_thread(own_redis.kill)
            assert not redis_ping(own_redis.port)
            response = await asyncio.to_thread(read_on_b, seq)
            assert response.status_code == 200, response.text
            await asyncio.sleep(1.0)
            assert not [f for f in inbox.frames if is_type("read")(f)], "heard without Redis?"
            await asyncio.to_thread(own_redis.start)
            # Reconnecting takes up to 10 s of backoff; then one recount of the process.
            read = await inbox.wait_for(is_type("read"), timeout=25, what="the read on A")
            assert (read["seq"], read["unread"], read["mentions"]) == (seq, 0, 0), read
            assert inbox.close_code is None
        finally:
            await asyncio.gather(inbox.close(), sender.close())

    asyncio.run(asyncio.wait_for(main(), 90))
