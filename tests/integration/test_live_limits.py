"""Issue 9, through a real server: live connections per user are bounded
(CHAT_MAX_CONNECTIONS_PER_USER, 50 by default: 429 before the upgrade or the stream), and
a slow SSE reader cut at the backlog bound is let go of at once by its room and has its
socket aborted within the close grace, leaving the server healthy.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import time
from types import SimpleNamespace
from urllib.parse import urlsplit

import httpx
import pytest
from live_clients import SSEClient, WSClient, handshake_refusal, provision, run, shared_server
from websockets.exceptions import InvalidStatus

from chat.live.connections import DEFAULT_MAX_CONNECTIONS_PER_USER
from chat.live.transport import CLOSE_GRACE

PASSWORD = "pw-limits-5021"
TAG = secrets.token_hex(3)
LIMIT = DEFAULT_MAX_CONNECTIONS_PER_USER


def connections(server) -> dict[str, int]:
    response = httpx.get(server.url + "/healthz", timeout=5, trust_env=False)
    assert response.status_code == 200, response.text
    return response.json()["connections"]


@pytest.fixture(scope="module")
def world(live_server):
    names = {"many": f"many{TAG}", "other": f"other{TAG}"}
    slug = f"limits-{TAG}"
    accounts = provision(live_server, users=[(u, PASSWORD) for u in names.values()], rooms=[slug])
    return SimpleNamespace(
        server=live_server,
        slug=slug,
        accounts={name: accounts[user] for name, user in names.items()},
    )


def test_one_user_may_hold_fifty_connections_the_next_is_429_and_a_close_lets_one_in(world):
    server, slug = world.server, world.slug
    many, other = world.accounts["many"], world.accounts["other"]

    async def main():
        held = [await WSClient.connect(server, slug, many) for _ in range(LIMIT)]
        try:
            try:
                await WSClient.connect(server, slug, many)
            except InvalidStatus as error:
                response = error.response
                assert response.status_code == 429
                assert b'"rate_limited"' in response.body, response.body
            else:
                raise AssertionError(f"connection {LIMIT + 1} of one user was let in")
            sse = await SSEClient.connect(server, slug, many)  # SSE counts too
            assert sse.status == 429, sse.body[:200]
            assert b'"rate_limited"' in sse.body
            assert (
                await handshake_refusal(server, slug, other) is None
            )  # another user is not bound
            # The ones held keep working.
            seq = await held[0].send_and_ack("still here", f"lim-{TAG}")
            await held[-1].wait_seq(seq)
            # Closing one gives its place back: an SSE stream gets it.
            await held.pop().close()
            for _ in range(50):
                sse = await SSEClient.connect(server, slug, many)
                if sse.status == 200:
                    break
                await asyncio.sleep(0.05)  # until the server has seen the close
            assert sse.status == 200, sse.body[:200]
            assert await handshake_refusal(server, slug, many) == 429  # and it holds it
            await sse.close()
            for _ in range(50):
                status = await handshake_refusal(server, slug, many)
                if status is None:
                    break
                await asyncio.sleep(0.05)
            assert status is None
        finally:
            await asyncio.gather(*(ws.close() for ws in held))

    run(main(), timeout=90)
    assert connections(server).get("websocket", 0) < LIMIT  # every place given back


# --------------------------------------------------------------------- slow SSE readers


@pytest.fixture(scope="module")
def bulk(tmp_path_factory):
    """A server without a rate limit, for the flood (shared with other modules)."""
    server = shared_server(tmp_path_factory, "live-rate-free", {"CHAT_RATE_LIMIT": "0"})
    accounts = provision(
        server, users=[("flood", PASSWORD), (f"slowpoke{TAG}", PASSWORD)], rooms=[f"busy-{TAG}"]
    )
    return SimpleNamespace(server=server, accounts=accounts, slug=f"busy-{TAG}")


def stalled_stream(server, slug: str, cookie: str) -> socket.socket:
    """An SSE request whose client reads the response head and then never reads again."""
    parts = urlsplit(server.url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window
    sock.settimeout(10)
    sock.connect((parts.hostname, parts.port))
    sock.sendall(
        f"GET /events/rooms/{slug}/ HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\n"
        f"Accept: text/event-stream\r\nCookie: {cookie}\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1024)
    assert head.startswith(b"HTTP/1.1 200"), head[:200]
    return sock


def tcp_state(sock: socket.socket) -> int:
    """Linux TCP state (1 established; 7 closed, as after a reset)."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]


def test_a_slow_sse_reader_is_forgotten_at_once_and_its_socket_aborted_within_the_grace(bulk):
    server, slug = bulk.server, bulk.slug
    slowpoke = bulk.accounts[f"slowpoke{TAG}"]
    body = "s" * 4000

    async def main():
        async with await WSClient.connect(server, slug, bulk.accounts["flood"]) as flood:
            baseline = connections(server).get("sse", 0)
            sock = stalled_stream(server, slug, slowpoke.cookie_header)
            try:
                await flood.wait_for(
                    lambda f: (
                        isinstance(f, dict)
                        and f.get("type") == "presence"
                        and slowpoke.username in f["users"]
                    ),
                    what="the slow reader in the presence list",
                )
                assert connections(server).get("sse", 0) == baseline + 1
                sent, forgotten_at = 0, None
                for _batch in range(40):
                    for _ in range(100):
                        await flood.send(body, f"busy-{sent}")
                        sent += 1
                    await flood.wait_for(lambda _f, n=sent: len(flood.acks()) >= n, timeout=30)
                    presence = [f for f in flood.events() if f.get("type") == "presence"]
                    if slowpoke.username not in presence[-1]["users"]:
                        forgotten_at = time.monotonic()
                        break
                assert forgotten_at is not None, f"not cut after {sent} messages"
                # The room let go of it at once; its socket is cut within the grace, and
                # only then does the server stop counting it.
                while connections(server).get("sse", 0) > baseline:
                    assert time.monotonic() - forgotten_at < CLOSE_GRACE + 3, (
                        "the slow reader's connection was never let go"
                    )
                    await asyncio.sleep(0.1)
                # Twisted closes an aborted socket on the reactor's next turn (abortConnection
                # schedules connectionLost), which on a loaded machine (a parallel test run)
                # can come after the metrics answered with the lower count.
                closing = time.monotonic()
                while tcp_state(sock) == 1:
                    assert time.monotonic() - closing < 2, (
                        "the server side never closed the socket"
                    )
                    await asyncio.sleep(0.05)
                with contextlib.suppress(OSError):
                    while sock.recv(1 << 20):
                        pass  # what was sent before the reset, then the reset or EOF
                # Healthy afterwards: a new stream gets the next message.
                async with await SSEClient.connect(server, slug, slowpoke) as fresh:
                    assert fresh.status == 200
                    seq = await flood.send_and_ack("after the cut", f"after-{TAG}")
                    await fresh.wait_seq(seq)
            finally:
                sock.close()

    run(main(), timeout=150)
    response = httpx.get(server.url + "/healthz", timeout=5, trust_env=False)
    assert response.json()["status"] == "ok"
