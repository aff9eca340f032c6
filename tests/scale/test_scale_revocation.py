"""Losing access across processes (PROTOCOL.md "Losing access", guarantee 9): a removal made
through one process's admin ends the removed user's connections held by another process
within 1 s, and that process refuses the next one at once, though it had the answer
"may read" cached.
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from live_clients import PollClient, SSEClient, WSClient, provision, run
from parley_testing import ServerProcess
from scale_support import PASSWORD
from websockets.exceptions import InvalidStatus

pytestmark = pytest.mark.scale

SLUG = "scale-private"


def is_type(kind: str):
    return lambda f: isinstance(f, dict) and f.get("type") == kind


async def ws_status(server, account) -> int | None:
    try:
        ws = await WSClient.connect(server, SLUG, account)
    except InvalidStatus as error:
        return error.response.status_code
    await ws.close()
    return None


def test_a_removal_in_one_process_ends_the_connections_of_another(cluster):
    a, b = cluster.start(2)
    manager = ServerProcess(cluster.root / "manage", env=cluster.env(), database_url=None)
    accounts = provision(
        manager,
        users=[("alice", PASSWORD), ("bob", PASSWORD), ("boss", PASSWORD, True)],
        rooms=[{"slug": SLUG, "public": False, "members": ["alice", "bob"]}],
    )
    ids = json.loads(
        manager.manage(
            "shell",
            "-c",
            "import json; from django.contrib.auth.models import User; "
            "from chat.models import Room; "
            "print(json.dumps([User.objects.get(username='alice').pk, "
            f"Room.objects.get(slug={SLUG!r}).pk]))",
        ).splitlines()[-1]
    )
    alice_id, room_id = ids
    alice, bob, boss = accounts["alice"], accounts["bob"], accounts["boss"]

    async def main():
        # bob's connections and alice's are all held by B.
        bob_ws = await WSClient.connect(b, SLUG, bob)
        await bob_ws.wait_for(is_type("hello"), what="hello")
        bob_sse = await SSEClient.connect(b, SLUG, bob)
        assert bob_sse.status == 200, bob_sse.body[:300]
        bob_poll = PollClient(b, SLUG, bob)
        bob_poll.start(None, hold=30)
        alice_ws = await WSClient.connect(b, SLUG, alice)
        await alice_ws.wait_for(is_type("hello"), what="hello")
        try:
            await asyncio.sleep(0.5)  # the long-poll is held by B
            assert await ws_status(b, bob) is None  # B caches "bob may read"
            async with httpx.AsyncClient(base_url=a.url, trust_env=False) as admin:
                response = await admin.post(
                    f"/admin/chat/room/{room_id}/change/",
                    data={
                        "name": SLUG,
                        "description": "",
                        "members": [str(alice_id)],
                        "csrfmiddlewaretoken": boss.csrftoken,
                        "_save": "Save",
                    },
                    headers={"Cookie": boss.cookie_header},
                )
            assert response.status_code == 302, (response.status_code, response.text[:800])
            removed_at = time.monotonic()
            try:
                code = await bob_ws.wait_closed(timeout=1.0)
            except AssertionError:
                code = "still open"
            while time.monotonic() < removed_at + 1.0 and not (bob_sse.closed and bob_poll.closed):
                await asyncio.sleep(0.02)
            got = {
                "ws": code,
                "sse": "ended" if bob_sse.closed else "still open",
                "poll": int(bob_poll.error.split()[0]) if bob_poll.closed else "still held",
                "new ws on B": await ws_status(b, bob),
            }
            seq = await alice_ws.send_and_ack("alice stays", "alice-1")
            await alice_ws.wait_seq(seq)
            got["alice"] = "open" if not alice_ws.closed else alice_ws.describe_close()
            assert got == {
                "ws": 4403,
                "sse": "ended",
                "poll": 403,
                "new ws on B": 403,
                "alice": "open",
            }, got
        finally:
            await asyncio.gather(
                bob_ws.close(), bob_sse.close(), bob_poll.close(), alice_ws.close()
            )

    run(main(), timeout=60)
