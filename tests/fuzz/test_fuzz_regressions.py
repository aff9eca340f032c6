"""The fuzzers' findings, each kept as an explicit test (tests/fuzz/fuzz_*.py keep them as
``examples`` of their targets too).

"""

from __future__ import annotations

import json

from fuzz_live import harness, new_live
from irc_harness import Client, gateway
from wsproto.events import Ping, TextMessage

from chat.irc.tags import MAX_LINE, format_line, split_text, text_limit


def _closed_by_the_server():
    """A WebSocket whose server has sent its close (1009, a message over the limit) while
    the client, which has not read it yet, goes on sending."""
    live, clock, _store, _hub = new_live()
    peer = harness().WSPeer(live).open("lobby", session="sk")
    clock.advance(0)
    peer.send(TextMessage(json.dumps({"type": "send", "body": "x" * 70_000})))
    return peer, clock


def test_a_ping_after_the_servers_close_is_dropped():
    peer, clock = _closed_by_the_server()
    peer.send(Ping(b"late"))  # Twisted answers a pong that wsproto refuses to send
    clock.advance(1)
    assert peer.close_code == 1009


def test_garbage_after_the_servers_close_ends_the_connection():
    peer, clock = _closed_by_the_server()
    # An unmasked frame: wsproto reports a protocol error as a CloseConnection (1002),
    # which Twisted tries to answer in a state where no frame may be sent.
    peer.channel.dataReceived(b"\x81\x01x")
    clock.advance(1)
    assert peer.close_code == 1009


# --- IRC: replies over 512 bytes (chat/irc/tags.py, channels.py) ------------------------


def _lines_fit(written: bytes) -> None:
    for line in written.split(b"\r\n")[:-1]:
        if line.startswith(b"@"):
            line = line.partition(b" ")[2]
        assert len(line) + 2 <= MAX_LINE, line


def test_userhost_of_long_nicks_is_one_line_of_at_most_512_bytes():
    # Found by irc_lines: USERHOST echoes each nick twice, so a 480-byte request line
    # made a 302 reply of ~1000 bytes.
    _live, clock, store, hub = new_live()
    factory, _directory = gateway(clock, hub, store)
    client = Client(factory)
    client.login()
    client.send("USERHOST #lobby" + "x" * 460)
    client.send("USERHOST " + " ".join(["é" * 45] * 5))
    clock.advance(1)
    written = client.transport.value()
    assert b" 302 " in written
    _lines_fit(written)


def test_a_long_author_and_channel_leave_the_text_whole_in_lines_that_fit():
    author, channel = "u" * 150, "#" + "s" * 50
    prefix = f"{author}!{author}@parley"
    text = "é" * 399 + "x" * 401
    limit = text_limit("PRIVMSG", channel, prefix)
    lines = split_text(text, limit)
    assert "".join(lines) == text
    for line in lines:
        wire = format_line("PRIVMSG", [channel, line], prefix, {"time": "2026-01-01T00:00Z"})
        _lines_fit(wire)
        assert wire.endswith(b"\r\n") and wire.count(b"\r\n") == 1


def test_any_reply_is_cut_to_512_bytes_at_a_character_boundary():
    wire = format_line("403", ["alice", "#" + "é" * 600, "No such channel"], "parley", None)
    assert len(wire) <= MAX_LINE and wire.endswith(b"\r\n")
    wire.decode("utf-8")


def test_a_close_with_no_status_code_is_echoed_by_an_empty_close():
    """Found by the hour's run of ``websocket_messages``: not a server bug but the
    oracle's. RFC 6455 5.5.1 lets a close frame carry no code; the server's answer to one
    is an empty close too (never the code 1005 on the wire, which no frame may carry)."""
    live, clock, _store, _hub = new_live()
    peer = harness().WSPeer(live).open("lobby", session="sk")
    clock.advance(0)
    peer.channel.dataReceived(b"\x88\x80" + b"\x00" * 4)  # masked, no payload
    clock.advance(1)
    assert peer.transport.value().endswith(b"\x88\x00")
    assert peer.transport.disconnecting


def test_a_frame_whose_type_is_a_list_is_answered_as_malformed():
    live, clock, _store, _hub = new_live()
    peer = harness().WSPeer(live).open("lobby", session="sk")
    clock.advance(0)
    peer.send(TextMessage('{"type": []}'))  # `kind in WRITES` on a list: TypeError
    clock.advance(1)
    (error,) = peer.of_type("error")
    assert error["code"] == "bad_request"


def test_a_username_of_150_characters_registers_on_irc():
    # Found by irc_lines: NICK was cut to 64 characters while the nick must be the
    # username (NICKLEN=150): a longer username could never register.
    from fuzz_irc import LONG

    _live, clock, store, hub = new_live()
    factory, directory = gateway(clock, hub, store)
    directory.tokens["prl_long"] = LONG
    client = Client(factory)
    client.login(token="prl_long", nick=LONG.username)
    assert client.protocol.registered and client.protocol.nick == LONG.username


def test_names_of_long_usernames_are_packed_into_lines_that_fit():
    # Forty names a line was ~6,000 bytes for usernames of 150 characters.
    from chat.irc.channels import RoomFeed

    _live, clock, store, hub = new_live()
    factory, _directory = gateway(clock, hub, store)
    client = Client(factory)
    client.login()
    names = [f"{i:03d}" + "u" * 147 for i in range(45)]
    feed = RoomFeed.__new__(RoomFeed)
    feed.channel, feed.names = "#lobby", lambda: names
    client.lines()
    client.protocol.names(feed)
    written = client.transport.value()
    _lines_fit(written)
    listed = [
        name
        for line in client.all()
        if " 353 " in line
        for name in line.split(" :", 1)[1].split(" ")
    ]
    assert listed == names
