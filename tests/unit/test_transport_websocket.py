"""The WebSocket transport on a fake clock: a real Twisted HTTP channel over a
StringTransport, wsproto as the client. Heartbeats and missed pongs, the close handshake
and its timeout, the malformed-frame window, the 1009 limit, the slow-consumer cut, and
the refusals answered before any upgrade. No sockets, no sleeping.
"""

from __future__ import annotations

import pytest
from live_fakes import ALICE, BOB
from prometheus_client import REGISTRY
from twisted.internet import defer
from wsproto.events import CloseConnection, TextMessage

from chat.live.events import OutboundEvent
from chat.live.records import RoomInfo
from chat.live.transport import PAUSED_ALLOWANCE
from chat.live.websocket import (
    CLOSE_TIMEOUT,
    MALFORMED_WINDOW,
    MAX_MALFORMED,
    ChatWebSocket,
)


def only(live) -> ChatWebSocket:
    (connection,) = live.open_connections.of("websocket")
    return connection


def beat(live) -> None:
    """One tick of the keep-alive loop (service.py runs it every PING_INTERVAL)."""
    live.open_connections.heartbeat("websocket")


def big_event(seq: int, size: int = 4000) -> OutboundEvent:
    body = "x" * size
    return OutboundEvent(
        {"type": "message", "room": "lobby", "seq": seq, "user": "a", "body": body}
    )


def aborts(clock) -> list:
    return [c for c in clock.getDelayedCalls() if "abort_if_open" in repr(c.func)]


# -- the handshake --------------------------------------------------------------------


def test_the_handshake_is_a_101_then_hello_and_presence(ws, live, authorizer):
    authorizer.sessions["k-alice"] = ALICE
    peer = ws("lobby", session="k-alice")
    status, headers, _ = peer.response()
    assert status == 101
    assert headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    hello, presence = peer.read()
    assert hello == {
        "type": "hello",
        "room": "lobby",
        "user": "alice",
        "last_seq": 0,
        "read_seq": None,
    }
    assert presence == {"type": "presence", "room": "lobby", "users": ["alice"]}
    connection = only(live)
    # What revocation reads of every subscriber.
    assert (connection.user, connection.session_key) == (ALICE, "k-alice")
    # The HTTP channel handed the transport's pause and resume over to the connection.
    assert peer.transport.producer is connection and peer.transport.streaming


def test_a_resume_replays_what_was_missed_after_hello(ws, deliver):
    for seq in (1, 2, 3):
        deliver(seq)
    peer = ws("lobby", query="?since=1")
    assert [f.get("seq") for f in peer.read() if f.get("type") == "message"] == [2, 3]
    assert peer.read()[0]["last_seq"] == 3


def test_a_send_is_acked_with_its_seq_after_the_commit(ws, authorizer, store):
    authorizer.sessions["k-alice"] = ALICE
    peer = ws("lobby", session="k-alice")
    peer.send_json({"type": "send", "body": "hi", "client_id": "c-1"})
    assert peer.of_type("ack") == [{"type": "ack", "client_id": "c-1", "seq": 1}]
    assert [r.body for r in store.appended] == ["hi"]
    assert [e["seq"] for e in peer.of_type("message")] == [1]  # its own copy too


def test_an_anonymous_send_is_forbidden_and_reading_goes_on(ws, store, deliver):
    peer = ws("lobby")
    peer.send_json({"type": "send", "body": "hi", "client_id": "c-1"})
    (error,) = peer.of_type("error")
    assert (error["code"], error["client_id"]) == ("forbidden", "c-1")
    deliver(1)
    assert [e["seq"] for e in peer.of_type("message")] == [1]
    assert store.appended == []


@pytest.mark.parametrize(
    ("slug", "private", "status", "code"),
    [("nowhere", False, 404, "not_found"), ("lobby", True, 403, "forbidden")],
)
def test_refusals_are_plain_http_before_any_upgrade(
    ws, live, authorizer, slug, private, status, code
):
    if private:
        authorizer.private["lobby"] = {ALICE.id}
    peer = ws(slug)
    got_status, body = peer.json()
    assert (got_status, body["error"]["code"]) == (status, code)
    assert not peer.upgraded
    assert live.open_connections.counts().get("websocket", 0) == 0


def test_a_foreign_origin_is_refused_before_the_access_check(ws, authorizer):
    authorizer.hold = True
    peer = ws("lobby", headers={"Origin": "http://127.0.0.1:8001"})  # another port
    status, body = peer.json()
    assert (status, body["error"]["code"]) == (403, "forbidden")
    assert authorizer.held == []


def test_a_request_that_is_no_handshake_is_400_with_the_upgrade_headers(peer):
    client = peer().request("/ws/rooms/lobby/")
    status, headers, _ = client.response()
    assert status == 400
    assert client.json()[1]["error"]["code"] == "bad_request"
    assert headers["upgrade"] == "websocket" and headers["sec-websocket-version"] == "13"


def test_a_client_that_leaves_during_the_access_check_is_never_upgraded(ws, live, authorizer, hub):
    authorizer.hold = True
    peer = ws("lobby")
    peer.lose()
    authorizer.release()
    assert not peer.upgraded
    assert live.open_connections.counts() == {}
    assert "lobby" not in hub.rooms


def test_a_client_that_leaves_while_its_room_loads_is_never_subscribed(ws, live, store, hub):
    pending = defer.Deferred()
    store.room = lambda slug: pending
    peer = ws("lobby")
    peer.lose()
    pending.callback(RoomInfo(1, "lobby", True, False, 0))
    assert not peer.upgraded
    assert hub.rooms["lobby"].subscribers == set()
    assert live.open_connections.counts().get("websocket", 0) == 0


# -- heartbeats ---------------------------------------------------------------------


def test_pings_go_out_and_a_peer_that_misses_two_is_closed_1001(ws, live):
    peer = ws("lobby")
    beat(live)
    assert ("ping", b"parley") in peer.read()
    peer.pong()  # answers the first
    beat(live)
    beat(live)  # two unanswered pings: one more chance
    assert peer.close_code is None
    beat(live)
    assert peer.close_code == 1001


def test_a_peer_that_keeps_answering_is_never_closed(ws, live):
    peer = ws("lobby")
    for _ in range(20):
        beat(live)
        peer.pong()
    assert peer.close_code is None
    assert len([f for f in peer.read() if f == ("ping", b"parley")]) == 20


# -- the close handshake ------------------------------------------------------------


def test_a_close_the_peer_never_answers_is_cut_after_the_timeout(ws, live, clock):
    peer = ws("lobby")
    only(live).drop("shutdown")
    assert peer.close_code == 1001
    clock.advance(CLOSE_TIMEOUT - 0.1)
    assert not peer.transport.disconnected
    clock.advance(0.2)
    assert peer.transport.disconnected  # aborted: the kernel sends a reset
    peer.lose()
    assert live.open_connections.counts()["websocket"] == 0


def test_a_peer_that_answers_the_close_is_let_go_and_no_timer_is_left(ws, live, clock, hub):
    peer = ws("lobby")
    only(live).drop("shutdown")
    peer.send(CloseConnection(1001))
    assert peer.transport.disconnecting  # Twisted closes TCP once the answer is sent
    peer.lose()
    assert aborts(clock) == []
    assert live.open_connections.counts()["websocket"] == 0
    assert hub.rooms["lobby"].subscribers == set()


def test_frames_after_our_close_frame_are_dropped_until_the_peer_closes(ws, live, authorizer):
    authorizer.sessions["k-alice"] = ALICE
    peer = ws("lobby", session="k-alice")
    only(live).drop("shutdown")
    peer.send_json({"type": "send", "body": "too late", "client_id": "c-late"})
    assert peer.of_type("ack") == [] and peer.of_type("error") == []


def test_a_close_from_the_peer_is_answered_and_forgets_the_subscriber(ws, live, hub, clock):
    peer = ws("lobby")
    peer.send(CloseConnection(1000))
    assert peer.close_code == 1000
    assert peer.transport.disconnecting
    assert hub.rooms["lobby"].subscribers == set()
    # A peer that does not read the answer does not keep the socket either.
    clock.advance(CLOSE_TIMEOUT)
    assert peer.transport.disconnected


@pytest.mark.parametrize(
    ("reason", "code"),
    [("revoked", 4403), ("shutdown", 1001), ("unavailable", 1011), ("slow", 1013)],
)
def test_each_end_the_server_makes_has_its_close_code(ws, live, reason, code):
    peer = ws("lobby")
    only(live).drop(reason)
    assert peer.close_code == code
    assert peer.transport.producer is None  # the close does not wait on a paused producer


def test_shutdown_closes_every_websocket_1001(ws, hub):
    peers = [ws("lobby", address=f"10.0.0.{n}") for n in range(3)]
    hub.drop_all("shutdown")
    assert [p.close_code for p in peers] == [1001, 1001, 1001]


# -- malformed frames ---------------------------------------------------------------


def test_ten_malformed_frames_a_minute_are_answered_and_the_eleventh_closes_1008(ws, clock):
    peer = ws("lobby")
    for _ in range(MAX_MALFORMED):
        peer.send(TextMessage("not json"))
        clock.advance(1)
    assert [e["code"] for e in peer.of_type("error")] == ["bad_request"] * MAX_MALFORMED
    assert peer.close_code is None
    peer.send_json({"type": "shout"})  # JSON, but no frame of ours: malformed too
    assert peer.close_code == 1008


def test_malformed_frames_spread_over_more_than_the_window_never_close(ws, clock):
    peer = ws("lobby")
    spacing = MALFORMED_WINDOW / MAX_MALFORMED + 0.5  # never more than ten in a window
    for _ in range(5 * MAX_MALFORMED):
        peer.send(TextMessage("{"))
        clock.advance(spacing)
    assert len(peer.of_type("error")) == 5 * MAX_MALFORMED
    assert peer.close_code is None


def test_binary_frames_are_malformed(ws):
    from wsproto.events import BytesMessage

    peer = ws("lobby")
    peer.send(BytesMessage(b'{"type":"typing"}'))
    assert peer.of_type("error")[0]["code"] == "bad_request"


# -- the frame limit ----------------------------------------------------------------


def test_a_message_over_the_frame_limit_closes_1009_before_it_is_whole(ws, settings, store):
    settings.CHAT_MAX_FRAME_BYTES = 1000
    peer = ws("lobby")
    peer.send(TextMessage('{"type":"send","body":"' + "x" * 560, message_finished=False))
    assert peer.close_code is None
    peer.send(TextMessage("x" * 500, message_finished=False))  # 1084 bytes so far
    assert peer.close_code == 1009
    assert store.appended == []


def test_a_message_at_the_frame_limit_is_read(ws, settings, authorizer):
    settings.CHAT_MAX_FRAME_BYTES = 1000
    authorizer.sessions["k-alice"] = ALICE
    peer = ws("lobby", session="k-alice")
    head = '{"type":"send","client_id":"c-1","body":"' + "y" * 50 + '","pad":"'
    frame = head + "p" * (1000 - len(head) - 2) + '"}'
    assert len(frame) == 1000
    peer.send(TextMessage(frame))
    assert peer.close_code is None
    assert peer.of_type("ack")[0]["client_id"] == "c-1"


# -- slow consumers -----------------------------------------------------------------


def slow_metric() -> float:
    value = REGISTRY.get_sample_value(
        "parley_slow_consumers_dropped_total", {"transport": "websocket"}
    )
    return value or 0.0


def test_a_slow_consumer_is_cut_1013_and_forgotten_by_the_room_at_once(
    ws, live, hub, clock, authorizer
):
    authorizer.sessions["k-bob"] = BOB
    slow, fast = ws("lobby", session="k-bob"), ws("lobby", address="10.0.0.8")
    stuck = next(c for c in live.open_connections.of("websocket") if c.user == BOB)
    room = hub.rooms["lobby"]
    before = slow_metric()
    stuck.pauseProducing()  # the transport's buffer is full: the client stopped reading
    frame = len(big_event(1).ws_frame)
    fits = PAUSED_ALLOWANCE // frame
    for seq in range(1, fits + 1):
        hub.deliver(big_event(seq))
    assert slow.close_code is None and stuck in room.subscribers
    hub.deliver(big_event(fits + 1))
    assert slow.close_code == 1013
    assert stuck not in room.subscribers  # at once, not when its socket closes
    assert slow_metric() == before + 1
    hub.deliver(big_event(fits + 2))
    assert [e["seq"] for e in fast.of_type("message")] == list(range(1, fits + 3))
    # The socket is cut after the close grace; then its place is given back.
    assert live.open_connections.counts()["websocket"] == 2
    clock.advance(CLOSE_TIMEOUT)
    assert slow.transport.disconnected
    slow.lose()
    assert live.open_connections.counts()["websocket"] == 1


def test_a_client_that_catches_up_starts_its_allowance_again(ws, live, hub):
    peer = ws("lobby")
    connection = only(live)
    frame = len(big_event(1).ws_frame)
    seq = 0
    for _ in range(3):
        connection.pauseProducing()
        for _ in range(PAUSED_ALLOWANCE // frame):
            seq += 1
            hub.deliver(big_event(seq))
        connection.resumeProducing()  # everything written has been sent
    assert peer.close_code is None
    assert len(peer.of_type("message")) == seq


def test_pause_calls_while_paused_do_not_restart_the_allowance(ws, live, hub):
    peer = ws("lobby")
    connection = only(live)
    frame = len(big_event(1).ws_frame)
    connection.pauseProducing()
    for seq in range(1, PAUSED_ALLOWANCE // frame + 2):
        hub.deliver(big_event(seq))
        connection.pauseProducing()  # the transport calls it on every write while full
    assert peer.close_code == 1013


def test_a_client_that_stops_reading_is_paused_by_its_transport_then_cut(ws, live, hub, clock):
    """The pause comes from the transport itself: the connection is its producer."""
    peer = ws("lobby", stalled=True)
    seq = 0
    while peer.close_code is None:
        seq += 1
        hub.deliver(big_event(seq))
        assert seq < 400, "never cut"
    assert seq * len(big_event(1).ws_frame) > PAUSED_ALLOWANCE  # and not before
    assert hub.rooms["lobby"].subscribers == set()


def test_a_client_that_reads_again_is_resumed_and_never_cut(ws, live, hub):
    peer = ws("lobby", stalled=True)
    frame = len(big_event(1).ws_frame)
    for seq in range(1, 3 * PAUSED_ALLOWANCE // frame):
        hub.deliver(big_event(seq))
        if seq % 100 == 0:
            peer.transport.drain()  # it read everything: its transport resumes it
            peer.transport.stall()
    assert peer.close_code is None


def test_a_resume_whose_replay_outruns_the_client_is_cut_and_leaves_nothing_behind(
    ws, live, hub, authorizer
):
    """Cut while the room is still subscribing it: the room must not keep it after."""
    authorizer.sessions["k-bob"] = BOB
    reader = ws("lobby")  # keeps the room live, its ring full of big events
    for seq in range(1, 400):
        hub.deliver(big_event(seq))
    peer = ws("lobby", query="?since=0", session="k-bob", stalled=True, address="10.0.0.8")
    assert peer.close_code == 1013
    room = hub.rooms["lobby"]
    assert [c.user for c in room.subscribers] == [None] and room.joining == {}
    assert "bob" not in room.presence.counts
    assert reader.close_code is None
