"""The IRC gateway's protocol on StringTransport against a real hub: registration (PASS
+ NICK, SASL PLAIN, CAP LS 302 / REQ / END), JOIN's permissions and history batch,
PRIVMSG both ways, direct messages, kicks."""

from __future__ import annotations

import base64

import pytest
from irc_harness import ALICE, BOB, Client, codes, gateway
from twisted.internet import defer

from chat.live.events import OutboundEvent


@pytest.fixture
def irc(clock, hub, store, monkeypatch):
    store.log["attic"] = []
    append = store.append

    def append_as_sent(request):
        # The fake store's events say "alice m<seq>"; these say what was sent, as the log.
        d = append(request)

        def fill(result):
            if result.event is not None:
                result.event.update(
                    user=request.username, body=request.body, client_id=request.client_id
                )
            return result

        return d.addCallback(fill)

    monkeypatch.setattr(store, "append", append_as_sent)
    factory, directory = gateway(clock, hub, store)
    factory.directory_ = directory
    return factory


def test_pass_and_nick_register_with_the_welcome_numerics(irc):
    client = Client(irc)
    lines = client.login()
    assert codes(lines)[:5] == ["001", "002", "003", "004", "005"]
    assert "422" in codes(lines)
    assert client.protocol.user == ALICE


def test_a_bad_token_is_464_and_the_end(irc):
    client = Client(irc)
    lines = client.login(token="prl_nobody")
    assert "464" in codes(lines)
    assert "ERROR" in codes(lines)
    assert client.closed


def test_no_credentials_at_all_is_464(irc):
    client = Client(irc)
    client.send("NICK alice", "USER alice 0 * :Alice")
    assert "464" in codes(client.lines())
    assert client.closed


def test_another_nick_is_432_and_registration_waits_for_the_username(irc):
    client = Client(irc)
    lines = client.login(nick="ally")
    assert codes(lines) == ["432"]
    assert "Your nick is your username: alice" in lines[0]
    assert not client.protocol.registered and not client.closed
    client.send("NICK alice")
    assert codes(client.lines())[:1] == ["001"]
    client.send("NICK someone")
    assert codes(client.lines()) == ["432"]


def test_commands_before_registration_are_451(irc):
    client = Client(irc)
    client.send("JOIN #lobby")
    assert codes(client.lines()) == ["451"]


def test_cap_ls_302_offers_the_capabilities_and_holds_registration(irc):
    client = Client(irc)
    client.send("CAP LS 302", "PASS prl_alice", "NICK alice", "USER alice 0 * :A")
    lines = client.lines()
    assert lines[0] == (":parley CAP * LS :server-time message-tags echo-message batch sasl=PLAIN")
    assert "001" not in codes(lines)  # not before CAP END
    client.send("CAP REQ :server-time batch", "CAP REQ :server-time bogus", "CAP END")
    lines = client.lines()
    assert lines[0] == ":parley CAP alice ACK :server-time batch"
    assert lines[1] == ":parley CAP alice NAK :server-time bogus"
    assert "001" in codes(lines)
    assert client.protocol.caps == {"server-time", "batch"}


def _plain(user: str, password: str) -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def test_sasl_plain_logs_in_with_username_and_password(irc):
    client = Client(irc)
    client.send("CAP LS 302", "NICK bob", "USER bob 0 * :Bob", "CAP REQ :sasl")
    client.send("AUTHENTICATE PLAIN")
    assert client.lines()[-1] == "AUTHENTICATE +"
    client.send(f"AUTHENTICATE {_plain('bob', 'pw-bob')}")
    lines = client.lines()
    assert codes(lines) == ["900", "903"]
    client.send("CAP END")
    assert "001" in codes(client.lines())
    assert client.protocol.user == BOB


def test_sasl_with_a_wrong_password_is_904_and_three_end_the_link(irc):
    client = Client(irc)
    client.send("CAP LS 302", "CAP REQ :sasl")
    for _ in range(3):
        client.send("AUTHENTICATE PLAIN", f"AUTHENTICATE {_plain('bob', 'nope')}")
    lines = client.lines()
    assert codes(lines).count("904") == 3
    assert client.closed


def test_sasl_garbage_is_904_not_a_traceback(irc):
    client = Client(irc)
    client.send("CAP LS 302", "CAP REQ :sasl", "AUTHENTICATE PLAIN", "AUTHENTICATE !!!notb64")
    assert "904" in codes(client.lines())


def test_join_answers_topic_history_batch_and_names(irc, store, clock):
    irc.directory_.history["lobby"] = [
        {
            "type": "message",
            "room": "lobby",
            "seq": 1,
            "user": "bob",
            "body": "old one",
            "ts": "2026-11-21T22:00:00.123456+00:00",
            "client_id": None,
        },
    ]
    store.commit(1)
    client = Client(irc)
    client.login(caps="server-time message-tags batch")
    client.send("JOIN #lobby")
    lines = client.lines()
    assert lines[0] == ":alice!alice@parley JOIN #lobby"
    assert lines[1] == ":parley 332 alice #lobby :The lobby"
    assert lines[2].startswith(":parley BATCH +h1 chathistory #lobby")
    assert lines[3] == (
        "@time=2026-11-21T22:00:00.123Z;msgid=lobby:1;batch=h1 "
        ":bob!bob@parley PRIVMSG #lobby :old one"
    )
    assert lines[4] == ":parley BATCH -h1"
    assert lines[5] == ":parley 353 alice = #lobby :alice"
    assert lines[6] == ":parley 366 alice #lobby :End of /NAMES list"


@pytest.mark.parametrize(
    ("setup", "numeric"),
    [
        (lambda d: None, "403"),
        (lambda d: d.private.setdefault("attic", {2}), "473"),
        (lambda d: d.banned.add(("attic", 1)), "474"),
    ],
)
def test_join_refusals(irc, setup, numeric):
    slug = "nowhere" if numeric == "403" else "attic"
    setup(irc.directory_)
    client = Client(irc)
    client.login()
    client.send(f"JOIN #{slug}")
    assert codes(client.lines()) == [numeric]
    assert f"#{slug}" not in client.protocol.feeds


def test_privmsg_is_a_hub_send_and_web_messages_arrive(irc, store, hub):
    client = Client(irc)
    client.login(caps="message-tags")
    client.send("JOIN #lobby")
    client.lines()
    client.send("@label=L1 PRIVMSG #lobby :hello from irc")
    request = store.appended[-1]
    assert (request.room, request.user_id, request.body) == ("lobby", 1, "hello from irc")
    assert request.client_id.startswith("irc-")
    # Its own event comes back but is not echoed (no echo-message)...
    assert codes(client.lines()) == []
    # ...and a message from the web arrives, with its msgid.
    event = {
        "type": "message",
        "room": "lobby",
        "seq": 2,
        "user": "bob",
        "body": "hi\nthere",
        "ts": "2026-11-21T22:00:01+00:00",
    }
    hub.publish(event)
    assert client.lines() == [
        "@msgid=lobby:2 :bob!bob@parley PRIVMSG #lobby :hi",
        "@msgid=lobby:2 :bob!bob@parley PRIVMSG #lobby :there",
    ]


def test_echo_message_echoes_own_sends_with_their_label(irc, store):
    client = Client(irc)
    client.login(caps="echo-message message-tags")
    client.send("JOIN #lobby")
    client.lines()
    client.send("@label=abc PRIVMSG #lobby :mine")
    (line,) = client.lines()
    assert line.startswith("@msgid=lobby:1;label=abc :alice!alice@parley PRIVMSG #lobby :")


def test_a_client_id_tag_makes_the_send_idempotent(irc, store):
    client = Client(irc)
    client.login()
    client.send("JOIN #lobby")
    client.send(
        "@+parley/client-id=c-1 PRIVMSG #lobby :once",
        "@+parley/client-id=c-1 PRIVMSG #lobby :once",
    )
    assert [r.client_id for r in store.appended] == ["c-1"]  # the resend: RecentAcks
    assert len(store.log["lobby"]) == 1


def test_me_action_is_sent_as_underscores(irc, store):
    client = Client(irc)
    client.login()
    client.send("JOIN #lobby", "PRIVMSG #lobby :\x01ACTION waves\x01")
    assert store.appended[-1].body == "_waves_"


def test_send_refusals_are_numerics_never_silence(irc, store):
    client = Client(irc)
    client.login()
    client.send("PRIVMSG #lobby :not joined")
    assert codes(client.lines()) == ["404"]
    client.send("JOIN #lobby")
    client.lines()
    for n in range(4):  # the hub's test limit is 3 sends a 10 s
        client.send(f"PRIVMSG #lobby :m{n}")
    lines = client.lines()
    assert codes(lines) == ["404"] and "rate_limited" in lines[0]
    client.send("PRIVMSG #lobby :" + "x" * 101)  # over the test hub's 100 characters
    assert codes(client.lines()) == ["404"]


def test_edits_deletions_and_presence_from_the_web(irc, hub, store):
    client = Client(irc)
    client.login()
    client.send("JOIN #lobby")
    client.lines()
    hub.publish(
        {"type": "edited", "room": "lobby", "seq": 1, "target": 1, "user": "bob", "body": "fixed"}
    )
    hub.publish({"type": "deleted", "room": "lobby", "seq": 2, "target": 1, "user": "bob"})
    assert client.lines() == [
        ":bob!bob@parley NOTICE #lobby :edited message 1: fixed",
        ":bob!bob@parley NOTICE #lobby :deleted message 1",
    ]
    feed = client.protocol.feeds["#lobby"]
    feed.deliver(OutboundEvent({"type": "presence", "room": "lobby", "users": ["alice", "bob"]}))
    feed.deliver(OutboundEvent({"type": "presence", "room": "lobby", "users": ["alice"]}))
    assert client.lines() == [":bob!bob@parley JOIN #lobby", ":bob!bob@parley PART #lobby :left"]


def test_privmsg_to_a_nick_is_a_direct_message_both_ways(irc, store, hub):
    client = Client(irc)
    client.login()
    client.send("PRIVMSG bob :psst")
    request = store.appended[-1]
    assert (request.room, request.body) == ("dm-1-2", "psst")
    hub.publish({"type": "message", "room": "dm-1-2", "seq": 2, "user": "bob", "body": "yes?"})
    assert client.lines()[-1] == ":bob!bob@parley PRIVMSG alice :yes?"
    client.send("PRIVMSG nobody :hello?")
    assert codes(client.lines()) == ["401"]


def test_a_kick_ends_the_channel_with_a_kick_line(irc, hub):
    client = Client(irc)
    client.login()
    client.send("JOIN #lobby")
    client.lines()
    room = hub.rooms["lobby"]
    assert room.revoke(lambda user, key: user is not None and user.id == 1) == 1
    assert client.lines() == [":parley KICK #lobby alice :You may no longer read this room"]
    assert "#lobby" not in client.protocol.feeds
    assert not client.closed


def test_part_list_names_who_topic(irc):
    client = Client(irc)
    client.login()
    client.send("JOIN #lobby")
    client.lines()
    client.send("NAMES #lobby", "WHO #lobby", "TOPIC #lobby", "LIST")
    assert codes(client.lines()) == ["353", "366", "352", "315", "332", "321", "322", "322", "323"]
    client.send("PART #lobby", "PART #lobby")
    assert codes(client.lines()) == ["PART", "442"]


def test_quit_and_connection_loss_unsubscribe(irc, hub):
    client = Client(irc)
    client.login()
    client.send("JOIN #lobby")
    room = hub.rooms["lobby"]
    assert len(room.subscribers) == 1
    client.send("QUIT :bye")
    assert "ERROR" in codes(client.lines())
    assert len(room.subscribers) == 0


def test_the_per_user_cap_counts_irc_connections(irc):
    clients = [Client(irc) for _ in range(4)]
    for client in clients:
        client.login()
    assert [c.closed for c in clients] == [False, False, False, True]


def test_a_revoked_token_ends_the_whole_link(irc, hub):
    client = Client(irc)
    client.login()
    client.send("JOIN #lobby")
    client.lines()
    del irc.directory_.tokens["prl_alice"]
    hub.rooms["lobby"].revoke(lambda user, key: key == "token:prl_alice")
    lines = client.lines()
    assert codes(lines) == ["KICK", "ERROR"]
    assert "revoked" in lines[-1]
    assert client.closed


def test_commands_pipelined_behind_the_login_are_kept_for_after_it(irc):
    pending = defer.Deferred()
    real = irc.directory_.token_login
    irc.directory_.token_login = lambda secret: pending
    client = Client(irc)
    # One write, as a script sends it: the JOIN arrives while the token is checked.
    client.protocol.dataReceived(
        b"PASS prl_alice\r\nNICK alice\r\nUSER a 0 * :a\r\nJOIN #lobby\r\n"
    )
    assert client.lines() == []
    real("prl_alice").chainDeferred(pending)
    lines = client.lines()
    assert "001" in codes(lines) and "451" not in codes(lines)
    assert ":alice!alice@parley JOIN #lobby" in lines


def test_clients_with_other_capabilities_get_their_own_lines_of_one_event(irc, hub):
    plain, tagged = Client(irc), Client(irc)
    plain.login()
    tagged.login(caps="message-tags")
    for client in (plain, tagged):
        client.send("JOIN #lobby")
        client.lines()
    hub.publish({"type": "message", "room": "lobby", "seq": 1, "user": "bob", "body": "x"})
    hub.publish({"type": "message", "room": "lobby", "seq": 2, "user": "bob", "body": "y"})
    assert plain.lines() == [
        ":bob!bob@parley PRIVMSG #lobby :x",
        ":bob!bob@parley PRIVMSG #lobby :y",
    ]
    assert tagged.lines() == [
        "@msgid=lobby:1 :bob!bob@parley PRIVMSG #lobby :x",
        "@msgid=lobby:2 :bob!bob@parley PRIVMSG #lobby :y",
    ]


def test_a_description_with_newlines_cannot_inject_a_line(irc):
    irc.directory_.topics["lobby"] = "line one\r\nQUIT :injected"
    client = Client(irc)
    client.login()
    client.send("JOIN #lobby")
    lines = client.lines()
    assert ":parley 332 alice #lobby :line one  QUIT :injected" in lines
    assert not any(line.startswith("QUIT") for line in lines)
