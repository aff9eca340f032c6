"""What the three transports share (chat/live/transport.py): the per-user bound on live
connections and its bookkeeping (chat/live/connections.py), and the open path's one way
of noticing that the client left. The bound on stand-in connections first, then through
the real transports.
"""

from __future__ import annotations

import pytest
from live_fakes import ALICE, BOB
from twisted.internet import defer

from chat.live.connections import (
    DEFAULT_MAX_CONNECTIONS_PER_USER,
    HEARTBEAT_SLICES,
    OpenConnections,
)
from chat.live.records import UserInfo
from chat.live.transport import CLOSE_GRACE


class Stand:
    """A connection as OpenConnections sees one."""

    def __init__(self, user: UserInfo | None, address: str = "10.0.0.7", kind: str = "sse"):
        self.user = user
        self.address = address
        self.transport_name = kind
        self.slug = "lobby"
        self.admitted = None
        self.beats = 0

    @property
    def limit_key(self):
        return ("user", self.user.id) if self.user else ("address", self.address)

    def heartbeat(self) -> None:
        self.beats += 1


# -- the registry on its own --------------------------------------------------------------


def test_a_user_may_hold_up_to_the_bound_and_one_more_is_refused():
    open_ = OpenConnections(3)
    held = [Stand(ALICE, kind=kind) for kind in ("websocket", "sse", "longpoll")]
    assert all(open_.admit(c) for c in held)
    assert not open_.admit(Stand(ALICE))
    assert open_.admit(Stand(BOB))  # another user is counted apart
    assert open_.held(("user", ALICE.id)) == 3
    open_.release(held[0])
    assert open_.admit(Stand(ALICE))


def test_anonymous_readers_are_counted_per_address_with_the_same_bound():
    open_ = OpenConnections(2)
    assert open_.admit(Stand(None, "10.0.0.7")) and open_.admit(Stand(None, "10.0.0.7"))
    assert not open_.admit(Stand(None, "10.0.0.7"))
    assert open_.admit(Stand(None, "10.0.0.8"))
    # A signed-in user on the same address is counted as the user, not the address.
    assert open_.admit(Stand(ALICE, "10.0.0.7"))


def test_a_release_counts_once_and_forgets_emptied_keys():
    open_ = OpenConnections(1)
    connection = Stand(ALICE)
    open_.admit(connection)
    open_.release(connection)
    open_.release(connection)  # every way out runs it; only the first counts
    assert open_.held(("user", ALICE.id)) == 0
    assert open_._held == {}
    assert open_.counts() == {"sse": 0}


def test_counts_are_by_transport_and_heartbeats_reach_one_transport():
    open_ = OpenConnections(10)
    ws = [Stand(ALICE, kind="websocket") for _ in range(2)]
    sse = Stand(BOB, kind="sse")
    for connection in (*ws, sse):
        open_.admit(connection)
    assert open_.counts() == {"websocket": 2, "sse": 1}
    open_.heartbeat("websocket")
    assert [c.beats for c in ws] == [1, 1] and sse.beats == 0
    assert set(open_.in_room("lobby")) == {*ws, sse}


def test_a_heartbeat_round_reaches_each_connection_once_a_slice_at_a_time():
    """Pinging every connection in one reactor turn stalled the reactor for as long as
    they all take; a round is HEARTBEAT_SLICES ticks, each of a share of them."""
    open_ = OpenConnections(10_000)
    conns = [Stand(ALICE, kind="websocket") for _ in range(2000)]
    for connection in conns:
        open_.admit(connection)
    tick = open_.heartbeat_round("websocket")
    largest = 0
    for _ in range(HEARTBEAT_SLICES):
        before = sum(c.beats for c in conns)
        tick()
        largest = max(largest, sum(c.beats for c in conns) - before)
    assert [c.beats for c in conns] == [1] * len(conns)
    assert largest < len(conns) / 10  # no tick takes them all (100 slices: ~20 each)
    open_.release(conns[0])
    for _ in range(HEARTBEAT_SLICES):
        tick()
    assert conns[0].beats == 1 and all(c.beats == 2 for c in conns[1:])


def test_the_bound_is_the_setting_with_protocol_md_s_default(settings):
    assert DEFAULT_MAX_CONNECTIONS_PER_USER == 50
    del settings.CHAT_MAX_CONNECTIONS_PER_USER
    assert OpenConnections.from_settings(settings).max_per_user == 50
    settings.CHAT_MAX_CONNECTIONS_PER_USER = 7
    assert OpenConnections.from_settings(settings).max_per_user == 7


# -- the bound through the transports -----------------------------------------------------


@pytest.fixture
def limited(make_live, authorizer):
    authorizer.sessions.update({f"k-alice-{n}": ALICE for n in range(5)})
    authorizer.sessions["k-bob"] = BOB
    return make_live(limit=3)


def open_one(live, kind: str, session: str | None = None, address: str = "10.0.0.7"):
    from conftest import Peer, WSPeer

    if kind == "websocket":
        return WSPeer(live, address).open("lobby", session=session)
    path = {"sse": "/events/rooms/lobby/", "longpoll": "/poll/rooms/lobby/?since=0"}[kind]
    return Peer(live, address).request(path, session=session)


def refused_429(client) -> bool:
    status, body = client.json()
    return status == 429 and body["error"]["code"] == "rate_limited"


def test_every_transport_counts_toward_one_user_s_bound(limited):
    held = [
        open_one(limited, "websocket", "k-alice-0"),
        open_one(limited, "sse", "k-alice-1"),
        open_one(limited, "longpoll", "k-alice-2"),
    ]
    assert held[0].upgraded
    for kind in ("websocket", "sse", "longpoll"):
        extra = open_one(limited, kind, "k-alice-3")
        assert refused_429(extra), kind
        assert kind != "websocket" or not extra.upgraded  # refused before the upgrade
    assert open_one(limited, "websocket", "k-bob").upgraded
    assert limited.open_connections.held(("user", ALICE.id)) == 3


def test_anonymous_readers_are_bound_per_address_through_the_transports(limited):
    for _ in range(3):
        assert open_one(limited, "websocket").upgraded
    assert refused_429(open_one(limited, "sse"))
    assert open_one(limited, "sse", address="10.0.0.8").response()[0] == 200


def alice_holds(live) -> int:
    return live.open_connections.held(("user", ALICE.id))


def test_the_count_goes_down_however_a_connection_ends(limited, hub, clock, deliver):
    live = limited
    # The client closes.
    ws = open_one(live, "websocket", "k-alice-0")
    ws.lose()
    assert alice_holds(live) == 0
    # The server drops it (its socket closes after the close handshake or the grace).
    ws = open_one(live, "websocket", "k-alice-0")
    live.open_connections.of("websocket")[0].drop("shutdown")
    clock.advance(CLOSE_GRACE)
    ws.lose()
    assert alice_holds(live) == 0
    # A slow consumer is cut.
    sse = open_one(live, "sse", "k-alice-1")
    stream = live.open_connections.of("sse")[0]
    stream.pauseProducing()
    stream.written_while_paused(2 * 1024 * 1024)
    assert stream.closed
    clock.advance(CLOSE_GRACE)
    assert alice_holds(live) == 0
    # Revocation: of a stream, and of a held long-poll.
    sse = open_one(live, "sse", "k-alice-1")
    poll = open_one(live, "longpoll", "k-alice-2")
    hub.rooms["lobby"].revoke(lambda user, session: user == ALICE)
    assert poll.json()[0] == 403
    clock.advance(CLOSE_GRACE)
    assert alice_holds(live) == 0
    # Shutdown.
    ws, sse, poll = (
        open_one(live, kind, f"k-alice-{n}")
        for n, kind in enumerate(("websocket", "sse", "longpoll"))
    )
    assert alice_holds(live) == 3
    hub.drop_all("shutdown")
    assert (ws.close_code, poll.json()[0]) == (1001, 200)
    assert sse.response()[2].endswith(b"<end>")
    clock.advance(CLOSE_GRACE)
    ws.lose()  # the close frame's grace has passed: the socket was cut
    assert alice_holds(live) == 0
    # An answered long-poll.
    poll = open_one(live, "longpoll", "k-alice-2")
    deliver(1)
    assert poll.json()[0] == 200 and alice_holds(live) == 0


# -- the open path ------------------------------------------------------------------------


def test_a_client_that_leaves_during_the_access_check_costs_nothing_after(
    make_live, authorizer, hub
):
    live = make_live()
    authorizer.hold = True
    clients = [open_one(live, kind) for kind in ("websocket", "sse", "longpoll")]
    for client in clients:
        client.lose()
    pending = [d for d, _ in authorizer.held]
    assert all(d.called for d in pending)  # the waits were cancelled
    authorizer.release()
    assert live.open_connections.counts() == {}
    assert "lobby" not in hub.rooms


def test_a_database_outage_during_the_access_check_is_503(make_live, authorizer):
    live = make_live()
    authorizer.fail = True
    for kind in ("websocket", "sse", "longpoll"):
        status, body = open_one(live, kind).json()
        assert (status, body["error"]["code"]) == (503, "unavailable"), kind


def test_a_room_deleted_while_it_loads_is_404(make_live, store):
    live = make_live()
    pending = defer.Deferred()
    store.room = lambda slug: pending
    client = open_one(live, "sse")
    pending.callback(None)  # the store found no such room after all
    status, body = client.json()
    assert (status, body["error"]["code"]) == (404, "not_found")
    assert live.open_connections.counts() == {"sse": 0}
