"""The Python client library (parley_client) against a real serve.py: token auth, sync
and asyncio sends and event streams, resume across a server restart with no gap and no
duplicate, idempotent sends retried through an outage and a rate limit, and a bad token
as a clear exception.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from live_clients import history, provision, run
from parley_testing import ServerProcess
from token_testing import make_tokens

from parley_client import (
    AccessLost,
    AsyncClient,
    Client,
    Forbidden,
    NotFound,
    RateLimited,
    Unauthorized,
)

PASSWORD = "pw-python-client-3318"


ROOMS = ["py-sync", "py-async", "py-resume", "py-idem", "py-bad", "py-revoke", "py-restart"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One server for the module (tests restart it; each test has its own room)."""
    server = ServerProcess(tmp_path_factory.mktemp("py-client"), env={"CHAT_RATE_LIMIT": "0"})
    server.start()
    provision(
        server,
        users=[("ada", PASSWORD), ("ben", PASSWORD)],
        rooms=[{"slug": slug, "members": ["ada", "ben"]} for slug in ROOMS]
        + [{"slug": "py-private", "public": False, "members": ["ada"]}],
        sessions=False,
    )
    secrets = make_tokens(
        server, ("ada", "ada"), ("ben", "ben"), ("bot", "ben", None, True), ("doomed", "ada")
    )
    yield server, secrets
    server.kill()


def durable_seqs(events) -> list[int]:
    return [
        e["seq"] for e in events if e.get("type") in ("message", "edited", "deleted", "reaction")
    ]


def test_sync_client_calls_and_events(world):
    server, secrets = world
    with Client(server.url, secrets["ada"]) as ada, Client(server.url, secrets["ben"]) as ben:
        me = ada.me()
        assert me["user"] == "ada" and me["is_bot"] is False
        assert {r["slug"] for r in ada.rooms()} >= {"py-sync", "py-private"}
        stream = ada.events("py-sync")
        # The stream is open (its hello read) before anything is sent.
        with pytest.raises(TimeoutError):
            stream.next(timeout=0.5)
        first = ben.send("py-sync", "hello from ben")
        assert first["seq"] == 1 and first["event"]["body"] == "hello from ben"
        reply = ada.send("py-sync", "hi ben", reply_to=first["seq"])
        edited = ben.edit("py-sync", first["seq"], "hello from ben!")
        reacted = ada.react("py-sync", first["seq"], "👍")
        gone = ada.delete("py-sync", reply["seq"])
        got = [stream.next(timeout=10) for _ in range(5)]
        stream.close()
        assert [e["seq"] for e in got] == [
            1,
            reply["seq"],
            edited["seq"],
            reacted["seq"],
            gone["seq"],
        ]
        assert [e["type"] for e in got] == ["message", "message", "edited", "reaction", "deleted"]
        assert got[1]["reply_to"] == 1 and got[0]["user"] == "ben"
        page = ada.history("py-sync", after=0, limit=2)
        assert [e["seq"] for e in page["events"]] == [1, 2] and page["has_more"]
        read = ada.mark_read("py-sync", gone["seq"])
        assert read["read_seq"] == gone["seq"]
        direct = ada.dm("ben")
        assert direct["kind"] == "direct" and ben.dm("ada")["slug"] == direct["slug"]
        with pytest.raises(NotFound):
            ada.send("no-such-room", "x")
        with pytest.raises(Forbidden):
            ben.history("py-private")
        # A bot's token signs it in; /api/me/ says it is one.
    with Client(server.url, secrets["bot"]) as bot:
        assert bot.me()["is_bot"] is True


def test_async_client_send_and_events(world):
    server, secrets = world

    async def main():
        async with (
            AsyncClient(server.url, secrets["ada"]) as ada,
            AsyncClient(server.url, secrets["ben"]) as ben,
        ):
            assert (await ben.me())["user"] == "ben"
            stream = ada.events("py-async", since=0)
            sent = [await ben.send("py-async", f"async {i}") for i in range(3)]
            got = [await stream.next(timeout=10) for _ in range(3)]
            assert [e["seq"] for e in got] == [s["seq"] for s in sent]
            assert [e["body"] for e in got] == ["async 0", "async 1", "async 2"]
            # Iteration with async for, from where the stream is.
            await ben.send("py-async", "async 3")
            async for event in stream:
                assert event["body"] == "async 3"
                break
            await stream.aclose()
            inbox = ada.inbox()
            hello = await inbox.next(timeout=10)
            assert hello["type"] == "hello" and hello["user"] == "ada"
            await ben.send("py-async", "for the inbox")
            activity = await inbox.next(timeout=10)
            assert activity["type"] == "activity" and activity["room"] == "py-async"
            await inbox.aclose()

    run(main())


def test_resume_after_a_server_restart_has_no_gap_and_no_duplicate(world):
    server, secrets = world
    ada = Client(server.url, secrets["ada"])
    ben = Client(server.url, secrets["ben"], retry_for=60)
    stream = ada.events("py-resume")
    with pytest.raises(TimeoutError):
        stream.next(timeout=0.5)
    for i in range(5):
        ben.send("py-resume", f"before {i}")
    got = [stream.next(timeout=10) for _ in range(3)]  # two still unread when it dies
    server.stop()
    # Sent while the server is down: each retried with its client_id until it is back.
    done: list[dict] = []
    sender = threading.Thread(
        target=lambda: done.extend(ben.send("py-resume", f"during {i}") for i in range(3))
    )
    sender.start()
    time.sleep(1.0)
    server.restart()
    sender.join(60)
    assert len(done) == 3
    for i in range(3):
        ben.send("py-resume", f"after {i}")
    while len(got) < 11:
        got.append(stream.next(timeout=20))
    stream.close()
    assert durable_seqs(got) == list(range(1, 12))
    assert [e["body"] for e in got][5:8] == ["during 0", "during 1", "during 2"]
    assert durable_seqs(history(server, "py-resume")) == list(range(1, 12))  # no duplicate
    ada.close()
    ben.close()


def test_resends_of_one_client_id_are_one_message(world):
    server, secrets = world
    with Client(server.url, secrets["ben"]) as ben:
        first = ben.send("py-idem", "once", client_id="fixed-1")
        again = ben.send("py-idem", "once", client_id="fixed-1")
        assert first["seq"] == again["seq"]
    assert [e["body"] for e in history(server, "py-idem")] == ["once"]


def test_sends_over_the_rate_limit_wait_and_are_all_stored_once(make_server):
    server = make_server(env={"CHAT_RATE_LIMIT": "2/2s"}, name="limited")
    provision(server, users=[("ada", PASSWORD)], rooms=["py-room"], sessions=False)
    secret = make_tokens(server, ("ada", "ada"))["ada"]
    with Client(server.url, secret, retry_for=30) as ada:
        started = time.monotonic()
        seqs = [ada.send("py-room", f"limited {i}")["seq"] for i in range(5)]
        took = time.monotonic() - started
        assert seqs == [1, 2, 3, 4, 5]
        assert took >= 1.0  # some waited for their retry_after
        with Client(server.url, secret, retry_for=0) as impatient:
            for i in range(10):
                try:
                    impatient.send("py-room", f"no wait {i}")
                except RateLimited as error:
                    assert error.retry_after and error.retry_after > 0
                    break
            else:
                raise AssertionError("never rate limited")
    bodies = [e["body"] for e in history(server, "py-room")]
    assert bodies[:5] == [f"limited {i}" for i in range(5)] and len(set(bodies)) == len(bodies)


def test_a_bad_token_is_a_clear_exception(world):
    server, _secrets = world
    with Client(server.url, "prl_" + "x" * 43) as bad:
        with pytest.raises(Unauthorized) as error:
            bad.me()
        assert error.value.status == 401 and error.value.code == "unauthorized"
        with pytest.raises(Unauthorized):
            bad.send("py-bad", "x")
        with pytest.raises(Unauthorized):
            next(bad.events("py-bad"))

    async def main():
        async with AsyncClient(server.url, "not-a-token") as bad:
            with pytest.raises(Unauthorized):
                await bad.rooms()
            with pytest.raises(Unauthorized):
                await bad.events("py-bad").next(timeout=10)

    run(main())
    assert history(server, "py-bad") == []


def test_a_revoked_token_ends_the_stream_with_access_lost(world):
    server, secrets = world
    with Client(server.url, secrets["doomed"]) as ada:
        stream = ada.events("py-private")
        with pytest.raises(TimeoutError):
            stream.next(timeout=0.5)
        server.manage(
            "shell",
            "-c",
            "from chat.models import Token; from chat import tokens; "
            "tokens.revoke(Token.objects.get(name='doomed'))",
        )
        # manage.py has no reactor: the server's room check (5 s) finds the revocation.
        with pytest.raises(AccessLost):
            stream.next(timeout=15)
        with pytest.raises(Unauthorized):
            ada.me()


def test_async_stream_survives_a_restart(world):
    server, secrets = world

    async def main():
        async with (
            AsyncClient(server.url, secrets["ada"]) as ada,
            AsyncClient(server.url, secrets["ben"]) as ben,
        ):
            stream = ada.events("py-restart", since=0)
            await ben.send("py-restart", "a1")
            assert (await stream.next(timeout=10))["seq"] == 1
            await asyncio.to_thread(server.stop)
            await asyncio.to_thread(server.restart)
            await ben.send("py-restart", "a2")
            event = await stream.next(timeout=20)
            assert (event["seq"], event["body"]) == (2, "a2")
            await stream.aclose()

    run(main(), timeout=90)
