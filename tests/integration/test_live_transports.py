"""What each transport looks like on the wire: hello, presence, typing, SSE framing and
pings, long-poll waiting and paging, plain-text bodies, and slow consumers being cut off."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import secrets
import socket
import threading
import time
from types import SimpleNamespace

import httpx
import pytest
from live_clients import (
    PollClient,
    RawWebSocket,
    SSEClient,
    WSClient,
    assert_exact_seqs,
    history,
    identities,
    provision,
    run,
    shared_server,
)

PASSWORD = "pw-transports-2286"
TAG = secrets.token_hex(3)
NAMES = ["alice", "bob", "carol"]
ROOMS = [
    "hello",
    "anon",
    "presence",
    "typing",
    "sse",
    "poll-timeout",
    "poll-now",
    "poll-wait",
    "text",
]


def room(name: str) -> str:
    return f"tr-{name}-{TAG}"


def is_type(kind: str):
    return lambda f: isinstance(f, dict) and f.get("type") == kind


@pytest.fixture(scope="module")
def world(live_server):
    users = {name: f"t{TAG}{name}" for name in NAMES}
    accounts = provision(
        live_server,
        users=[(u, PASSWORD) for u in users.values()],
        rooms=[room(r) for r in [*ROOMS, "quiet"]],
    )
    return SimpleNamespace(
        server=live_server,
        users=users,
        accounts={name: accounts[u] for name, u in users.items()},
    )


@pytest.fixture(scope="module")
def ping_watch(world):
    """An event stream on a quiet room, opened at the start of the module and read by a
    thread, so the 15 s ping check at the end of the module costs little extra time."""
    server = world.server
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=40)
    sock.sendall(
        f"GET /events/rooms/{room('quiet')}/ HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    watch = SimpleNamespace(started=time.monotonic(), chunks=[])
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            try:
                chunk = sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            watch.chunks.append((time.monotonic(), chunk))

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    yield watch
    stop.set()
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)  # wakes the reader's recv()
    sock.close()
    thread.join(timeout=5)


@pytest.fixture(scope="module")
def bulk(tmp_path_factory):
    """A server without rate limit, for tests that send hundreds of messages."""
    server = shared_server(tmp_path_factory, "live-rate-free", {"CHAT_RATE_LIMIT": "0"})
    accounts = provision(server, users=[("flood", PASSWORD)], rooms=["page", "slow"])
    return SimpleNamespace(server=server, accounts=accounts)


# ----------------------------------------------------------------- WebSocket


def test_ws_starts_with_hello_then_presence_and_no_backlog(world, ping_watch):
    server, slug = world.server, room("hello")
    alice, bob = world.accounts["alice"], world.accounts["bob"]

    async def main():
        async with PollClient(server, slug, alice) as poster:
            for i in range(3):
                await poster.send_ok(f"before {i}", f"before-{i}")
        async with await WSClient.connect(server, slug, bob) as ws:
            hello = await ws.recv_json()
            assert hello == {
                "type": "hello",
                "room": slug,
                "user": world.users["bob"],
                "last_seq": 3,
                "read_seq": None,  # bob is no member of the room (alice is: she sent)
            }
            presence = await ws.recv_json()
            assert presence["type"] == "presence" and presence["room"] == slug, presence
            assert world.users["bob"] in presence["users"]
            async with PollClient(server, slug, alice) as poster:
                seq = await poster.send_ok("after", "after-0")
            assert seq == 4
            await ws.wait_seq(4)
            await ws.settle(0.2)
            assert [e["seq"] for e in ws.durable()] == [4], "a stream without since has no backlog"
        rooms = httpx.get(f"{server.url}/api/rooms/", trust_env=False).json()["rooms"]
        assert {r["slug"]: r["last_seq"] for r in rooms}[slug] == 4

    run(main())


def test_ws_anonymous_reader_gets_hello_with_null_user_and_messages(world, ping_watch):
    server, slug = world.server, room("anon")

    async def main():
        async with PollClient(server, slug, world.accounts["alice"]) as poster:
            for i in range(3):
                await poster.send_ok(f"for anyone {i}", f"anon-{i}")
            async with await WSClient.connect(server, slug, since=1) as ws:
                hello = await ws.recv_json()
                assert hello == {
                    "type": "hello",
                    "room": slug,
                    "user": None,
                    "last_seq": 3,
                    "read_seq": None,
                }
                await ws.wait_seq(3)
                seq = await poster.send_ok("live for anyone", "anon-live")
                await ws.wait_seq(seq)
                assert_exact_seqs(ws.events(), 2, 4, "anonymous")

    run(main())


def test_presence_follows_joins_and_leaves(world, ping_watch):
    server, slug = world.server, room("presence")
    a, b = world.users["alice"], world.users["bob"]

    async def main():
        alice = await WSClient.connect(server, slug, world.accounts["alice"])
        try:
            await alice.recv_json()
            first = await alice.recv_json()
            assert first["type"] == "presence" and first["users"] == [a], first
            mark = len(alice.frames)
            bob = await WSClient.connect(server, slug, world.accounts["bob"])
            assert (await bob.recv_json())["type"] == "hello"
            bobs = await bob.recv_json()
            assert bobs["type"] == "presence" and sorted(bobs["users"]) == sorted([a, b]), bobs
            joined = await alice.wait_for(
                lambda f: is_type("presence")(f) and b in f["users"], start=mark
            )
            assert sorted(joined["users"]) == sorted([a, b])
            sse = await SSEClient.connect(server, slug, world.accounts["carol"])
            try:
                assert sse.status == 200
                opening = await sse.recv_json()
                assert opening["type"] == "presence" and {a, b} <= set(opening["users"]), opening
                assert sse.raw[0].id is None, "presence is ephemeral: no id line"
                mark = len(alice.frames)
                await bob.close()
                left = await alice.wait_for(
                    lambda f: is_type("presence")(f) and b not in f["users"], start=mark
                )
                assert a in left["users"]
                await sse.wait_for(lambda f: is_type("presence")(f) and b not in f["users"])
            finally:
                await sse.close()
        finally:
            await alice.close()

    run(main())


def test_typing_reaches_others_and_is_never_replayed(world, ping_watch):
    server, slug = world.server, room("typing")

    async def main():
        async with (
            await WSClient.connect(server, slug, world.accounts["alice"]) as alice,
            await WSClient.connect(server, slug, world.accounts["bob"]) as bob,
            await SSEClient.connect(server, slug) as sse,
        ):
            await bob.wait_for(is_type("hello"))
            await alice.wait_for(is_type("hello"))
            await sse.wait_for(is_type("presence"))
            await alice.typing()
            typing = await bob.wait_for(is_type("typing"), timeout=5)
            assert typing == {"type": "typing", "room": slug, "user": world.users["alice"]}
            await sse.wait_for(is_type("typing"), timeout=5)
            assert [r.id for r in sse.raw if r.data.get("type") == "typing"] == [None]
            seq = await alice.send_and_ack("typed", "typed-1")
        async with await WSClient.connect(server, slug, since=0) as replay:
            await replay.wait_seq(seq)
            await replay.settle(0.3)
            assert not [f for f in replay.frames if f.get("type") == "typing"]
        assert all(e["type"] != "typing" for e in history(server, slug))

    run(main())


# ----------------------------------------------------------------- SSE


def test_sse_wire_format(world, ping_watch):
    server, slug = world.server, room("sse")

    async def main():
        async with await SSEClient.connect(server, slug, world.accounts["carol"], since=0) as sse:
            assert sse.status == 200
            assert sse.headers["content-type"].split(";")[0].strip() == "text/event-stream"
            async with PollClient(server, slug, world.accounts["alice"]) as poster:
                seq = await poster.send_ok("over sse", "sse-1")
            await sse.wait_seq(seq)
            (raw,) = [r for r in sse.raw if isinstance(r.data, dict) and r.data.get("seq") == seq]
            assert raw.id == str(seq) and raw.event == "message", raw
            assert identities([raw.data]) == identities(history(server, slug)[-1:])
            assert sse.raw[0].data["type"] == "presence", "presence comes first on a stream"

    run(main())


# ----------------------------------------------------------------- long-poll


def test_longpoll_times_out_with_no_events(world, ping_watch):
    server, slug = world.server, room("poll-timeout")

    async def main():
        async with PollClient(server, slug) as poll:
            started = time.monotonic()
            response = await poll.get(since=0, timeout=1)
            took = time.monotonic() - started
            assert response.status_code == 200, response.text
            assert response.json() == {"events": [], "last_seq": 0}
            assert 0.8 <= took < 5, took

    run(main())


def test_longpoll_with_since_answers_at_once(world, ping_watch):
    server, slug = world.server, room("poll-now")

    async def main():
        async with PollClient(server, slug, world.accounts["alice"]) as poll:
            for i in range(3):
                await poll.send_ok(f"stored {i}", f"stored-{i}")
            started = time.monotonic()
            response = await poll.get(since=0, timeout=20)
            assert time.monotonic() - started < 2
            answer = response.json()
            assert answer["last_seq"] == 3
            assert identities(answer["events"]) == identities(history(server, slug))
            answer = (await poll.get(since=2, timeout=20)).json()
            assert [e["seq"] for e in answer["events"]] == [3] and answer["last_seq"] == 3

    run(main())


def test_longpoll_without_since_waits_for_the_next_event(world, ping_watch):
    server, slug = world.server, room("poll-wait")

    async def main():
        async with PollClient(server, slug, world.accounts["alice"]) as poll:
            await poll.send_ok("old news", "old-1")
            waiting = asyncio.create_task(poll.get(timeout=15))
            await asyncio.sleep(0.7)
            assert not waiting.done(), "answered before any new event"
            seq = await poll.send_ok("news", "new-1")
            response = await asyncio.wait_for(waiting, 5)
            answer = response.json()
            assert [e["seq"] for e in answer["events"]] == [seq], answer
            assert answer["events"][0]["body"] == "news" and answer["last_seq"] == seq

    run(main())


def test_longpoll_answer_is_capped_at_500_events(bulk):
    server = bulk.server

    async def main():
        async with await WSClient.connect(server, "page", bulk.accounts["flood"]) as ws:
            for i in range(520):
                await ws.send(f"page {i}", f"page-{i}")
            await ws.wait_for(lambda _f: len(ws.acks()) >= 520, timeout=30)
        async with PollClient(server, "page") as poll:
            answer = (await poll.get(since=0, timeout=5)).json()
            assert len(answer["events"]) == 500 and answer["last_seq"] == 500
            assert_exact_seqs(answer["events"], 1, 500)
            answer = (await poll.get(since=answer["last_seq"], timeout=5)).json()
            assert_exact_seqs(answer["events"], 501, 520)
            assert answer["last_seq"] == 520

    run(main())


# ----------------------------------------------------------------- bodies are text


TRICKY = [
    "<script>alert('x')</script> & <b>bold</b>",
    "quotes \" ' ` and backslash \\ and \\n literally",
    "line one\nline two\r\nline three",
    "unicode: ü ß 中文 🎉 \u200b zero-width",
    "data: not an sse field\n\nid: 99\nevent: fake",
    "   padded   ",
]


def test_bodies_round_trip_exactly_on_every_transport(world, ping_watch):
    """Bodies are plain text: what was sent is what every transport and the history show,
    including text that looks like HTML or like SSE fields."""
    server, slug = world.server, room("text")

    async def main():
        receivers = [
            await WSClient.connect(server, slug, since=0),
            await SSEClient.connect(server, slug, since=0),
        ]
        poll = PollClient(server, slug)
        poll.start(0)
        receivers.append(poll)
        try:
            async with await WSClient.connect(server, slug, world.accounts["alice"]) as ws:
                sent = {}
                for i, body in enumerate(TRICKY):
                    sent[await ws.send_and_ack(body, f"ws-{i}")] = body
            async with PollClient(server, slug, world.accounts["bob"]) as poster:
                for i, body in enumerate(TRICKY):
                    sent[await poster.send_ok(body, f"post-{i}")] = body
            last = max(sent)
            for receiver in receivers:
                await receiver.wait_seq(last)
                got = {e["seq"]: e["body"] for e in receiver.durable()}
                assert got == sent, receiver.kind
            assert {e["seq"]: e["body"] for e in history(server, slug)} == sent
        finally:
            await asyncio.gather(*(r.close() for r in receivers))

    run(main())


# ----------------------------------------------------------------- slow consumers


def test_slow_consumer_is_cut_off_and_others_get_everything(bulk):
    """A subscriber that never reads is dropped; nobody else waits for it or misses a thing."""
    server = bulk.server
    # A 4000-character plain line is 8 KB an event (its body and its html): bursts of 100
    # stay under the 1 MiB the fast readers may fall behind on a loaded machine.
    body = "s" * 4000
    batch, max_batches = 100, 40

    async def main():
        slow = RawWebSocket.connect(server, "slow", rcvbuf=4096)
        assert slow.status == 101, slow.head
        fast = [
            await WSClient.connect(server, "slow", since=0),
            await SSEClient.connect(server, "slow", since=0),
        ]
        poll = PollClient(server, "slow")
        poll.start(0)
        fast.append(poll)
        sent = 0
        try:
            async with await WSClient.connect(server, "slow", bulk.accounts["flood"]) as ws:
                for _ in range(max_batches):
                    for _ in range(batch):
                        await ws.send(body, f"slow-{sent}")
                        sent += 1
                    target = sent
                    await ws.wait_for(lambda _f, n=target: len(ws.acks()) >= n, timeout=30)
                    # Everyone else keeps up while the slow one is stuck.
                    for receiver in fast:
                        await receiver.wait_seq(sent, timeout=20)
                    if slow.tcp_state() != 1:  # no longer ESTABLISHED: the server gave up
                        break
            for receiver in fast:
                assert_exact_seqs(receiver.events(), 1, sent, receiver.kind)
            code, texts = await asyncio.to_thread(slow.read_until_close, 20)
            received = sum(1 for t in texts if '"message"' in t)
            assert received < sent, (
                f"the slow consumer was never cut off: it read all {sent} events ({code=})"
            )
        finally:
            slow.close()
            await asyncio.gather(*(r.close() for r in fast))

    run(main(), timeout=150)


# ----------------------------------------------------------------- pings (runs last)


def test_sse_sends_a_ping_comment_at_least_every_15_seconds(ping_watch):
    """The stream opened at the start of the module (on a quiet room) gets ``: ping``
    within 16 s (15 s + slack) and then again at most 16 s apart for as long as the
    module ran. Waits only for whatever part of the first 17 s has not passed yet."""
    ping = re.compile(rb"(?:^|\n): ?ping[^\n]*\n")

    def ping_times() -> list[float]:
        times, data = [], b""
        for at, chunk in list(ping_watch.chunks):
            data += chunk
            found = len(ping.findall(data))
            times.extend([at] * (found - len(times)))
        return times

    deadline = ping_watch.started + 17
    while not ping_times() and time.monotonic() < deadline:
        time.sleep(0.2)
    now, times = time.monotonic(), ping_times()
    head = b"".join(c for _, c in ping_watch.chunks)[:400]
    assert head.startswith(b"HTTP/1.1 200"), head
    assert times, f"no ': ping' comment within 17s; got {head!r}"
    marks = [ping_watch.started, *times, now]
    gaps = [later - earlier for earlier, later in itertools.pairwise(marks)]
    assert max(gaps) <= 16.5, f"pings at {[round(t - marks[0], 1) for t in times]}"
