"""PROTOCOL.md's guarantees 1-7, on every transport, against a real server.

One server for the module with the rate limit off (these tests send a lot); every test
uses its own room, so seqs start at 1 and the expected event lists are exact.
"""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import httpx
import pytest
from live_clients import (
    PollClient,
    SSEClient,
    WSClient,
    assert_exact_seqs,
    durable,
    history,
    identities,
    provision,
    run,
    seqs,
    shared_server,
)

PASSWORD = "pw-guarantees-7431"
USERS = ["alice", "bob", "carol", "dave", *(f"sender{i}" for i in range(10))]
TRANSPORTS = ["ws", "sse", "poll"]
ROOMS = [
    *(f"order-{t}" for t in TRANSPORTS),
    *(f"resume-{t}" for t in ("ws", "sse-id", "sse-since", "poll")),
    *(f"race-{t}" for t in TRANSPORTS),
    "deep",
    "ack-ws",
    "ack-post",
    "idem-ws",
    "idem-post",
    "idem-cross",
    "same",
    "fifo",
    "mixed",
    "deleted",
    "admin-delete",
]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    server = shared_server(tmp_path_factory, "live-rate-free", {"CHAT_RATE_LIMIT": "0"})
    accounts = provision(
        server,
        users=[(u, PASSWORD) for u in USERS] + [("moderator", PASSWORD, True)],
        rooms=ROOMS,
    )
    return SimpleNamespace(server=server, accounts=accounts)


def is_type(kind: str):
    return lambda f: isinstance(f, dict) and f.get("type") == kind


async def open_receiver(kind: str, server, slug: str, account=None, since: int = 0):
    """A stream of ``slug`` from ``since`` on, ready when this returns."""
    if kind == "ws":
        client = await WSClient.connect(server, slug, account, since=since)
        await client.wait_for(is_type("hello"), what="hello")
        return client
    if kind in ("sse", "sse-since"):
        client = await SSEClient.connect(server, slug, account, since=since)
    elif kind == "sse-id":
        client = await SSEClient.connect(server, slug, account, last_event_id=since)
    else:
        client = PollClient(server, slug, account)
        client.start(since)
        return client
    assert client.status == 200, (client.status, client.body[:300])
    return client


async def fill(server, slug: str, account, count: int, prefix: str) -> list[int]:
    """Pipeline ``count`` sends on one WebSocket; returns their seqs in send order."""
    async with await WSClient.connect(server, slug, account) as ws:
        for i in range(count):
            await ws.send(f"{prefix} {i}", f"{prefix}-{i}")
        await ws.wait_for(
            lambda _f: (
                len(ws.acks()) >= count or any(f.get("type") == "error" for f in ws.events())
            ),
            timeout=60,
            what=f"{count} acks",
        )
        errors = [f for f in ws.events() if f.get("type") == "error"]
        assert not errors, errors[:3]
        acks = ws.acks()
        return [acks[f"{prefix}-{i}"] for i in range(count)]


async def fetch_history(server, slug: str) -> list[dict]:
    return await asyncio.to_thread(history, server, slug)


# ----------------------------------------------------------------- 1. order, live delivery


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_order_gap_free_on_each_transport(world, transport):
    """Guarantee 1: a receiver gets seq 1..N in order, whoever sends and however."""
    server, slug = world.server, f"order-{transport}"

    async def main():
        receiver = await open_receiver(transport, server, slug, world.accounts["bob"])
        ws = await WSClient.connect(server, slug, world.accounts["alice"])
        poster = PollClient(server, slug, world.accounts["carol"])
        try:

            async def post_all():
                for i in range(15):
                    await poster.send_ok(f"post {i}", f"p-{i}")

            async def send_all():
                for i in range(15):
                    await ws.send(f"ws {i}", f"w-{i}")
                await ws.wait_for(lambda _f: len(ws.acks()) >= 15, what="15 acks")

            await asyncio.gather(post_all(), send_all())
            await receiver.wait_seq(30)
            await receiver.settle(0.3)
            assert_exact_seqs(receiver.events(), 1, 30, transport)
            assert identities(receiver.events()) == identities(await fetch_history(server, slug))
        finally:
            await asyncio.gather(receiver.close(), ws.close(), poster.close())

    run(main())


# ----------------------------------------------------------------- 2. resume with since


@pytest.mark.parametrize("transport", ["ws", "sse-id", "sse-since", "poll"])
def test_resume_gives_exactly_the_missed_events_then_live(world, transport):
    """Guarantee 2: since=N (or Last-Event-ID: N) replays seq > N exactly, then goes live."""
    server, slug = world.server, f"resume-{transport}"
    alice = world.accounts["alice"]

    async def main():
        await fill(server, slug, alice, 10, "old")
        last = 10
        async with await WSClient.connect(server, slug, alice) as sender:
            for since in (0, 4, None):
                since = last if since is None else since  # None: nothing missed
                receiver = await open_receiver(
                    transport, server, slug, world.accounts["bob"], since
                )
                try:
                    # Replay first, before anything new is sent.
                    if since < last:
                        await receiver.wait_seq(last)
                    last = await sender.send_and_ack(f"live after {since}", f"live-{since}")
                    await receiver.wait_seq(last)
                    await receiver.settle(0.3)
                    assert_exact_seqs(receiver.events(), since + 1, last, f"since={since}")
                    logged = await fetch_history(server, slug)
                    assert identities(receiver.events()) == identities(logged[since:last])
                finally:
                    await receiver.close()

    run(main())


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_resume_while_messages_keep_arriving(world, transport):
    """Guarantee 2 under load: reconnects during a burst miss nothing and repeat nothing."""
    server, slug = world.server, f"race-{transport}"
    total = 150

    async def main():
        sender = await WSClient.connect(server, slug, world.accounts["alice"], since=0)
        resumed: list[tuple[int, object]] = []
        try:

            async def produce():
                for i in range(total):
                    await sender.send(f"burst {i}", f"b-{i}")
                    if i % 5 == 4:
                        await asyncio.sleep(0.005)
                await sender.wait_for(lambda _f: len(sender.acks()) >= total, timeout=30)

            producing = asyncio.create_task(produce())
            for k in range(8):
                await asyncio.sleep(0.03)
                since = max(0, sender.last_seq() - 7 * k)
                resumed.append((since, await open_receiver(transport, server, slug, None, since)))
            await producing
            for _since, receiver in resumed:
                await receiver.wait_seq(total, timeout=20)
            await asyncio.sleep(0.3)
            for since, receiver in resumed:
                assert_exact_seqs(receiver.events(), since + 1, total, f"since={since}")
        finally:
            await asyncio.gather(sender.close(), *(r.close() for _, r in resumed))

    run(main())


def test_resume_from_older_than_the_recent_events(world):
    """Guarantee 2 for a resume far back (more than a thousand events): read from the log."""
    server, slug = world.server, "deep"
    total = 1200

    async def main():
        assert await fill(server, slug, world.accounts["alice"], total, "deep") == list(
            range(1, total + 1)
        )
        receivers = [
            await open_receiver("ws", server, slug, None, since=7),
            await open_receiver("sse-id", server, slug, None, since=7),
        ]
        poller = PollClient(server, slug)
        try:
            polled = await poller.collect(7, total, timeout=20)
            assert_exact_seqs(polled, 8, total, "long-poll")
            for receiver in receivers:
                await receiver.wait_seq(total, timeout=20)
            async with await WSClient.connect(server, slug, world.accounts["bob"]) as ws:
                live = await ws.send_and_ack("live", "deep-live")
            for receiver in receivers:
                await receiver.wait_seq(live)
                await receiver.settle(0.3)
                assert_exact_seqs(receiver.events(), 8, live, receiver.kind)
        finally:
            await asyncio.gather(poller.close(), *(r.close() for r in receivers))

    run(main(), timeout=90)


# ----------------------------------------------------------------- 3. durable ack


def test_ws_ack_means_committed(world):
    """Guarantee 3: right after an ack the message is in the history API."""
    server, slug = world.server, "ack-ws"

    async def main():
        async with await WSClient.connect(server, slug, world.accounts["alice"]) as ws:
            for i in range(5):
                seq = await ws.send_and_ack(f"durable {i}", f"ack-{i}")
                logged = {e["seq"]: e for e in await fetch_history(server, slug)}
                assert seq in logged, f"acked seq {seq} not in history {sorted(logged)}"
                assert logged[seq]["body"] == f"durable {i}"
                assert logged[seq]["client_id"] == f"ack-{i}"
                assert logged[seq]["user"] == "alice"

    run(main())


def test_post_201_means_committed(world):
    server, slug = world.server, "ack-post"

    async def main():
        async with PollClient(server, slug, world.accounts["alice"]) as poster:
            for i in range(5):
                response = await poster.post(f"durable {i}", f"ack-{i}")
                assert response.status_code == 201, response.text
                seq = response.json()["seq"]
                logged = {e["seq"]: e for e in await fetch_history(server, slug)}
                assert seq in logged, f"seq {seq} answered 201 but not in history"
                assert logged[seq]["body"] == f"durable {i}"
                assert logged[seq]["client_id"] == f"ack-{i}"

    run(main())


# ----------------------------------------------------------------- 4. idempotent sends


def test_ws_resend_of_client_id_returns_original_seq(world):
    """Guarantee 4 on a WebSocket: resends (even pipelined, even on a new connection)."""
    server, slug = world.server, "idem-ws"
    alice, bob = world.accounts["alice"], world.accounts["bob"]

    async def main():
        watcher = await open_receiver("ws", server, slug, None, since=0)
        try:
            async with await WSClient.connect(server, slug, alice) as ws:
                first = await ws.send_and_ack("first", "same-1")
                assert await ws.send_and_ack("second (ignored)", "same-1") == first
                # Pipelined twice without waiting: one message, both answered with its seq.
                await ws.send("twin", "twin-1")
                await ws.send("twin again", "twin-1")
                await ws.wait_for(
                    lambda _f: (
                        sum(
                            1
                            for f in ws.events()
                            if f.get("client_id") == "twin-1" and f.get("type") in ("ack", "error")
                        )
                        >= 2
                    ),
                    what="two answers for twin-1",
                )
                twin_answers = [
                    f
                    for f in ws.events()
                    if f.get("client_id") == "twin-1" and f.get("type") in ("ack", "error")
                ]
                assert [f["type"] for f in twin_answers] == ["ack", "ack"], twin_answers
                assert twin_answers[0]["seq"] == twin_answers[1]["seq"] == first + 1
            async with await WSClient.connect(server, slug, alice) as again:
                assert await again.send_and_ack("third (ignored)", "same-1") == first
                # Another user's client_id is their own key: a new message.
            async with await WSClient.connect(server, slug, bob) as other:
                bobs = await other.send_and_ack("bob's", "same-1")
                assert bobs == first + 2
            await watcher.wait_seq(bobs)
            await watcher.settle(0.3)
            assert_exact_seqs(watcher.events(), 1, 3, "watcher")
        finally:
            await watcher.close()
        logged = await fetch_history(server, slug)
        assert [(e["user"], e["client_id"], e["body"]) for e in logged] == [
            ("alice", "same-1", "first"),
            ("alice", "twin-1", "twin"),
            ("bob", "same-1", "bob's"),
        ]

    run(main())


def test_post_resend_answers_200_with_original_seq(world):
    server, slug = world.server, "idem-post"

    async def main():
        async with PollClient(server, slug, world.accounts["alice"]) as poster:
            first = await poster.post("first", "post-1")
            assert first.status_code == 201, first.text
            seq = first.json()["seq"]
            for body in ("again", "and again"):
                repeat = await poster.post(body, "post-1")
                assert repeat.status_code == 200, repeat.text
                assert repeat.json()["seq"] == seq
            # A send with no client_id is never deduplicated.
            plain = [await poster.post("no key", None) for _ in range(2)]
            assert [r.status_code for r in plain] == [201, 201], [r.text for r in plain]
            assert plain[1].json()["seq"] == plain[0].json()["seq"] + 1 == seq + 2
        logged = await fetch_history(server, slug)
        assert [(e["client_id"], e["body"]) for e in logged] == [
            ("post-1", "first"),
            (None, "no key"),
            (None, "no key"),
        ]

    run(main())


def test_idempotency_holds_across_transports(world):
    """The key is (user, room, client_id), not the connection: WS then POST and back."""
    server, slug = world.server, "idem-cross"
    alice = world.accounts["alice"]

    async def main():
        async with (
            await WSClient.connect(server, slug, alice) as ws,
            PollClient(server, slug, alice) as poster,
        ):
            seq = await ws.send_and_ack("over ws", "cross-1")
            response = await poster.post("over post", "cross-1")
            assert (response.status_code, response.json()) == (200, {"seq": seq}), response.text
            response = await poster.post("posted first", "cross-2")
            assert response.status_code == 201, response.text
            assert await ws.send_and_ack("then ws", "cross-2") == response.json()["seq"]
        logged = await fetch_history(server, slug)
        assert [(e["client_id"], e["body"]) for e in logged] == [
            ("cross-1", "over ws"),
            ("cross-2", "posted first"),
        ]

    run(main())


# ----------------------------------------------------------------- 5. same semantics


def test_every_transport_sees_the_same_events(world):
    """Guarantee 5: WS, SSE and long-poll receivers (signed-in or not) get equal lists."""
    server, slug = world.server, "same"

    async def main():
        receivers = [
            await open_receiver("ws", server, slug, world.accounts["bob"]),
            await open_receiver("ws", server, slug, None),
            await open_receiver("sse", server, slug, world.accounts["carol"]),
            await open_receiver("sse", server, slug, None),
            await open_receiver("poll", server, slug, world.accounts["dave"]),
            await open_receiver("poll", server, slug, None),
        ]
        try:
            async with (
                await WSClient.connect(server, slug, world.accounts["alice"]) as ws,
                PollClient(server, slug, world.accounts["carol"]) as poster,
            ):

                async def over_ws():
                    for i in range(20):
                        await ws.send(f"ws <b>{i}</b> ü ✓", f"ws-{i}")
                        await asyncio.sleep(0.002)
                    await ws.wait_for(lambda _f: len(ws.acks()) >= 20, what="20 acks")

                async def over_post():
                    for i in range(20):
                        await poster.send_ok(f'post "{i}"\nline 2', f"post-{i}")

                await asyncio.gather(over_ws(), over_post())
            for receiver in receivers:
                await receiver.wait_seq(40)
            await asyncio.sleep(0.3)
            reference = receivers[0].durable()
            assert_exact_seqs(reference, 1, 40, "ws")
            for receiver in receivers[1:]:
                assert receiver.durable() == reference, receiver.kind
            logged = await fetch_history(server, slug)
            assert identities(reference) == identities(logged)
            # The very same events, to the timestamp, live and in the log.
            assert reference == logged
        finally:
            await asyncio.gather(*(r.close() for r in receivers))

    run(main())


# ----------------------------------------------------------------- 6. sender FIFO


def test_pipelined_sends_get_seqs_in_send_order(world):
    """Guarantee 6: 50 sends pipelined per connection, two connections at once."""
    server, slug = world.server, "fifo"

    async def main():
        alice = await WSClient.connect(server, slug, world.accounts["alice"], since=0)
        bob = await WSClient.connect(server, slug, world.accounts["bob"], since=0)
        try:

            async def pipeline(ws, name):
                for i in range(50):
                    await ws.send(f"{name} {i}", f"{name}-{i}")
                await ws.wait_for(lambda _f: len(ws.acks()) >= 50, what="50 acks", timeout=30)

            await asyncio.gather(pipeline(alice, "alice"), pipeline(bob, "bob"))
            await alice.wait_seq(100)
            await bob.wait_seq(100)
            for ws, name in ((alice, "alice"), (bob, "bob")):
                acks = ws.acks()
                order = [acks[f"{name}-{i}"] for i in range(50)]
                assert order == sorted(order) and len(set(order)) == 50, order
                # Its own messages reach the sender as ordinary events, with the acked seqs.
                own = [e for e in ws.durable() if e["user"] == name]
                assert [e["client_id"] for e in own] == [f"{name}-{i}" for i in range(50)]
                assert [e["seq"] for e in own] == order
                assert [e["body"] for e in own] == [f"{name} {i}" for i in range(50)]
                assert_exact_seqs(ws.events(), 1, 100, name)
        finally:
            await asyncio.gather(alice.close(), bob.close())

    run(main())


# ----------------------------------------------------------------- concurrency


def test_ten_concurrent_senders_over_mixed_transports(world):
    """10 users x 30 messages (5 over WS pipelined, 5 over POST); 6 receivers get all 300."""
    server, slug = world.server, "mixed"
    per_sender = 30
    names = [f"sender{i}" for i in range(10)]

    async def main():
        receivers = [
            await open_receiver("ws", server, slug, world.accounts["bob"]),
            await open_receiver("ws", server, slug, None),
            await open_receiver("sse", server, slug, world.accounts["carol"]),
            await open_receiver("sse", server, slug, None),
            await open_receiver("poll", server, slug, world.accounts["dave"]),
            await open_receiver("poll", server, slug, None),
        ]
        sent: dict[tuple[str, str], int] = {}
        try:

            async def over_ws(name):
                async with await WSClient.connect(server, slug, world.accounts[name]) as ws:
                    for i in range(per_sender):
                        await ws.send(f"{name} says {i}", f"{name}-{i}")
                        if i % 10 == 9:
                            await asyncio.sleep(0.01)
                    await ws.wait_for(
                        lambda _f: len(ws.acks()) >= per_sender, what="acks", timeout=30
                    )
                    for cid, seq in ws.acks().items():
                        sent[(name, cid)] = seq

            async def over_post(name):
                async with PollClient(server, slug, world.accounts[name]) as poster:
                    for i in range(per_sender):
                        sent[(name, f"{name}-{i}")] = await poster.send_ok(
                            f"{name} says {i}", f"{name}-{i}"
                        )

            await asyncio.gather(
                *(over_ws(n) for n in names[:5]), *(over_post(n) for n in names[5:])
            )
            total = per_sender * len(names)
            assert sorted(sent.values()) == list(range(1, total + 1))
            for receiver in receivers:
                await receiver.wait_seq(total, timeout=30)
            await asyncio.sleep(0.3)
            reference = receivers[0].durable()
            assert_exact_seqs(reference, 1, total, "ws")
            for receiver in receivers[1:]:
                assert_exact_seqs(receiver.events(), 1, total, receiver.kind)
                assert receiver.durable() == reference, receiver.kind
            by_key = {(e["user"], e["client_id"]): e for e in reference}
            assert len(by_key) == total
            for (name, cid), seq in sent.items():
                assert by_key[(name, cid)]["seq"] == seq
            for name in names:
                mine = [sent[(name, f"{name}-{i}")] for i in range(per_sender)]
                assert mine == sorted(mine), f"{name}'s sends out of order: {mine}"
            assert identities(await fetch_history(server, slug)) == identities(reference)
        finally:
            await asyncio.gather(*(r.close() for r in receivers))

    run(main(), timeout=90)


# ----------------------------------------------------------------- 7. history is the log


def _delete_in_shell(server, slug: str, seq: int) -> dict:
    out = server.manage(
        "shell",
        "-c",
        "import json; from chat.models import Message; from chat.services import "
        f"delete_message; m = Message.objects.get(room__slug={slug!r}, seq={seq}); "
        "print(json.dumps(delete_message(m.pk)))",
    )
    return json.loads(out.strip().splitlines()[-1])


def test_deleted_messages_in_history_replay_and_live(world):
    """Guarantee 7: a delete (here by another process) shows in history and every replay;
    a live subscriber gets the ``deleted`` event with no gap once the room moves on."""
    server, slug = world.server, "deleted"
    alice = world.accounts["alice"]

    async def main():
        live = await open_receiver("ws", server, slug, world.accounts["bob"], since=0)
        try:
            assert await fill(server, slug, alice, 3, "del") == [1, 2, 3]
            event = await asyncio.to_thread(_delete_in_shell, server, slug, 2)
            # A script's delete: no user did it.
            assert event == {"type": "deleted", "room": slug, "seq": 4, "target": 2, "user": None}

            logged = await fetch_history(server, slug)
            assert seqs(logged) == [1, 2, 3, 4]
            assert logged[1]["body"] == "" and logged[1]["deleted"] is True, logged[1]
            assert logged[0]["body"] == "del 0" and not logged[0].get("deleted")
            assert logged[3] == event

            # A process with no reactor (this shell) cannot tell the server at once: the
            # server's periodic room check (every 5 s) brings the event in. From then on
            # every replay must show the log exactly.
            await live.wait_seq(4, timeout=15)
            for kind in ("ws", "sse-id", "poll"):
                replay = await open_receiver(kind, server, slug, None, since=0)
                try:
                    await replay.wait_seq(4, timeout=5)
                    await replay.settle(0.3)
                    assert identities(replay.events()) == identities(logged), kind
                    assert replay.durable() == logged, f"{kind} replay differs from history"
                finally:
                    await replay.close()

            async with await WSClient.connect(server, slug, alice) as ws:
                assert await ws.send_and_ack("after the delete", "del-after") == 5
            await live.wait_seq(5)
            await live.settle(0.3)
            assert_exact_seqs(live.events(), 1, 5, "live subscriber")
            assert live.durable()[3] == event
        finally:
            await live.close()

    run(main())


@pytest.fixture(scope="module")
def quiet_world(tmp_path_factory):
    """A server whose periodic room check (which also brings in events that missed the
    publish path) never runs during a test: what reaches clients came the direct way."""
    server = shared_server(
        tmp_path_factory,
        "live-no-room-check",
        {"CHAT_RATE_LIMIT": "0", "CHAT_ROOM_CHECK_SECONDS": "3600"},
    )
    accounts = provision(
        server,
        users=[("alice", PASSWORD), ("moderator", PASSWORD, True)],
        rooms=["admin-delete"],
    )
    return SimpleNamespace(server=server, accounts=accounts)


def test_admin_delete_reaches_every_live_client_at_once(quiet_world):
    """A staff delete in /admin/ is a ``deleted`` event on every connected transport, at
    once: the server's room check is off, so only the publish path can bring it."""
    world = quiet_world
    server, slug = world.server, "admin-delete"
    moderator = world.accounts["moderator"]

    async def main():
        receivers = [await open_receiver(kind, server, slug, None) for kind in TRANSPORTS]
        try:
            assert await fill(server, slug, world.accounts["alice"], 2, "mod") == [1, 2]
            for receiver in receivers:
                await receiver.wait_seq(2)
            pk = int(
                (
                    await asyncio.to_thread(
                        server.manage,
                        "shell",
                        "-c",
                        "from chat.models import Message; "
                        f"print(Message.objects.get(room__slug={slug!r}, seq=1).pk)",
                    )
                ).split()[-1]
            )
            async with httpx.AsyncClient(base_url=server.url, trust_env=False) as admin:
                response = await admin.post(
                    f"/admin/chat/message/{pk}/delete/",
                    data={"post": "yes", "csrfmiddlewaretoken": moderator.csrftoken},
                    headers={"Cookie": moderator.cookie_header},
                )
            assert response.status_code == 302, (response.status_code, response.text[:500])
            expected = {
                "type": "deleted",
                "room": slug,
                "seq": 3,
                "target": 1,
                "user": "moderator",
            }
            for receiver in receivers:
                await receiver.wait_seq(3, timeout=2)
                assert receiver.durable()[-1] == expected, receiver.kind
            logged = await fetch_history(server, slug)
            assert logged[0]["body"] == "" and logged[0]["deleted"] is True
            assert logged[2] == expected
            # A replay after the delete shows the message deleted, as the history does.
            for kind in ("ws", "sse-id", "poll"):
                replay = await open_receiver(kind, server, slug, None, since=0)
                try:
                    await replay.wait_seq(3, timeout=5)
                    assert identities(replay.events()) == identities(logged), kind
                finally:
                    await replay.close()
        finally:
            await asyncio.gather(*(r.close() for r in receivers))

    run(main())


def test_durable_lists_helper_sanity():
    """The helpers these tests rely on catch gaps, duplicates and disorder."""
    events = [{"type": "message", "seq": s} for s in (1, 2, 3)]
    assert_exact_seqs(events, 1, 3)
    for broken in ((1, 3), (1, 2, 2, 3), (2, 1, 3), (1, 2, 3, 4)):
        with pytest.raises(AssertionError):
            assert_exact_seqs([{"type": "message", "seq": s} for s in broken], 1, 3)
    assert durable([{"type": "presence"}, {"type": "ack", "seq": 1}]) == []
