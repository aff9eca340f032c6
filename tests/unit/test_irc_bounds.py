"""The IRC gateway is bounded and hostile-proof: long lines (417), invalid UTF-8, NULs,
floods, unknown commands (421), a client that never reads, one that never registers,
a dead peer: each answered with a numeric or a disconnect, never a traceback."""

from __future__ import annotations

import pytest
from conftest import FlowTransport
from irc_harness import Client, codes, gateway

from chat.irc import protocol


@pytest.fixture
def irc(clock, hub, store):
    factory, _directory = gateway(clock, hub, store)
    return factory


def registered(irc) -> Client:
    client = Client(irc)
    client.login()
    return client


def test_a_line_over_512_bytes_is_417_and_dropped(irc, store):
    client = registered(irc)
    client.send("JOIN #lobby")
    client.lines()
    client.send("PRIVMSG #lobby :" + "x" * 500)
    assert codes(client.lines()) == ["417"]
    assert store.appended == []
    client.send("PING :still-here")  # the link goes on
    assert codes(client.lines()) == ["PONG"]


def test_tags_may_take_8191_bytes_more_but_not_beyond(irc):
    client = registered(irc)
    client.send("@+x=" + "a" * 8000 + " PING :ok")
    assert codes(client.lines()) == ["PONG"]
    client.send("@+x=" + "a" * 8200 + " PING :no")
    assert codes(client.lines()) == ["417"]


def test_an_endless_line_is_thrown_away_without_being_buffered(irc):
    client = registered(irc)
    for _ in range(20):
        client.protocol.dataReceived(b"x" * 4096)
    assert len(client.protocol._buffer) <= 8191 + 512
    assert codes(client.lines()) == ["417"]  # once
    client.send(" the end of it", "PING :after")
    assert codes(client.lines()) == ["PONG"]


def test_invalid_utf8_is_a_notice_and_the_line_dropped(irc, store):
    client = registered(irc)
    client.send("JOIN #lobby")
    client.lines()
    client.send(b"PRIVMSG #lobby :\xff\xfe bad")
    lines = client.lines()
    assert codes(lines) == ["NOTICE"] and "UTF-8" in lines[0]
    client.send("PRIVMSG #lobby :a\x00b")
    assert "NUL" in client.lines()[0]
    assert store.appended == []


def test_unknown_commands_are_421_and_junk_is_ignored(irc):
    client = registered(irc)
    client.send("FROBNICATE now", ":only-a-prefix", "@tag", "   ", "PING")
    assert codes(client.lines()) == ["421", "PONG"]


def test_missing_parameters_are_461(irc):
    client = registered(irc)
    client.send("JOIN", "PART", "PRIVMSG", "PRIVMSG #lobby")
    assert codes(client.lines()) == ["461", "461", "411", "412"]


def test_a_flood_is_noticed_then_disconnected(irc, clock):
    client = registered(irc)
    for n in range(protocol.FLOOD_BURST.__int__()):
        client.send(f"PING :{n}")
    assert not client.closed
    client.send("PING :over")
    lines = client.lines()
    assert "Flood" in lines[-1]
    for n in range(protocol.FLOOD_DROPS_BEFORE_CUT):
        client.send(f"PING :more{n}")
    assert "ERROR :Closing link: Excess Flood" in client.lines()
    assert client.closed


def test_a_paced_client_is_never_a_flood(irc, clock):
    client = registered(irc)
    for n in range(200):
        clock.advance(0.2)
        client.send(f"PING :{n}")
    assert not client.closed


def test_a_client_that_never_reads_is_cut_past_one_mebibyte(irc, hub, store):
    client = Client.__new__(Client)
    client.protocol = irc.buildProtocol(None)
    client.transport = FlowTransport()
    client.protocol.makeConnection(client.transport)
    client._read = 0
    client.login()
    client.send("JOIN #lobby")
    client.transport.stall()
    for seq in range(1, 3000):
        hub.publish(
            {"type": "message", "room": "lobby", "seq": seq, "user": "bob", "body": "y" * 390}
        )
        if client.protocol.closed:
            break
    assert client.protocol.closed
    assert client.transport.disconnecting or not client.transport.connected
    assert len(hub.rooms["lobby"].subscribers) == 0


def test_unregistered_after_30_s_is_disconnected(irc, clock):
    client = Client(irc)
    client.send("NICK alice")
    clock.advance(protocol.REGISTRATION_TIMEOUT + 1)
    assert "ERROR :Closing link: registration timed out" in client.lines()
    assert client.closed


def test_a_quiet_client_is_pinged_and_a_dead_one_closed(irc, clock):
    irc.startFactory()
    client = registered(irc)
    client.lines()
    clock.advance(protocol.PING_AFTER + 16)
    assert client.lines() == ["PING parley"]
    client.send("PONG parley")
    clock.advance(protocol.PING_AFTER)
    assert not client.closed
    clock.advance(protocol.DEAD_AFTER)
    assert "ERROR :Closing link: ping timeout" in client.lines()
    irc.stopFactory()


def test_a_failing_command_is_a_notice_not_a_traceback(irc, monkeypatch):
    client = registered(irc)

    def broken(prefix, params):
        raise RuntimeError("bug")

    monkeypatch.setattr(client.protocol, "irc_LIST", broken)
    client.send("LIST", "PING :alive")
    lines = client.lines()
    assert codes(lines) == ["NOTICE", "PONG"]
    assert "Traceback" not in " ".join(lines)
