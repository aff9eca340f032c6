"""Rule 5 of DESIGN.md across processes: Redis or PostgreSQL goes away mid-stream.

Sends get `unavailable` (never a lie), connections stay up, and when the dependency
returns the service resumes by itself: no restart, nothing lost, nothing repeated.
"""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from live_clients import PollClient, WSClient, run
from scale_support import (
    SLUG,
    RedisConnection,
    assert_same_log,
    pg_admin,
    pg_connect,
    received,
    receiver,
    redis_ping,
    row_key,
)

pytestmark = pytest.mark.scale


def redis_clients(port: int) -> int:
    """Connections to the Redis on ``port``, besides the tests' own."""
    with RedisConnection(port=port) as redis:
        clients = redis.command("CLIENT", "LIST").strip().splitlines()
    return sum(f" name={RedisConnection.NAME} " not in f" {c} " for c in clients)


async def wait_until(check, what: str, timeout: float, interval: float = 0.2) -> None:
    """Poll the blocking ``check()`` (in a thread) until it is true, or fail after timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await asyncio.to_thread(check):
        if loop.time() > deadline:
            raise AssertionError(f"not true within {timeout}s: {what}")
        await asyncio.sleep(interval)


def numsub(port: int, channel: str) -> int:
    with RedisConnection(port=port) as redis:
        return int(redis.command("PUBSUB", "NUMSUB", channel)[1])


def test_redis_outage_and_return(cluster, own_redis):
    """Instances A and B on a redis-server of the test's own. While it is down (SIGKILL),
    sends on A are acked with the next seqs and A's receivers get each within 1 s; B's
    receivers stay connected and catch up within 30 s; once Redis is back (same port,
    no server restart) both processes reconnect and subscribe again by themselves, then
    events cross between them live (each within 2 s, less than the 5 s database check),
    and every receiver's stream is exactly the database log."""
    cluster.redis_url = own_redis.url
    a, b = cluster.start(2)
    accounts = cluster.provision(["alice", "bob"], [SLUG])
    channel = f"{cluster.namespace.prefix}:room:{SLUG}"

    async def main():
        on_a = [await receiver(a) for _ in range(2)]
        on_b = [await receiver(b) for _ in range(2)]
        everyone = [*on_a, *on_b]
        alice = await WSClient.connect(a, SLUG, accounts["alice"])
        bob = await WSClient.connect(b, SLUG, accounts["bob"])
        port = own_redis.port
        await wait_until(lambda: numsub(port, channel) == 2, "A and B subscribed", 10)

        async def relayed(sender, name: str, i: int, seq: int, listeners, within: float):
            """Send; the other process's receivers have it ``within`` seconds."""
            assert await sender.send_and_ack(f"{name} says {i}", f"{name}-{i}") == seq
            try:
                await asyncio.gather(*(r.wait_seq(seq, within) for r in listeners))
            except AssertionError as error:
                raise AssertionError(f"seq {seq} from {name} not relayed: {error}") from None

        await relayed(alice, "alice", 0, 1, on_b, 10.0)  # warm-up: the bus is connected
        for i in range(1, 10):  # Redis up: B hears A through the bus
            await relayed(alice, "alice", i, i + 1, on_b, 2.0)
        await asyncio.gather(*(r.wait_seq(10, timeout=5) for r in on_a))
        connections = await asyncio.to_thread(redis_clients, port)

        await asyncio.to_thread(own_redis.kill)
        assert not redis_ping(own_redis.port), "redis-server still answers after SIGKILL"
        for i in range(10, 30):
            seq = await alice.send_and_ack(f"alice says {i}", f"alice-{i}", timeout=15)
            assert seq == i + 1, f"send {i} on A while Redis is down: seq {seq}"
            try:  # at once, not at the next database check
                await asyncio.gather(*(r.wait_seq(seq, timeout=1.0) for r in on_a))
            except AssertionError as error:
                raise AssertionError(f"A's receivers lack seq {seq}: {error}") from None
        assert own_redis.proc.poll() is not None, "Redis came back before the checks"

        await asyncio.to_thread(own_redis.start)
        try:
            await asyncio.gather(*(r.wait_seq(30, timeout=30) for r in on_b))
        except AssertionError as error:
            raise AssertionError(f"B's receivers did not catch up after Redis: {error}") from None
        # Both processes reconnect by themselves (backoff up to 10 s), every connection.
        await wait_until(lambda: numsub(port, channel) == 2, "A and B subscribed again", 30)
        await wait_until(
            lambda: redis_clients(port) >= connections,
            f"the servers' {connections} Redis connections are back",
            30,
        )

        seq = 30  # live again through the bus, both ways
        for i in range(30, 35):
            seq += 1
            await relayed(alice, "alice", i, seq, on_b, 2.0)
        for i in range(5):
            seq += 1
            await relayed(bob, "bob", i, seq, on_a, 2.0)

        await asyncio.sleep(0.5)
        log = cluster.log(SLUG)
        assert [row[0] for row in log] == list(range(1, 41))
        expected = [row_key(row) for row in log]
        for index, ws in enumerate(everyone):
            assert not ws.closed, f"receiver {index} closed: {ws.describe_close()}"
            assert_same_log(f"receiver {index} on {'AB'[index // 2]}", received(ws), expected)
        for ws in (*everyone, alice, bob):
            await ws.close()

    run(main(), timeout=110)


def refuse_connections(dbname: str) -> None:
    pg_admin(
        f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS false',
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        f" WHERE datname = '{dbname}' AND pid <> pg_backend_pid()",
    )
    try:
        pg_connect(dbname).close()
    except psycopg.OperationalError:
        return
    raise AssertionError(f"database {dbname} still accepts connections")


def allow_connections(dbname: str) -> None:
    pg_admin(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true')


async def until_acked(ws: WSClient, body: str, client_id: str, timeout: float = 20.0) -> int:
    """Resend (same client_id) while the answer is `unavailable`, as a client would."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        start = len(ws.frames)
        await ws.send(body, client_id)
        reply = await ws.wait_for(
            lambda f: (
                isinstance(f, dict)
                and f.get("type") in ("ack", "error")
                and f.get("client_id") == client_id
            ),
            timeout=15,
            start=start,
            what=f"reply to {client_id}",
        )
        if reply["type"] == "ack":
            return reply["seq"]
        assert reply.get("code") == "unavailable", reply
        assert loop.time() < deadline, f"still unavailable {timeout}s after the database returned"
        await asyncio.sleep(0.5)


async def post_until_ok(poster: PollClient, body: str, client_id: str, timeout=20.0) -> int:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        response = await poster.post(body, client_id)
        if response.status_code in (200, 201):
            return response.json()["seq"]
        assert response.status_code == 503, (response.status_code, response.text)
        assert loop.time() < deadline, f"still 503 {timeout}s after the database returned"
        await asyncio.sleep(0.5)


def test_database_outage_unavailable_then_recovery(cluster):
    """The database refuses connections (ALLOW_CONNECTIONS false + every backend
    terminated): WebSocket sends on A get an `unavailable` error frame carrying their
    client_id, POSTs on B get 503 `unavailable`, and every connection stays open. When
    the database is back, the same connections send again (after at most a few retried
    `unavailable`s) and the seqs go on from 11 with no gap; no refused send was stored."""
    a, b = cluster.start(2)
    accounts = cluster.provision(["alice", "bob"], [SLUG])
    dbname = cluster.db_name

    async def main():
        on_a, on_b = await receiver(a), await receiver(b)
        alice = await WSClient.connect(a, SLUG, accounts["alice"])
        bob = PollClient(b, SLUG, accounts["bob"])
        for i in range(5):
            assert await alice.send_and_ack(f"alice says {i}", f"alice-{i}") == i + 1
        for i in range(5):
            assert await bob.send_ok(f"bob says {i}", f"bob-{i}") == i + 6
        await asyncio.gather(on_a.wait_seq(10), on_b.wait_seq(10))

        await asyncio.to_thread(refuse_connections, dbname)
        try:
            for i in range(3):
                start = len(alice.frames)
                await alice.send(f"alice down {i}", f"alice-down-{i}")
                reply = await alice.wait_for(
                    lambda f: isinstance(f, dict) and f.get("type") in ("ack", "error"),
                    timeout=15,
                    start=start,
                    what="the reply to a send while the database is down",
                )
                assert (reply["type"], reply.get("code"), reply.get("client_id")) == (
                    "error",
                    "unavailable",
                    f"alice-down-{i}",
                ), f"WebSocket send while the database refuses connections got {reply}"
            for i in range(3):
                response = await bob.post(f"bob down {i}", f"bob-down-{i}")
                assert response.status_code == 503, (response.status_code, response.text)
                assert response.json()["error"]["code"] == "unavailable", response.text
            await asyncio.sleep(1.0)
            for name, ws in (("alice", alice), ("receiver on A", on_a), ("on B", on_b)):
                assert not ws.closed, f"{name} closed during the outage: {ws.describe_close()}"
        finally:
            await asyncio.to_thread(allow_connections, dbname)

        seqs = [await until_acked(alice, "alice is back", "alice-back-0")]
        seqs.append(await post_until_ok(bob, "bob is back", "bob-back-0"))
        for i in range(1, 6):  # recovered: no more `unavailable`
            seqs.append(await alice.send_and_ack(f"alice back {i}", f"alice-back-{i}"))
            seqs.append(await bob.send_ok(f"bob back {i}", f"bob-back-{i}"))
        assert seqs == list(range(11, 23)), f"seqs after the outage: {seqs}"
        await asyncio.gather(on_a.wait_seq(22, timeout=15), on_b.wait_seq(22, timeout=15))
        await asyncio.sleep(0.5)

        log = cluster.log(SLUG)
        assert [row[0] for row in log] == list(range(1, 23)), [row[:1] for row in log]
        stored = {row[4] for row in log}
        assert not {c for c in stored if "-down-" in c}, "a send answered unavailable was stored"
        expected = [row_key(row) for row in log]
        for name, ws in (("receiver on A", on_a), ("receiver on B", on_b), ("alice", alice)):
            assert not ws.closed, f"{name} closed: {ws.describe_close()}"
        assert_same_log("receiver on A", received(on_a), expected)
        assert_same_log("receiver on B", received(on_b), expected)
        for ws in (on_a, on_b, alice, bob):
            await ws.close()

    run(main(), timeout=100)
