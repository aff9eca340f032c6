"""Fuzz target of the IRC gateway: lines into a real IRCConnection (tests/unit's
irc_harness, over a real RoomHub on a fake clock), signed in or not, beside a reader
with the longest username Django allows, and a web user's message of any text.

A finding is a line the gateway writes that is not one IRC line of at most 512 bytes
(without its tags), a NUL or a CR/LF inside one, or a command that failed on the server.
"""

from __future__ import annotations

from fuzz_live import new_live, no_failures
from fuzz_registry import target
from hypothesis import strategies as st

from chat.live.records import UserInfo

# --- IRC lines -------------------------------------------------------------------------

IRC_COMMANDS = [
    "CAP",
    "PASS",
    "NICK",
    "USER",
    "AUTHENTICATE",
    "JOIN",
    "PART",
    "PRIVMSG",
    "NOTICE",
    "TAGMSG",
    "NAMES",
    "WHO",
    "TOPIC",
    "LIST",
    "MODE",
    "USERHOST",
    "PING",
    "PONG",
    "QUIT",
    "privmsg",
    "001",
    "X",
]
irc_params = st.lists(
    st.sampled_from(
        [
            "#lobby",
            "#attic",
            "#nope",
            "alice",
            "bob",
            "*",
            ":",
            ":hi there",
            "LS",
            ":" + "é" * 95,
            ":a\x01b\x02",
            "u" * 150,
            "302",
            "REQ",
            ":message-tags echo-message",
            "END",
            "PLAIN",
            "+",
            "0",
            "#lobby,#attic",
            "",
            "prl_alice",
            ":\x01ACTION waves\x01",
        ]
    )
    | st.text(st.characters(exclude_categories=("Cs",)), max_size=12),
    max_size=4,
)
irc_tags = st.sampled_from(
    ["", "@label=x ", "@+parley/client-id=c1 ", "@a=\\ ", "@;;= ", "@" + "k=v;" * 300 + " "]
)


LONG = UserInfo(3, "u" * 150)


def _as_sent(store) -> None:
    """The fake store's events say "alice m<seq>"; these say who sent what, as the log."""
    append = store.append

    def append_as_sent(request):
        def fill(result):
            if result.event is not None:
                result.event.update(
                    user=request.username, body=request.body, client_id=request.client_id
                )
            return result

        return append(request).addCallback(fill)

    store.append = append_as_sent


@st.composite
def irc_lines(draw) -> bytes:
    if draw(st.integers(0, 7)) == 0:
        return draw(st.binary(max_size=60))
    prefix = draw(st.sampled_from(["", ":alice ", ":x!y@z "]))
    line = (
        draw(irc_tags)
        + prefix
        + " ".join([draw(st.sampled_from(IRC_COMMANDS)), *draw(irc_params)])
    )
    data = line.encode()
    if draw(st.integers(0, 9)) == 0:
        data += b"x" * draw(st.sampled_from([400, 600, 9000]))
    return data + draw(st.sampled_from([b"\r\n", b"\n", b"\r\n", b"\r"]))


web_bodies = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=300)


@target(
    "irc_lines",
    st.tuples(st.booleans(), st.lists(irc_lines(), min_size=1, max_size=10), web_bodies),
    examples=(
        (True, [b"USERHOST #lobby" + b"x" * 460 + b"\r\n"], "x"),
        (True, [b"JOIN #lobby\r\n"], "\xe9" * 300),
    ),
    ci_examples=200,
)
def check_irc(value: tuple[bool, list[bytes], str]) -> None:
    """Whatever lines a client sends (signed in or not), every line the gateway writes is
    one well-formed IRC line, and no command fails on the server."""
    from irc_harness import Client, gateway

    login, lines, body = value
    _live, clock, store, hub = new_live()
    _as_sent(store)
    factory, directory = gateway(clock, hub, store)
    # A reader with the longest username Django allows: its mask takes 300 of the 512.
    directory.tokens["prl_long"] = directory.users[LONG.username] = LONG
    with no_failures():
        client = Client(factory)
        reader = Client(factory)
        reader.login(token="prl_long", nick=LONG.username, caps="message-tags server-time")
        reader.send("JOIN #lobby")
        if login:
            client.login(caps="message-tags echo-message labeled-response batch server-time")
        for data in lines:
            client.protocol.dataReceived(data)
            clock.advance(0.5)
        # What was sent comes back as the bus would bring it, and a web user's message.
        for event in [*store.log["lobby"], *store.log["attic"]]:
            hub.publish(event)
        seq = len(store.log["lobby"]) + 1
        hub.publish(
            {
                "type": "message",
                "room": "lobby",
                "seq": seq,
                "user": LONG.username,
                "body": body,
                "ts": "2026-12-02T19:00:00+00:00",
            }
        )
        clock.advance(5)
        heard = reader.transport.value()
        assert f":{LONG.username}!".encode() in heard  # the web message reached IRC
        written = client.transport.value() + heard
        client.protocol.connectionLost(None)
        reader.protocol.connectionLost(None)
    assert written.endswith(b"\r\n") or not written
    for line in written.split(b"\r\n")[:-1]:
        assert b"\r" not in line and b"\n" not in line and b"\x00" not in line, line
        text = line.decode("utf-8")
        if text.startswith("@"):
            text = text.partition(" ")[2]
        assert len(text.encode()) + 2 <= 512, line
        assert b"failed on the server" not in line, line
