"""The SSE transport on a fake clock: a real Twisted HTTP channel over a StringTransport.
The wire format, resume by Last-Event-ID, the ping comment, the slow-consumer cut and the
grace after it, revocation, and a client that goes away. No sockets, no sleeping.
"""

from __future__ import annotations

from live_fakes import ALICE
from prometheus_client import REGISTRY

from chat.live.events import OutboundEvent
from chat.live.sse import RETRY_MS, EventStream
from chat.live.transport import CLOSE_GRACE, PAUSED_ALLOWANCE


def stream(peer, slug: str = "lobby", query: str = "", stalled: bool = False, **kwargs):
    return peer(stalled=stalled).request(f"/events/rooms/{slug}/{query}", **kwargs)


def only(live) -> EventStream:
    (connection,) = live.open_connections.of("sse")
    return connection


def blocks(client) -> list[str]:
    """The stream's blocks (``id:/event:/data:`` lines, comments), as text."""
    _status, _headers, body = client.response()
    return [b for b in body.decode().split("\n\n") if b]


def big_event(seq: int, size: int = 4000) -> OutboundEvent:
    body = "x" * size
    return OutboundEvent(
        {"type": "message", "room": "lobby", "seq": seq, "user": "a", "body": body}
    )


def test_the_stream_is_event_stream_with_retry_presence_then_events(peer, deliver, authorizer):
    authorizer.sessions["k-alice"] = ALICE
    client = stream(peer, session="k-alice")
    deliver(1)
    status, headers, _ = client.response()
    assert status == 200
    assert headers["content-type"] == "text/event-stream; charset=utf-8"
    assert headers["cache-control"] == "no-store"
    assert headers["x-accel-buffering"] == "no"
    retry, presence, message = blocks(client)
    assert retry == f"retry: {RETRY_MS}"
    # Ephemeral events carry no id: a reconnect must not resume from them.
    assert (
        presence == 'event: presence\ndata: {"type":"presence","room":"lobby","users":["alice"]}'
    )
    assert message.startswith('id: 1\nevent: message\ndata: {"type":"message"')


def test_every_subscriber_is_sent_the_same_bytes(peer, live, hub, store):
    clients = [stream(peer) for _ in range(3)]
    event = OutboundEvent(store.commit(1))
    hub.deliver(event)
    assert all(blocks(c)[-1].encode() + b"\n\n" == event.sse_chunk for c in clients)


def test_last_event_id_resumes_after_it_and_wins_over_since(peer, deliver):
    for seq in (1, 2, 3):
        deliver(seq)
    client = stream(peer, query="?since=0", headers={"Last-Event-ID": "2"})
    ids = [b.split("\n")[0] for b in blocks(client) if b.startswith("id:")]
    assert ids == ["id: 3"]


def test_a_last_event_id_that_is_no_number_is_400(peer, live):
    client = stream(peer, headers={"Last-Event-ID": "3a"})
    status, body = client.json()
    assert (status, body["error"]["code"]) == (400, "bad_request")
    assert live.open_connections.counts() == {}


def test_a_ping_comment_goes_out_on_each_tick(peer, live):
    client = stream(peer)
    live.open_connections.heartbeat("sse")
    live.open_connections.heartbeat("sse")
    assert blocks(client)[-2:] == [": ping", ": ping"]


def test_the_stream_is_the_request_s_push_producer(peer, live):
    stream(peer)
    connection = only(live)
    assert connection.request.producer is connection


# -- ends -----------------------------------------------------------------------------


def test_a_client_that_goes_away_is_unsubscribed_and_its_place_given_back(peer, live, hub):
    client = stream(peer)
    assert len(hub.rooms["lobby"].subscribers) == 1
    client.lose()
    assert hub.rooms["lobby"].subscribers == set()
    assert live.open_connections.counts()["sse"] == 0


def test_revocation_ends_the_stream_and_closes_its_connection(peer, live, hub, clock):
    client = stream(peer)
    only(live).drop("revoked")
    assert blocks(client)[-1].endswith("<end>")  # the last chunk: the response is whole
    assert client.transport.disconnecting
    assert hub.rooms["lobby"].subscribers == set()
    clock.advance(CLOSE_GRACE)
    assert client.transport.disconnected
    assert live.open_connections.counts()["sse"] == 0


def test_shutdown_ends_every_stream(peer, hub):
    clients = [stream(peer) for _ in range(3)]
    hub.drop_all("shutdown")
    assert all(blocks(c)[-1].endswith("<end>") for c in clients)


def sse_slow() -> float:
    return (
        REGISTRY.get_sample_value("parley_slow_consumers_dropped_total", {"transport": "sse"})
        or 0.0
    )


def test_a_slow_reader_is_cut_forgotten_at_once_and_aborted_after_the_grace(
    peer, live, hub, clock
):
    """Issue 9.3: ending the stream with loseConnection() waited for the client to read
    it all, for ever, and the request never finished."""
    slow, fast = stream(peer), stream(peer)
    stuck = next(
        c for c in live.open_connections.of("sse") if c.request.transport is slow.transport
    )
    room = hub.rooms["lobby"]
    before = sse_slow()
    stuck.pauseProducing()  # the transport's buffer is full: the client stopped reading
    chunk = len(big_event(1).sse_chunk) + 8  # with its chunked-encoding frame
    seq = 0
    while not stuck.closed:
        seq += 1
        hub.deliver(big_event(seq))
        assert seq <= PAUSED_ALLOWANCE // chunk + 2
    assert seq >= PAUSED_ALLOWANCE // (chunk + 8)
    assert stuck not in room.subscribers  # forgotten at once
    assert sse_slow() == before + 1
    assert blocks(slow)[-1].endswith("<end>")
    assert slow.transport.disconnecting and not slow.transport.disconnected
    hub.deliver(big_event(seq + 1))
    assert blocks(fast)[-1].startswith(f"id: {seq + 1}\n")
    # The client does not take the end: cut after the grace, its place given back then.
    assert live.open_connections.counts()["sse"] == 2
    clock.advance(CLOSE_GRACE - 0.1)
    assert not slow.transport.disconnected
    clock.advance(0.2)
    assert slow.transport.disconnected
    assert live.open_connections.counts()["sse"] == 1


def test_a_reader_that_keeps_up_is_never_cut(peer, live, hub):
    client = stream(peer)
    connection = only(live)
    seq = 0
    for _ in range(3):
        connection.pauseProducing()
        for _ in range(PAUSED_ALLOWANCE // (len(big_event(1).sse_chunk) + 16)):
            seq += 1
            hub.deliver(big_event(seq))
        connection.resumeProducing()
    assert not connection.closed
    assert blocks(client)[-1].startswith(f"id: {seq}\n")


def test_a_reader_that_stops_reading_is_paused_through_the_channel_then_cut(peer, live, hub):
    """The HTTP channel passes its transport's pause on to the request's producer."""
    client = stream(peer, stalled=True)
    seq = 0
    while not blocks(client)[-1].endswith("<end>"):
        seq += 1
        hub.deliver(big_event(seq))
        assert seq < 400, "never cut"
    assert seq * len(big_event(1).sse_chunk) > PAUSED_ALLOWANCE
    assert hub.rooms["lobby"].subscribers == set()
