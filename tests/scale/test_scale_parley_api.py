"""The Python API from a process with no reactor, with Redis (PROTOCOL.md "Python API for
Django code"): ``chat.parley.send`` in a separate process reaches WebSocket clients of
both workers of ``serve.py --workers 2`` (PostgreSQL + Redis) within 1 s, by the bus
alone (the servers' cursor check off, the room check an hour away); and an access change
made there (a removal from a private room in ``manage.py shell``) ends the removed
user's connections within 1 s the same way.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from live_clients import run
from parley_delays import TimedWSClient, delays_to, send_from_another_process, summary
from parley_testing import ServerProcess

pytestmark = pytest.mark.scale

SLUG = "pyapi"
PRIVATE = "pyapi-private"
BUS_ONLY = {"CHAT_CURSOR_CHECK_SECONDS": "0", "CHAT_ROOM_CHECK_SECONDS": "3600"}


def test_parley_send_reaches_every_worker_within_a_second(cluster, capsys):
    [server] = cluster.start(1, args=["--workers", "2"], env=BUS_ONLY)
    accounts = cluster.provision(["alice", "bot"], [SLUG])

    async def main():
        # Enough connections that both workers hold some (one accept queue, two acceptors).
        clients = [await TimedWSClient.connect(server, SLUG, accounts["alice"]) for _ in range(6)]
        try:
            for ws in clients:
                await ws.wait_for(lambda f: f.get("type") == "hello", what="hello")
            sends = await send_from_another_process(cluster.env(BUS_ONLY), SLUG, "bot", 10, 0.2)
            return await delays_to(clients, sends, within=3.0), sends
        finally:
            for ws in clients:
                await ws.close()

    delays, sends = run(main())
    figures = summary(delays, sends)
    with capsys.disabled():
        print(f"\nparley.send -> WebSocket, --workers 2, PostgreSQL + Redis: {figures}")
    assert len(delays) == 60
    assert max(delays) < 1.0, figures


def test_a_removal_from_a_script_ends_the_connections_within_a_second(cluster):
    [server] = cluster.start(1, args=["--workers", "2"], env=BUS_ONLY)
    accounts = cluster.provision(
        ["alice", "bob"], [{"slug": PRIVATE, "public": False, "members": ["alice", "bob"]}]
    )
    manager = ServerProcess(cluster.root / "script", env=cluster.env(BUS_ONLY), database_url=None)

    async def main():
        bobs = [await TimedWSClient.connect(server, PRIVATE, accounts["bob"]) for _ in range(4)]
        alice = await TimedWSClient.connect(server, PRIVATE, accounts["alice"])
        try:
            for ws in [*bobs, alice]:
                await ws.wait_for(lambda f: f.get("type") == "hello", what="hello")
            await asyncio.to_thread(
                manager.manage,
                "shell",
                "-c",
                "from django.contrib.auth.models import User; from chat.models import Room; "
                f"Room.objects.get(slug={PRIVATE!r}).members.remove("
                "User.objects.get(username='bob'))",
            )
            removed = time.monotonic()
            codes = [await ws.wait_closed(timeout=3) for ws in bobs]
            took = time.monotonic() - removed
            assert not alice.closed
            return codes, took
        finally:
            for ws in [*bobs, alice]:
                await ws.close()

    codes, took = run(main())
    assert codes == [4403] * 4
    # Measured from the script's return: its commit and its publish came before.
    assert took < 1.0, took
