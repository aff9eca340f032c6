"""Edits, reactions, replies, deletions and mentions against a real ``serve.py``, over the
WebSocket and over long-poll POST + SSE: the same log, the same events, in seq order, with
replay and history showing every message in its current state (PROTOCOL.md "The room log",
guarantees 1-7 for the new kinds).
"""

from __future__ import annotations

import secrets
from types import SimpleNamespace

import pytest
from live_clients import (
    PollClient,
    SSEClient,
    WSClient,
    durable,
    history,
    provision,
    run,
    seqs,
)

PASSWORD = "pw-conversation-5120"
TAG = secrets.token_hex(3)


def room(name: str) -> str:
    return f"cv-{name}-{TAG}"


@pytest.fixture(scope="module")
def world(live_server):
    users = {name: f"c{TAG}{name}" for name in ("alice", "bob")}
    accounts = provision(
        live_server,
        users=[(u, PASSWORD) for u in users.values()],
        rooms=[
            room("ws"),
            room("poll"),
            room("bad"),
            {"slug": room("other"), "public": True},
            {"slug": room("attic"), "archived": True},
        ],
    )
    return SimpleNamespace(
        server=live_server,
        users=users,
        accounts={name: accounts[u] for name, u in users.items()},
    )


def durable_of(client) -> list[dict]:
    return durable(client.events())


def test_a_conversation_over_the_websocket(world):
    server, slug = world.server, room("ws")
    alice, bob = world.accounts["alice"], world.accounts["bob"]
    bob_name = world.users["bob"]

    async def main():
        async with (
            await WSClient.connect(server, slug, alice) as a,
            await WSClient.connect(server, slug, bob) as b,
        ):
            first = await a.send_and_ack(f"hi @{bob_name} **bold**", "s-1")
            await b.send_json(
                {"type": "send", "body": "hello back", "reply_to": first, "client_id": "s-2"}
            )
            second = await b.wait_ack("s-2")
            await b.send_json(
                {"type": "react", "target": first, "emoji": "👍", "op": "add", "client_id": "r"}
            )
            await b.wait_ack("r")
            await a.send_json(
                {"type": "edit", "target": first, "body": "hi all", "client_id": "e"}
            )
            await a.wait_ack("e")
            await b.send_json({"type": "delete", "target": second, "client_id": "d"})
            await b.wait_ack("d")
            await a.wait_for(lambda f: f.get("type") == "deleted", what="the deletion")
            # A resend of an edit is answered with its seq and appends nothing.
            await a.send_json({"type": "edit", "target": first, "body": "??", "client_id": "e"})
            again = await a.wait_reply("e")
            return durable_of(a), durable_of(b), again

    seen_a, seen_b, again = run(main())
    assert [e["type"] for e in seen_a] == ["message", "message", "reaction", "edited", "deleted"]
    assert seen_a == seen_b  # the same events, in the same order, for both
    assert seqs(seen_a) == [1, 2, 3, 4, 5]
    message = seen_a[0]
    assert message["mentions"] == [world.users["bob"]]
    assert "<strong>bold</strong>" in message["html"] and 'class="mention"' in message["html"]
    assert seen_a[1]["reply_to"] == 1
    assert seen_a[4]["user"] == world.users["bob"]
    assert again == {"type": "ack", "client_id": "e", "seq": 4}

    log = history(server, slug)
    assert seqs(log) == [1, 2, 3, 4, 5]
    assert log[0]["body"] == "hi all" and log[0]["mentions"] == []
    assert log[0]["edited_at"] == seen_a[3]["ts"]
    assert log[0]["reactions"] == [{"emoji": "👍", "users": [world.users["bob"]]}]
    assert log[1]["deleted"] is True and log[1]["body"] == "" and log[1]["html"] == ""

    async def resume():
        async with await WSClient.connect(server, slug, bob, since=0) as late:
            await late.wait_for(lambda f: f.get("seq") == 5, what="the replay")
            return durable_of(late)

    replayed = run(resume())
    assert seqs(replayed) == [1, 2, 3, 4, 5]
    assert replayed[0]["body"] == "hi all" and replayed[0]["reactions"] == log[0]["reactions"]
    assert replayed[1]["deleted"] is True


def test_the_same_writes_over_long_poll_post_reach_an_sse_reader(world):
    server, slug = world.server, room("poll")
    alice, bob = world.accounts["alice"], world.accounts["bob"]

    async def main():
        async with (
            await SSEClient.connect(server, slug, bob) as reader,
            PollClient(server, slug, alice) as poster,
        ):
            first = await poster.send_ok("one")
            react = {"type": "react", "target": first, "emoji": "🎉", "op": "add"}
            created = await poster.post(payload={**react, "client_id": "r-1"})
            noop = await poster.post(payload={**react, "client_id": "r-2"})
            edit = {"type": "edit", "target": first, "body": "one!", "client_id": "e-1"}
            edited = await poster.post(payload=edit)
            read = await poster.post(payload={"type": "read", "seq": 3})
            typing = await poster.post(payload={"type": "typing"})
            await reader.wait_for(lambda f: f.get("type") == "edited", what="the edit")
            statuses = [r.status_code for r in (created, noop, edited, read, typing)]
            return statuses, noop.json(), durable_of(reader), reader.raw

    statuses, noop, seen, raw = run(main())
    assert statuses == [201, 200, 201, 204, 204]
    assert noop == {"seq": None}  # already in effect: nothing appended
    assert [(e["type"], e["seq"]) for e in seen] == [
        ("message", 1),
        ("reaction", 2),
        ("edited", 3),
    ]
    assert [(e.event, e.id) for e in raw if e.id] == [
        ("message", "1"),
        ("reaction", "2"),
        ("edited", "3"),
    ]


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"type": "edit", "target": 1, "body": "not yours"}, "forbidden"),
        ({"type": "delete", "target": 1}, "forbidden"),
        ({"type": "react", "target": 99, "emoji": "👍", "op": "add"}, "bad_request"),
        ({"type": "react", "target": 1, "emoji": "xx", "op": "add"}, "bad_request"),
        ({"type": "send", "body": "x", "reply_to": 1_000}, "bad_request"),
        ({"type": "edit", "target": 1, "body": ""}, "bad_request"),
        ({"type": "edit", "target": 1, "body": "x" * 5000}, "too_large"),
    ],
)
def test_refused_writes_keep_the_socket_and_store_nothing(world, frame, code):
    server, slug = world.server, room("bad")
    alice, bob = world.accounts["alice"], world.accounts["bob"]

    async def main():
        async with PollClient(server, slug, alice) as poster:
            if not history(server, slug):
                await poster.send_ok("alice's")
        async with await WSClient.connect(server, slug, bob) as b:
            before = len(history(server, slug))
            await b.send_json({**frame, "client_id": "x-1"})
            error = await b.wait_reply("x-1")
            # The connection still works: a good send after the refusal is acked.
            await b.send_and_ack("still here", f"ok-{secrets.token_hex(2)}")
            return error, before

    error, before = run(main())
    assert (error["type"], error["code"]) == ("error", code)
    log = history(server, slug)
    assert len(log) == before + 1  # only the good send
    assert log[0]["body"] == "alice's" and log[0]["edited_at"] is None


def test_a_reply_to_another_room_and_writes_in_an_archived_room_are_refused(world):
    server = world.server
    alice = world.accounts["alice"]

    async def main():
        async with PollClient(server, room("other"), alice) as other:
            theirs = await other.send_ok("over there")
        async with PollClient(server, room("ws"), alice) as here:
            # Seq `theirs` is a message of the other room; in this room it is some other
            # event or none: either way no message of this room with that text.
            crossed = await here.post(payload={"body": "x", "reply_to": theirs + 1_000})
        async with PollClient(server, room("attic"), alice) as attic:
            archived = await attic.post(
                payload={"type": "react", "target": 1, "emoji": "👍", "op": "add"}
            )
        return crossed, archived

    crossed, archived = run(main())
    assert (crossed.status_code, crossed.json()["error"]["code"]) == (400, "bad_request")
    assert (archived.status_code, archived.json()["error"]["code"]) == (403, "forbidden")
