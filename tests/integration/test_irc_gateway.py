"""The IRC gateway end to end (PROTOCOL.md "IRC gateway"): a real ``serve.py
--irc-port``, an IRC client of the ``irc`` library from PyPI, a WebSocket client of the
browser's protocol: one room, the same history and order on both; a message each way; a
direct message each way; logins with a token and with SASL PLAIN; refusals."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import httpx
import pytest
from irc_testing import IRCTestClient, free_port, tags
from live_clients import WSClient, history, provision, run
from parley_testing import ServerProcess
from token_testing import make_tokens

PASSWORD = "pw-irc-gateway-5521"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    irc_port = free_port()
    server = ServerProcess(
        tmp_path_factory.mktemp("irc"),
        env={"CHAT_RATE_LIMIT": "0"},
        args=["--irc-port", str(irc_port)],
    ).start()
    try:
        accounts = provision(
            server,
            users=[("irene", PASSWORD), ("wendy", PASSWORD), ("molly", PASSWORD, True)],
            rooms=[
                {"slug": "irc-lobby"},
                {"slug": "irc-private", "public": False, "members": ["wendy"]},
                {"slug": "irc-moderated"},
            ],
        )
        secrets = make_tokens(server, ("irc", "irene"))
        yield SimpleNamespace(
            server=server, irc_port=irc_port, accounts=accounts, token=secrets["irc"]
        )
    finally:
        server.stop()


@pytest.fixture
def irene(world):
    client = IRCTestClient().connect(world.irc_port, "irene", password=world.token)
    client.wait_type("welcome")
    client.send("CAP REQ :server-time message-tags batch")
    client.wait(lambda e: e.type == "cap" and "ACK" in e.arguments, "CAP ACK")
    yield client
    client.close()


def messages(events, channel: str) -> list[tuple[str, str]]:
    return [
        (e.source.nick, e.arguments[0])
        for e in events
        if e.type == "pubmsg" and e.target == channel
    ]


def test_irc_and_web_users_chat_in_one_room_with_one_history(world, irene):
    wendy = world.accounts["wendy"]

    async def scenario():
        ws = await WSClient.connect(world.server, "irc-lobby", wendy)
        try:
            await ws.send_and_ack("said before irene came", "w-1")
            start = irene.mark()
            irene.send("JOIN #irc-lobby")
            await asyncio.to_thread(irene.wait_type, "endofnames", start)
            batch = await asyncio.to_thread(irene.wait_type, "batch", start)
            assert "chathistory" in batch.arguments
            old = await asyncio.to_thread(
                irene.wait,
                lambda e: e.type == "pubmsg" and "before" in e.arguments[0],
                "the history",
                start,
            )
            assert old.source.nick == "wendy"
            assert tags(old)["time"].endswith("Z") and tags(old)["msgid"] == "irc-lobby:1"

            # A message from the web arrives on IRC...
            mark = irene.mark()
            seq = await ws.send_and_ack("hello irene, from the browser", "w-2")
            live = await asyncio.to_thread(
                irene.wait,
                lambda e: e.type == "pubmsg" and "browser" in e.arguments[0],
                "the web's message",
                mark,
            )
            assert live.source.nick == "wendy" and tags(live)["msgid"] == f"irc-lobby:{seq}"

            # ...and one from IRC arrives in the browser, as an ordinary durable event.
            irene.connection.privmsg("#irc-lobby", "hello wendy, from irssi's cousin")
            event = await ws.wait_for(
                lambda f: f.get("type") == "message" and f.get("user") == "irene",
                15,
                what="irene's message",
            )
            assert event["body"] == "hello wendy, from irssi's cousin"
            assert event["seq"] == seq + 1
            return [(f["user"], f["body"]) for f in ws.durable() if f["type"] == "message"]
        finally:
            await ws.conn.close()

    web = run(scenario())
    # The same log in the same order on both sides.
    log = [
        (e["user"], e["body"])
        for e in history(world.server, "irc-lobby")
        if e["type"] == "message"
    ]
    assert log == [
        ("wendy", "said before irene came"),
        ("wendy", "hello irene, from the browser"),
        ("irene", "hello wendy, from irssi's cousin"),
    ]
    assert web == log
    assert messages(irene.events, "#irc-lobby") == log[:2]  # no echo-message asked for


def test_a_direct_message_each_way(world, irene):
    wendy = world.accounts["wendy"]
    irene.send("PRIVMSG wendy :psst, a direct one")
    with httpx.Client(base_url=world.server.url, trust_env=False, timeout=15) as http:
        headers = {"Cookie": wendy.cookie_header, "X-CSRFToken": wendy.csrftoken}
        response = http.post("/api/dms/", json={"user": "irene"}, headers=headers)
        assert response.status_code in (200, 201), response.text
        slug = response.json()["slug"]

    async def web_reply():
        ws = await WSClient.connect(world.server, slug, wendy, since=0)
        try:
            got = await ws.wait_for(
                lambda f: f.get("type") == "message" and f.get("user") == "irene",
                15,
                what="irene's direct message",
            )
            await ws.send_and_ack("hi irene, privately", "w-dm-1")
            return got
        finally:
            await ws.conn.close()

    got = run(web_reply())
    assert got["body"] == "psst, a direct one"
    reply = irene.wait(
        lambda e: e.type == "privmsg" and "privately" in e.arguments[0], "the direct reply"
    )
    assert reply.source.nick == "wendy" and reply.target == "irene"


def test_a_dm_someone_opens_reaches_the_irc_user_at_once(world, irene):
    """irene is on IRC before the room exists: molly opens it on the web and writes; the
    membership change makes irene's connection follow it at once (not at its 30 s
    refresh), from its first seq, and the message arrives as a PRIVMSG from molly."""
    molly = world.accounts["molly"]
    with httpx.Client(base_url=world.server.url, trust_env=False, timeout=15) as http:
        headers = {"Cookie": molly.cookie_header, "X-CSRFToken": molly.csrftoken}
        response = http.post("/api/dms/", json={"user": "irene"}, headers=headers)
        assert response.status_code == 201, response.text
        slug = response.json()["slug"]

    async def write():
        # At once, before irene's connection may have found the room: it replays a room
        # it finds after its login from the start, so the first message is not lost.
        ws = await WSClient.connect(world.server, slug, molly)
        try:
            await ws.send_and_ack("hello irene, a new conversation", "m-dm-1")
        finally:
            await ws.conn.close()

    run(write())
    got = irene.wait(
        lambda e: e.type == "privmsg" and "new conversation" in e.arguments[0],
        "molly's first direct message",
        timeout=5,
    )
    assert got.source.nick == "molly" and got.target == "irene"


def test_refusals_are_numerics(world, irene):
    start = irene.mark()
    irene.send("JOIN #irc-private")
    irene.wait(lambda e: e.type == "inviteonlychan", "473", start)
    irene.send("JOIN #no-such-room")
    irene.wait(lambda e: e.type == "nosuchchannel", "403", start)
    irene.send("FROBNICATE")
    irene.wait(lambda e: e.type == "unknowncommand", "421", start)
    irene.send("PRIVMSG #irc-private :not joined")
    irene.wait(lambda e: e.type == "cannotsendtochan", "404", start)


def test_sasl_plain_with_the_password(world):
    client = IRCTestClient().connect(world.irc_port, "wendy", password=PASSWORD, sasl=True)
    try:
        client.wait(lambda e: e.type == "903" or e.type == "saslsuccess", "SASL success")
        client.wait_type("welcome")
        client.send("JOIN #irc-private")  # wendy is a member
        client.wait_type("endofnames")
    finally:
        client.close()


def test_a_bad_token_is_refused(world):
    client = IRCTestClient().connect(world.irc_port, "irene", password="prl_" + "x" * 43)
    try:
        client.wait(lambda e: e.type == "passwdmismatch", "464")
        client.wait(lambda e: e.type in ("error", "disconnect"), "the end of the link")
    finally:
        client.close()


def test_the_port_is_announced(world):
    assert f"irc://127.0.0.1:{world.irc_port}/" in world.server.log()


def moderate(world, slug: str, action: dict) -> None:
    molly = world.accounts["molly"]  # staff: a moderator everywhere
    with httpx.Client(base_url=world.server.url, trust_env=False, timeout=15) as http:
        headers = {"Cookie": molly.cookie_header, "X-CSRFToken": molly.csrftoken}
        response = http.post(f"/api/rooms/{slug}/moderation/", json=action, headers=headers)
        assert response.status_code == 200, response.text


def test_moderation_reaches_the_irc_user(world, irene):
    start = irene.mark()
    irene.send("JOIN #irc-moderated")
    irene.wait_type("endofnames", start)
    moderate(world, "irc-moderated", {"action": "mute", "user": "irene", "minutes": 5})
    irene.connection.privmsg("#irc-moderated", "can I still talk?")
    refused = irene.wait(lambda e: e.type == "cannotsendtochan", "404 for a muted user", start)
    assert "forbidden" in refused.arguments[-1]
    moderate(world, "irc-moderated", {"action": "kick", "user": "irene"})
    kick = irene.wait(lambda e: e.type == "kick", "the KICK", start, timeout=5)
    assert kick.target == "#irc-moderated" and kick.arguments[0] == "irene"
    log = history(world.server, "irc-moderated")
    assert not [e for e in log if e["type"] == "message"]  # the muted send stored nothing
