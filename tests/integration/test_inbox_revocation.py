"""The inbox stream and what no notice reports (PROTOCOL.md "Losing access", DESIGN.md
"Losing access": the room check), against a real serve.py.

A process without a reactor (``manage.py shell``) tells no server. An account it
deactivates with ``QuerySet.update()`` is found by the server's room check: the user's
inbox streams end on every transport (WebSocket 4403, SSE ended, a held poll 403) and a
new one is refused. A membership it removes with raw SQL (the through table's rows: no
``m2m_changed``) reaches the member's inbox as a ``rooms`` frame at the same check.
"""

from __future__ import annotations

import asyncio
import secrets
import time

import httpx
import pytest
from live_clients import provision, run, shared_server
from test_inbox_stream import inbox_sse, inbox_ws
from test_revocation import ROOM_CHECK, is_type
from websockets.exceptions import InvalidStatus

PASSWORD = "pw-inbox-rev-6613"
TAG = secrets.token_hex(3)
# The shell's commit is before it exits; the check runs within ROOM_CHECK of it, and the
# close needs a moment more.
WITHIN = ROOM_CHECK + 1.5


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    server = shared_server(tmp_path_factory, "live-rate-free", {"CHAT_RATE_LIMIT": "0"})
    users = {who: f"ir{TAG}{who}" for who in ("dee", "eli", "fox")}
    room = f"ir-{TAG}"
    accounts = provision(
        server,
        users=[(u, PASSWORD) for u in users.values()],
        rooms=[{"slug": room, "public": False, "members": list(users.values())}],
    )
    return server, users, room, {who: accounts[u] for who, u in users.items()}


def shell(server, code: str) -> None:
    server.shell("from django.contrib.auth.models import User; " + code)


def test_an_account_deactivated_by_queryset_update_ends_its_inbox_at_the_room_check(world):
    server, users, _room, accounts = world
    dee, eli = accounts["dee"], accounts["eli"]
    headers = {"Cookie": dee.cookie_header}

    async def main():
        inbox = await inbox_ws(server, dee)
        sse = await inbox_sse(server, dee)
        assert sse.status == 200
        await sse.wait_for(is_type("hello"), what="the SSE hello")
        other = await inbox_ws(server, eli)
        async with httpx.AsyncClient(
            base_url=server.url, timeout=60, headers=headers, trust_env=False
        ) as client:
            token = (await client.get("/poll/me/")).json()["session"]
            held = asyncio.create_task(
                client.get("/poll/me/", params={"session": token, "timeout": 30})
            )
            await asyncio.sleep(0.3)
            assert not held.done()
            try:
                await asyncio.to_thread(
                    shell,
                    server,
                    f"User.objects.filter(username={users['dee']!r}).update(is_active=False)",
                )
                since = time.monotonic()
                code = await inbox.wait_closed(timeout=WITHIN)
                poll = await asyncio.wait_for(held, WITHIN)
                while not sse.closed and time.monotonic() - since < WITHIN:
                    await asyncio.sleep(0.05)
                with pytest.raises(InvalidStatus) as refused:
                    await inbox_ws(server, dee)
                got = {
                    "ws": code,
                    "poll": poll.status_code,
                    "sse": "ended" if sse.closed else "still open",
                    "new ws": refused.value.response.status_code,
                    "eli": "open" if not other.closed else other.describe_close(),
                }
                ended = {"ws": 4403, "poll": 403, "sse": "ended", "new ws": 403}
                assert got == {**ended, "eli": "open"}, got
            finally:
                held.cancel()
                await asyncio.gather(inbox.close(), sse.close(), other.close())

    run(main())


def test_a_membership_removed_with_raw_sql_sends_rooms_at_the_room_check(world):
    server, users, room, accounts = world

    async def main():
        inbox = await inbox_ws(server, accounts["fox"])
        assert [r["slug"] for r in inbox.frames[0]["rooms"]] == [room]
        try:
            await asyncio.to_thread(
                shell,
                server,
                "from chat.models import Room; "
                "Room.members.through.objects.filter("
                f"room__slug={room!r}, user__username={users['fox']!r}).delete()",
            )
            rooms = await inbox.wait_for(is_type("rooms"), timeout=WITHIN, what="rooms")
            assert rooms["rooms"] == []
            assert inbox.close_code is None  # still signed in: only the set changed
        finally:
            await inbox.close()

    run(main())


def test_a_dm_opened_without_a_reactor_reaches_both_inboxes_within_a_second(world):
    """What a notice does report, from a process with no hub and no Redis: the shell's
    ``members.add`` is written down (chat/access_notices.py) and read at the servers'
    cursor check, so both members' inboxes get ``rooms`` at once, not at the room check."""
    server, users, _room, accounts = world

    async def main():
        fox = await inbox_ws(server, accounts["fox"])
        eli = await inbox_ws(server, accounts["eli"])
        try:
            await asyncio.to_thread(
                shell,
                server,
                "from chat.dms import open_direct; "
                f"open_direct(User.objects.get(username={users['fox']!r}), "
                f"User.objects.get(username={users['eli']!r}))",
            )
            for inbox, other in ((fox, users["eli"]), (eli, users["fox"])):
                frame = await inbox.wait_for(is_type("rooms"), timeout=1.0, what="rooms")
                names = {r["name"] for r in frame["rooms"] if r["kind"] == "direct"}
                assert names == {other}, frame
        finally:
            await asyncio.gather(fox.close(), eli.close())

    run(main())
