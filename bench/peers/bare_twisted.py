#!/usr/bin/env python
"""The bare floor: the same fan-out as Parley on a minimal ``twisted.web.websocket`` server.

No database, no auth, no hub, no presence: every connection to ``/ws/rooms/<slug>/`` joins
that room; a text frame ``{"type": "send", "body": ..., "client_id": ...}`` from anyone is
numbered, serialized ONCE into an event shaped like Parley's, framed ONCE, and those bytes
are written straight to every subscriber's TCP transport (Parley does the same), then the
sender gets ``{"type": "ack", ...}``. What Parley costs above this is its own overhead.

    /work/main/.venv/bin/python bench/peers/bare_twisted.py --port 8765

Prints ``bare floor serving on http://127.0.0.1:PORT/`` when listening.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
from datetime import UTC, datetime

from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.websocket import WebSocketResource

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def text_frame(payload: bytes) -> bytes:
    """An unmasked server text frame (RFC 6455 5.2)."""
    length = len(payload)
    if length < 126:
        return bytes((0x81, length)) + payload
    if length < 65536:
        return struct.pack("!BBH", 0x81, 126, length) + payload
    return struct.pack("!BBQ", 0x81, 127, length) + payload


class Room:
    def __init__(self, slug: str) -> None:
        self.slug = slug
        self.seq = 0
        self.subscribers: set[BareSocket] = set()

    def publish(self, body: str, client_id: object) -> int:
        self.seq += 1
        event = {
            "type": "message",
            "room": self.slug,
            "seq": self.seq,
            "user": "bench",
            "body": body,
            "ts": datetime.now(UTC).isoformat(),
            "client_id": client_id,
        }
        frame = text_frame(_dumps(event).encode())
        for subscriber in tuple(self.subscribers):
            subscriber.tcp.write(frame)
        return self.seq


ROOMS: dict[str, Room] = {}
# BARE_NODELAY=1 sets TCP_NODELAY on every connection (Parley and Daphne do not): to see
# what Nagle's algorithm costs the fan-out.
NODELAY = os.environ.get("BARE_NODELAY") == "1"


class BareSocket:
    def __init__(self, room: Room) -> None:
        self.room = room
        self.tcp = None

    def negotiationStarted(self, transport) -> None:
        self.tcp = transport.transport
        if NODELAY:
            self.tcp.setTcpNoDelay(True)

    def negotiationFinished(self) -> None:
        self.room.subscribers.add(self)
        hello = {"type": "hello", "room": self.room.slug, "user": None, "last_seq": self.room.seq}
        self.tcp.write(text_frame(_dumps(hello).encode()))

    def textMessageReceived(self, message: str) -> None:
        try:
            frame = json.loads(message)
            body = frame["body"]
        except (ValueError, KeyError, TypeError):
            return
        client_id = frame.get("client_id")
        seq = self.room.publish(body, client_id)
        ack = {"type": "ack", "client_id": client_id, "seq": seq}
        self.tcp.write(text_frame(_dumps(ack).encode()))

    def bytesMessageReceived(self, data: bytes) -> None:
        pass

    def pongReceived(self, payload: bytes) -> None:
        pass

    def connectionLost(self, reason) -> None:
        self.room.subscribers.discard(self)


class RoomSockets:
    """The WebSocketServerFactory: the room is the last non-empty path segment."""

    def buildProtocol(self, request) -> BareSocket:
        parts = [p for p in request.path.split(b"/") if p]
        slug = parts[-1].decode("ascii", "replace") if parts else "lobby"
        room = ROOMS.get(slug) or ROOMS.setdefault(slug, Room(slug))
        return BareSocket(room)


class Root(Resource):
    def __init__(self) -> None:
        super().__init__()
        self.sockets = WebSocketResource(RoomSockets())
        self.sockets.isLeaf = True  # /ws/rooms/<slug>/ all lands here

    def getChild(self, path: bytes, request) -> Resource:
        return self.sockets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args(argv)
    site = Site(Root())
    site.noisy = False
    port = reactor.listenTCP(args.port, site, interface=args.host, backlog=1024)
    print(f"bare floor serving on http://{args.host}:{port.getHost().port}/", flush=True)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
