"""Guarantees 2-4 across a crash: ``kill -9`` right after acks, restart on the same port.

The server of this module is killed and restarted by its tests; nothing else uses it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from types import SimpleNamespace

import pytest
from live_clients import (
    PollClient,
    SSEClient,
    WSClient,
    assert_exact_seqs,
    history,
    login_many,
    provision,
    run,
    seqs,
    wait_healthy,
)
from parley_testing import ServerProcess

PASSWORD = "pw-durability-5520"


@pytest.fixture(scope="module")
def crashy(tmp_path_factory):
    server = ServerProcess(
        tmp_path_factory.mktemp("live-durability"), env={"CHAT_RATE_LIMIT": "0"}
    ).start()
    try:
        provision(
            server,
            users=[("alice", PASSWORD), ("bob", PASSWORD)],
            rooms=["crash-ws", "crash-post", "crash-resume", "locked"],
            sessions=False,
        )
        # Signed in through the real login form: its cookies must work on every transport.
        yield SimpleNamespace(
            server=server, accounts=login_many(server, [("alice", PASSWORD), ("bob", PASSWORD)])
        )
    finally:
        server.kill()


def crash_and_restart(server) -> None:
    server.kill()  # SIGKILL: no shutdown code runs
    server.restart()
    try:
        wait_healthy(server)
    except AssertionError:
        raise AssertionError(f"no restart:\n{server.log()[-3000:]}") from None


def test_every_acked_ws_send_survives_kill_9(crashy):
    """Guarantee 3: pipeline 40 sends, SIGKILL the moment the 10th ack arrives; every send
    acked before the crash is in the log after it, the log has no gap, and resending all
    40 client_ids (guarantee 4) gives the acked ones their seqs back and stores the rest
    exactly once."""
    server, slug = crashy.server, "crash-ws"
    alice = crashy.accounts["alice"]
    count = 40

    async def main():
        ws = await WSClient.connect(server, slug, alice)
        for i in range(count):
            await ws.send(f"crash {i}", f"crash-{i}")
        await ws.wait_for(lambda _f: len(ws.acks()) >= 10, timeout=20, what="10 acks")
        server.kill()
        await ws.wait_closed(timeout=5)
        acked = ws.acks()
        assert len(acked) >= 10
        await ws.close()
        crash_and_restart(server)

        logged = await asyncio.to_thread(history, server, slug)
        assert seqs(logged) == list(range(1, len(logged) + 1)), "gap in the log after a crash"
        by_client_id = {e["client_id"]: e for e in logged}
        for client_id, seq in acked.items():
            assert client_id in by_client_id, f"acked {client_id} (seq {seq}) lost in the crash"
            event = by_client_id[client_id]
            assert event["seq"] == seq and event["body"] == f"crash {client_id[6:]}"

        async with await WSClient.connect(server, slug, alice) as again:
            for i in range(count):
                await again.send(f"crash {i} (resent)", f"crash-{i}")
            await again.wait_for(lambda _f: len(again.acks()) >= count, timeout=20)
            resent = again.acks()
        for client_id, seq in acked.items():
            assert resent[client_id] == seq, f"{client_id}: {seq} before, {resent[client_id]}"
        order = [resent[f"crash-{i}"] for i in range(count)]
        new = [s for s in order if s > len(logged)]
        assert new == sorted(new), "fresh sends after the restart out of order"

        final = await asyncio.to_thread(history, server, slug)
        assert seqs(final) == list(range(1, count + 1))
        assert sorted(e["client_id"] for e in final) == sorted(f"crash-{i}" for i in range(count))
        stored_before = {e["client_id"]: e["body"] for e in logged}
        for event in final:  # a body stored before the crash is not replaced by the resend
            if event["client_id"] in stored_before:
                assert event["body"] == stored_before[event["client_id"]]

    run(main(), timeout=90)


def test_post_201_survives_kill_9(crashy):
    server, slug = crashy.server, "crash-post"

    async def main():
        async with PollClient(server, slug, crashy.accounts["bob"]) as poster:
            answers = []
            for i in range(5):
                response = await poster.post(f"posted {i}", f"post-{i}")
                assert response.status_code == 201, response.text
                answers.append(response.json()["seq"])
            server.kill()  # right after the last 201
        crash_and_restart(server)
        logged = await asyncio.to_thread(history, server, slug)
        assert [(e["seq"], e["client_id"], e["body"]) for e in logged] == [
            (seq, f"post-{i}", f"posted {i}") for i, seq in enumerate(answers)
        ]
        async with PollClient(server, slug, crashy.accounts["bob"]) as poster:
            again = await poster.post("posted 4 (resent)", "post-4")
            assert (again.status_code, again.json()) == (200, {"seq": answers[-1]})
            fresh = await poster.post("after the crash", "post-5")
            assert (fresh.status_code, fresh.json()) == (201, {"seq": answers[-1] + 1})

    run(main(), timeout=90)


def test_resume_across_a_restart_on_every_transport(crashy):
    """Guarantee 2 whichever process answers: seqs continue after a crash with no reuse,
    and clients that saw up to N get exactly N+1.. from the new process."""
    server, slug = crashy.server, "crash-resume"
    alice, bob = crashy.accounts["alice"], crashy.accounts["bob"]

    async def main():
        watcher = await WSClient.connect(server, slug, bob, since=0)
        async with await WSClient.connect(server, slug, alice) as ws:
            for i in range(5):
                await ws.send_and_ack(f"before {i}", f"before-{i}")
            await watcher.wait_seq(5)
            crash_and_restart(server)
        await watcher.wait_closed(timeout=5)
        await watcher.close()
        assert_exact_seqs(watcher.events(), 1, 5, "before the crash")

        async with PollClient(server, slug, alice) as poster:
            after = [await poster.send_ok(f"after {i}", f"after-{i}") for i in range(3)]
        assert after == [6, 7, 8], "seqs must continue after a restart, no gap and no reuse"

        resumed = [
            await WSClient.connect(server, slug, bob, since=5),
            await SSEClient.connect(server, slug, bob, last_event_id=5),
            await SSEClient.connect(server, slug, bob, since=5),
        ]
        poll = PollClient(server, slug, bob)
        poll.start(5)
        resumed.append(poll)
        try:
            for receiver in resumed:
                await receiver.wait_seq(8)
            async with await WSClient.connect(server, slug, alice) as ws:
                live = await ws.send_and_ack("live again", "live-1")
            for receiver in resumed:
                await receiver.wait_seq(live)
                await receiver.settle(0.3)
                assert_exact_seqs(receiver.events(), 6, live, receiver.kind)
        finally:
            await asyncio.gather(*(r.close() for r in resumed))

    run(main(), timeout=90)


def test_no_ack_or_201_while_the_commit_cannot_happen(crashy):
    """Guarantee 3, directly: while another process holds SQLite's write lock no send can
    commit, so none may be acknowledged; once the lock goes, the acks come, and a SIGKILL
    right after them loses nothing."""
    server, slug = crashy.server, "locked"
    database = server.database_url.removeprefix("sqlite:///")

    async def main():
        ws = await WSClient.connect(server, slug, crashy.accounts["alice"])
        poster = PollClient(server, slug, crashy.accounts["bob"])
        lock = sqlite3.connect(database, timeout=5, isolation_level=None)
        try:
            await ws.wait_for(lambda f: f.get("type") == "hello")
            lock.execute("BEGIN IMMEDIATE")  # the write lock, as a long transaction has it
            try:
                for i in range(3):
                    await ws.send(f"locked {i}", f"locked-{i}")
                posting = asyncio.create_task(poster.post("locked post", "locked-post"))
                await asyncio.sleep(1.5)
                early = [f for f in ws.events() if f.get("type") in ("ack", "error")]
                assert not early, f"answered while nothing could commit: {early}"
                assert not posting.done(), "POST answered while nothing could commit"
            finally:
                lock.rollback()
            await ws.wait_for(lambda _f: len(ws.acks()) >= 1, what="the first ack")
            response = await asyncio.wait_for(posting, 10)
            server.kill()
            await ws.wait_closed(timeout=5)
            acked = ws.acks()
        finally:
            lock.close()
            await asyncio.gather(ws.close(), poster.close())
        assert response.status_code == 201, response.text
        crash_and_restart(server)
        logged = {e["client_id"]: e["seq"] for e in await asyncio.to_thread(history, server, slug)}
        for client_id, seq in acked.items():
            assert logged.get(client_id) == seq, f"acked {client_id} (seq {seq}) was lost"
        assert logged.get("locked-post") == response.json()["seq"]

    run(main(), timeout=90)
