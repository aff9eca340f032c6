#!/usr/bin/env python
"""Micro-benchmark of the fan-out write path: how the slow-consumer bound is checked.

    .venv/bin/python bench/micro_write_path.py [--subscribers 1000] [--events 200] [--rounds 5]

``subscribers`` real loopback TCP connections in one process (Twisted's own server
transports, plain sockets as clients); each event is written to every one of them the way
a room's fan-out does (``subscriber.deliver(event)``), and only that loop is timed. Between
events the reactor sends what was written and the clients read it, untimed.

- ``backlog``: the way before chat/live/transport.py: after every write, the transport's
  unsent bytes are read from its private buffer fields (``dataBuffer``, ``offset``,
  ``_tempDataLen``) and compared with the bound. The HTTP channel is the transport's
  producer, as in the server.
- ``producer``: the way now: the subscriber (Parley's own ChatWebSocket write path) is
  the transport's push producer and checks one flag after a write.

With ``--stalled F`` a fraction of the clients never read, so their transports pause and
the paused path is measured too (the bound is raised so that nobody is cut).
Prints the median time per delivery of each, over ``rounds`` alternating runs.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

import django

django.setup()

from twisted.internet import reactor  # noqa: E402
from twisted.internet.interfaces import IPushProducer  # noqa: E402
from twisted.internet.protocol import Factory, Protocol  # noqa: E402
from zope.interface import implementer  # noqa: E402

from chat.live import transport as live_transport  # noqa: E402
from chat.live.events import OutboundEvent  # noqa: E402
from chat.live.websocket import ChatWebSocket  # noqa: E402

MAX_OUTBOUND_BYTES = 1024 * 1024
PAUSED: dict[str, int] = {}  # transports paused at the end of a run, most of any run


def outbound_backlog(transport) -> int:
    """The check as it was (chat/live/web.py before the producer API)."""
    try:
        return len(transport.dataBuffer) - transport.offset + transport._tempDataLen
    except AttributeError:
        return 0


@implementer(IPushProducer)
class ChannelStandIn:
    """The HTTP channel, the transport's streaming producer in the server."""

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class BacklogSubscriber:
    """ChatWebSocket's write path as it was."""

    def __init__(self, tcp, bound: int) -> None:
        self.tcp = tcp
        self.closed = False
        self.bound = bound
        self.cut = 0

    def deliver(self, event: OutboundEvent) -> None:
        self._write_frame(event.ws_frame)

    def _write_frame(self, frame: bytes) -> None:
        if self.closed:
            return
        tcp = self.tcp
        tcp.write(frame)
        if outbound_backlog(tcp) > self.bound:
            self.cut += 1


def producer_subscriber(tcp) -> ChatWebSocket:
    """Parley's ChatWebSocket, with only what its write path reads (no request, no room)."""
    subscriber = ChatWebSocket.__new__(ChatWebSocket)
    subscriber.tcp = tcp
    subscriber.closed = False
    subscriber.paused = False
    subscriber.slug = "bench"
    subscriber._allowance = live_transport.PAUSED_ALLOWANCE
    return subscriber


class Sink(Protocol):
    def connectionMade(self) -> None:
        self.factory.accepted.append(self.transport)


def connect(count: int, small: int):
    """``count`` connections; the first ``small`` with tiny socket buffers (the stalled)."""
    factory = Factory.forProtocol(Sink)
    factory.accepted = []
    port = reactor.listenTCP(0, factory, backlog=count, interface="127.0.0.1")
    address = ("127.0.0.1", port.getHost().port)
    clients = []
    for n in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if n < small:  # before connect, so that the advertised window stays small
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(address)
        sock.setblocking(False)
        clients.append(sock)
        while len(factory.accepted) < len(clients) - 64:
            spin()
    while len(factory.accepted) < count:
        spin()
    for tcp in factory.accepted[:small]:
        tcp.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    return port, clients, factory.accepted


def spin() -> None:
    reactor.runUntilCurrent()
    reactor.doIteration(0)


def drain(clients) -> int:
    got = 0
    for sock in clients:
        while True:
            try:
                data = sock.recv(1 << 20)
            except BlockingIOError:
                break
            if not data:
                break
            got += len(data)
    return got


def flush(transports, readers) -> None:
    for _ in range(10_000):
        spin()
        drain(readers)
        if all(not t.dataBuffer and not t._tempDataLen for t in transports):
            return


def run(kind: str, transports, clients, events: int, stalled: float, payload: int) -> float:
    """Seconds per delivery of one run."""
    readers = clients[int(len(clients) * stalled) :]
    quiet = transports[: int(len(transports) * stalled)]
    moving = transports[int(len(transports) * stalled) :]
    bound = 1 << 62 if stalled else MAX_OUTBOUND_BYTES
    subscribers = []
    for tcp in transports:
        if tcp.producer is not None:
            tcp.unregisterProducer()
        if kind == "backlog":
            tcp.registerProducer(ChannelStandIn(), True)
            subscribers.append(BacklogSubscriber(tcp, bound))
        else:
            subscriber = producer_subscriber(tcp)
            tcp.registerProducer(subscriber, True)
            subscribers.append(subscriber)
    if stalled:
        live_transport.PAUSED_ALLOWANCE = 1 << 62
    body = "x" * payload
    timed = 0.0
    for seq in range(1, events + 1):
        event = OutboundEvent(
            {"type": "message", "room": "bench", "seq": seq, "user": "u", "body": body}
        )
        event.ws_frame  # noqa: B018 - framed once before the fan-out, as in the server
        started = time.perf_counter()
        for subscriber in subscribers:
            subscriber.deliver(event)
        timed += time.perf_counter() - started
        flush(moving, readers)
    PAUSED[kind] = max(PAUSED.get(kind, 0), sum(1 for t in transports if t.producerPaused))
    for tcp in quiet:  # the stalled ones are emptied, untimed, for the next run
        tcp.dataBuffer, tcp.offset, tcp._tempDataBuffer, tcp._tempDataLen = b"", 0, [], 0
        tcp.producerPaused = False
    drain(clients)
    return timed / (events * len(subscribers))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--payload", type=int, default=200, help="message body characters")
    parser.add_argument("--stalled", type=float, default=0.0, help="fraction never reading")
    args = parser.parse_args(argv)
    port, clients, transports = connect(args.subscribers, int(args.subscribers * args.stalled))
    results: dict[str, list[float]] = {"backlog": [], "producer": []}
    try:
        for _ in range(args.rounds):
            for kind in results:
                results[kind].append(
                    run(kind, transports, clients, args.events, args.stalled, args.payload)
                )
    finally:
        for sock in clients:
            sock.close()
        port.stopListening()
    summary = {kind: round(statistics.median(times) * 1e9, 1) for kind, times in results.items()}
    print(
        json.dumps(
            {
                "subscribers": args.subscribers,
                "events": args.events,
                "stalled": args.stalled,
                "ns_per_delivery_median": summary,
                "producer_vs_backlog": round(summary["producer"] / summary["backlog"], 3),
                "paused_at_end": PAUSED,
                "runs_ns": {k: [round(t * 1e9, 1) for t in v] for k, v in results.items()},
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
