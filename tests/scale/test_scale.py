"""Guarantees 1-6 across processes: two instances ("two machines") and ``--workers``.

Every server of a test shares the test's PostgreSQL database and Redis namespace; the
expected log is read straight from the database, and every receiver, on whichever
process, must have exactly that log: seqs 1..N, in order, no gap, no duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from live_clients import PollClient, WSClient, run
from scale_support import (
    SLUG,
    assert_same_log,
    received,
    receiver,
    row_key,
    socket_owners,
    wait_workers,
)
from websockets.exceptions import ConnectionClosed

pytestmark = pytest.mark.scale


async def ws_sender(server, account, count: int, tag: str, timeout: float = 30.0) -> list[int]:
    """Pipeline ``count`` sends on one WebSocket; the acked seqs in the order sent."""
    async with await WSClient.connect(server, SLUG, account) as ws:
        for i in range(count):
            await ws.send(f"{tag} says {i}", f"{tag}-{i}")
            if i % 5 == 4:
                await asyncio.sleep(0.005)  # let the other senders interleave
        acked = []
        for i in range(count):
            reply = await ws.wait_reply(f"{tag}-{i}", timeout)
            assert reply["type"] == "ack", f"{tag}: send {i} got {reply}"
            acked.append(reply["seq"])
    return acked


async def post_sender(server, account, count: int, tag: str) -> list[int]:
    """``count`` long-poll POSTs one after the other; their seqs."""
    async with PollClient(server, SLUG, account) as poster:
        acked = []
        for i in range(count):
            response = await poster.post(f"{tag} says {i}", f"{tag}-{i}")
            assert response.status_code == 201, (tag, i, response.status_code, response.text)
            acked.append(response.json()["seq"])
    return acked


def check_acks(acks: dict[str, list[int]], log: list[tuple]) -> None:
    """Every ack names the stored event of its send; one sender's seqs rise (guarantee 6)."""
    by_client_id = {row[4]: row for row in log}
    for tag, seqs in acks.items():
        assert seqs == sorted(seqs), f"{tag}: acked seqs not in the order sent: {seqs}"
        for i, seq in enumerate(seqs):
            row = by_client_id.get(f"{tag}-{i}")
            assert row is not None, f"{tag}-{i} acked with seq {seq} but not in the database"
            assert (row[0], row[3]) == (seq, f"{tag} says {i}"), (tag, i, seq, row)


def test_two_instances_deliver_one_gap_free_order(cluster):
    """Two serve.py on two ports, started together on an empty database (both migrate),
    4 users x 25 sends over WebSocket and long-poll POST on both: 6 WebSocket receivers
    and 2 long-poll receivers (3+1 per instance) all get seqs 1..100 with identical
    (user, body, client_id), and the database holds exactly those 100 messages."""
    cluster.use_database(fresh=True)
    a, b = cluster.start(2, migrate=True)
    accounts = cluster.provision(["ws-a", "ws-b", "post-a", "post-b"], [SLUG])
    per_user, total = 25, 100

    async def main():
        receivers = [await receiver(server) for server in (a, a, a, b, b, b)]
        pollers = [PollClient(server, SLUG) for server in (a, b)]
        for poller in pollers:
            poller.start(since=0)
        await asyncio.sleep(0.2)  # the long-polls are waiting
        results = await asyncio.gather(
            ws_sender(a, accounts["ws-a"], per_user, "ws-a"),
            ws_sender(b, accounts["ws-b"], per_user, "ws-b"),
            post_sender(a, accounts["post-a"], per_user, "post-a"),
            post_sender(b, accounts["post-b"], per_user, "post-b"),
        )
        acks = dict(zip(["ws-a", "ws-b", "post-a", "post-b"], results, strict=True))
        clients = [*receivers, *pollers]
        await asyncio.gather(*(c.wait_seq(total, timeout=20) for c in clients))
        await asyncio.sleep(0.5)  # anything sent twice would arrive now

        log = cluster.log(SLUG)
        assert [row[0] for row in log] == list(range(1, total + 1)), "database log has gaps"
        assert all(row[1] == "message" for row in log)
        check_acks(acks, log)
        expected = [row_key(row) for row in log]
        for index, client in enumerate(clients):
            assert not client.closed, f"receiver {index} was closed: {client.describe_close()}"
            assert_same_log(f"{client.kind} receiver {index}", received(client), expected)
        for client in clients:
            await client.close()

    run(main(), timeout=90)


def test_workers_share_one_port_and_one_order(cluster):
    """``--workers 2``: connections land on both workers (the owner of each accepted
    socket is read from /proc), senders on both, and all 20+ receivers get every event
    in the same gap-free order."""
    (server,) = cluster.start(1, args=["--workers", "2"])
    pids = wait_workers(server, 2)
    users = [f"worker-user-{i}" for i in range(4)]
    accounts = cluster.provision(users, [SLUG])
    per_user, total = 15, 60

    def owner(ws) -> int | None:
        port = ws.conn.local_address[1]
        return socket_owners(server.port, {port}, pids).get(port)

    async def main():
        receivers, owners = [], []
        # One at a time: each connection is accepted on its own, by whichever worker.
        for _ in range(50):
            ws = await receiver(server)
            receivers.append(ws)
            owners.append(owner(ws))
            if len(receivers) >= 20 and len(set(owners)) >= 2:
                break
        assert None not in owners, f"a connection held by no worker {pids}: {owners}"
        assert len(set(owners)) == 2, (
            f"{len(receivers)} connections all accepted by worker pid {owners[0]}; "
            f"workers {pids} do not share the port"
        )
        senders: list[WSClient] = []
        sender_owners: list[int | None] = []
        for user in users:
            senders.append(await WSClient.connect(server, SLUG, accounts[user]))
            sender_owners.append(owner(senders[-1]))
        for _ in range(30):  # a sender on each worker: move the last one until it is
            if len(set(sender_owners)) == 2:
                break
            await senders[-1].close()
            senders[-1] = await WSClient.connect(server, SLUG, accounts[users[-1]])
            sender_owners[-1] = owner(senders[-1])
        assert len(set(sender_owners)) == 2, f"all senders on one worker: {sender_owners}"

        async def send_all(ws, tag):
            for i in range(per_user):
                await ws.send(f"{tag} says {i}", f"{tag}-{i}")
            return [await ws.wait_ack(f"{tag}-{i}", timeout=30) for i in range(per_user)]

        pairs = zip(senders, users, strict=True)
        results = await asyncio.gather(*(send_all(ws, user) for ws, user in pairs))
        await asyncio.gather(*(r.wait_seq(total, timeout=20) for r in receivers))
        await asyncio.sleep(0.5)
        log = cluster.log(SLUG)
        assert [row[0] for row in log] == list(range(1, total + 1)), "database log has gaps"
        check_acks(dict(zip(users, results, strict=True)), log)
        expected = [row_key(row) for row in log]
        for index, ws in enumerate(receivers):
            assert_same_log(f"receiver {index} (worker {owners[index]})", received(ws), expected)
        for ws in (*receivers, *senders):
            await ws.close()

    run(main(), timeout=100)


def test_kill_9_of_one_instance_mid_stream(cluster):
    """SIGKILL instance A while senders on B keep sending: A's WebSocket receivers
    reconnect to B with since=<last seq seen> and their whole stream (before + after)
    is exactly the database log; B's receivers never notice; every send acked by A
    before it died is in the log with its seq (guarantee 3)."""
    a, b = cluster.start(2)
    accounts = cluster.provision(["steady-ws", "steady-post", "doomed"], [SLUG])

    async def main():
        on_a = [await receiver(a) for _ in range(3)]
        on_b = [await receiver(b) for _ in range(2)]
        doomed = await WSClient.connect(a, SLUG, accounts["doomed"])
        stop = asyncio.Event()
        acks: dict[str, list[int]] = {"steady-ws": [], "steady-post": []}

        async def steady_ws():
            async with await WSClient.connect(b, SLUG, accounts["steady-ws"]) as ws:
                for i in range(2000):
                    if stop.is_set():
                        return
                    acks["steady-ws"].append(
                        await ws.send_and_ack(f"steady-ws says {i}", f"steady-ws-{i}")
                    )
                    await asyncio.sleep(0.01)

        async def steady_post():
            async with PollClient(b, SLUG, accounts["steady-post"]) as poster:
                for i in range(2000):
                    if stop.is_set():
                        return
                    acks["steady-post"].append(
                        await poster.send_ok(f"steady-post says {i}", f"steady-post-{i}")
                    )
                    await asyncio.sleep(0.01)

        async def doomed_sends():
            with contextlib.suppress(ConnectionClosed):  # A is killed under it
                for i in range(200):
                    await doomed.send(f"doomed says {i}", f"doomed-{i}")
                    await asyncio.sleep(0.01)

        senders = [asyncio.create_task(t()) for t in (steady_ws, steady_post)]
        doomed_task = asyncio.create_task(doomed_sends())
        await asyncio.gather(*(r.wait_seq(25, timeout=20) for r in on_a))
        await asyncio.to_thread(a.kill)  # SIGKILL, mid-stream
        doomed_task.cancel()
        doomed_acked = doomed.acks()
        resumed = []
        for old in on_a:
            code = await old.wait_closed(timeout=10)
            assert code in (None, 1006), f"a killed process sent close code {code}"
            since = old.last_seq()
            resumed.append((since, await receiver(b, since=since)))
        await asyncio.sleep(1.0)  # senders keep going on B after the reconnects
        stop.set()
        await asyncio.gather(*senders)
        await doomed.close()

        log = cluster.log(SLUG)
        total = len(log)
        assert [row[0] for row in log] == list(range(1, total + 1)), "database log has gaps"
        expected = [row_key(row) for row in log]
        await asyncio.gather(*(r.wait_seq(total, timeout=15) for _s, r in resumed))
        await asyncio.gather(*(r.wait_seq(total, timeout=15) for r in on_b))
        await asyncio.sleep(0.5)
        for index, (old, (since, new)) in enumerate(zip(on_a, resumed, strict=True)):
            assert since < total, "nothing was sent after the kill: the test proved nothing"
            got = received(old) + received(new)
            assert_same_log(f"A receiver {index} (resumed at {since} on B)", got, expected)
        for index, ws in enumerate(on_b):
            assert not ws.closed, f"B receiver {index} closed: {ws.describe_close()}"
            assert_same_log(f"B receiver {index}", received(ws), expected)
        by_client_id = {row[4]: row[0] for row in log}
        for client_id, seq in doomed_acked.items():
            assert by_client_id.get(client_id) == seq, (
                f"{client_id} acked by A with seq {seq} before the kill; "
                f"database has {by_client_id.get(client_id)}"
            )
        check_acks(acks, log)
        for ws in (*on_b, *(r for _s, r in resumed)):
            await ws.close()

    run(main(), timeout=100)
