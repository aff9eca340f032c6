"""A token revoked through one process ends its connections held by another process within
1 s (PROTOCOL.md "Losing access": "their token is revoked ... every process"), over
Redis, and that process refuses the token at once with 401, though it had the answer
cached.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from live_clients import PollClient, SSEClient, WSClient, provision, run
from parley_testing import ServerProcess
from scale_support import PASSWORD
from token_testing import bearer, make_tokens
from websockets.exceptions import InvalidStatus

pytestmark = pytest.mark.scale

SLUG = "scale-tokens"


async def ws_status(server, headers) -> int | None:
    try:
        ws = await WSClient.connect(server, SLUG, headers=headers)
    except InvalidStatus as error:
        return error.response.status_code
    await ws.close()
    return None


def test_a_token_revoked_on_one_process_ends_its_connections_on_another(cluster):
    a, b = cluster.start(2)
    manager = ServerProcess(cluster.root / "manage", env=cluster.env(), database_url=None)
    accounts = provision(
        manager,
        users=[("tess", PASSWORD)],
        rooms=[{"slug": SLUG, "public": False, "members": ["tess"]}],
    )
    made = make_tokens(manager, ("doomed", "tess"), ("kept", "tess"))
    doomed, kept = bearer(made["doomed"]), bearer(made["kept"])
    tess = accounts["tess"]

    async def main():
        ws = await WSClient.connect(b, SLUG, headers=doomed)
        await ws.wait_for(lambda f: f.get("type") == "hello", what="hello")
        other = await WSClient.connect(b, SLUG, headers=kept)
        await other.wait_for(lambda f: f.get("type") == "hello", what="hello")
        sse = await SSEClient.connect(b, SLUG, headers=doomed)
        assert sse.status == 200, sse.body[:300]
        poll = PollClient(b, SLUG)
        held = asyncio.ensure_future(poll.get(timeout=30, headers=doomed))
        try:
            await asyncio.sleep(0.5)  # the long-poll is held by B
            assert await ws_status(b, doomed) is None  # B caches the token's answer
            cookies = {"sessionid": tess.sessionid, "csrftoken": tess.csrftoken}
            async with httpx.AsyncClient(
                base_url=a.url, cookies=cookies, trust_env=False, timeout=10
            ) as page:
                listing = (await page.get("/accounts/tokens/")).text
                marker = listing.index('aria-label="Revoke doomed"')
                key = 'name="token" value="'
                start = listing.rindex(key, 0, marker) + len(key)
                response = await page.post(
                    "/accounts/tokens/",
                    data={
                        "action": "revoke",
                        "token": listing[start : listing.index('"', start)],
                        "csrfmiddlewaretoken": tess.csrftoken,
                    },
                )
            assert response.status_code == 302, response.text[:500]
            revoked_at = time.monotonic()
            try:
                code = await ws.wait_closed(timeout=1.0)
            except AssertionError:
                code = "still open"
            while time.monotonic() < revoked_at + 1.0 and not (sse.closed and held.done()):
                await asyncio.sleep(0.02)
            got = {
                "ws": code,
                "sse": "ended" if sse.closed else "still open",
                "poll": held.result().status_code if held.done() else "still held",
                "new ws on B": await ws_status(b, doomed),
                "other token": "open" if not other.closed else other.describe_close(),
            }
            assert got == {
                "ws": 4403,
                "sse": "ended",
                "poll": 403,
                "new ws on B": 401,
                "other token": "open",
            }, got
        finally:
            held.cancel()
            await asyncio.gather(ws.close(), other.close(), sse.close(), poll.close())

    run(main(), timeout=60)
