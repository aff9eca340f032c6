"""Events on their way out: serialized once, framed once per transport, shared by all.

A room's fan-out writes the same bytes to every subscriber: the JSON text is made once
per event, and the WebSocket frame and the SSE chunk are made the first time a
subscriber of that transport needs them and cached on the event. A long-poll answer is
those JSON texts joined, never serialized again.
"""

from __future__ import annotations

import json
import struct

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def websocket_text_frame(payload: bytes) -> bytes:
    """A complete, unmasked, unfragmented text frame (RFC 6455 5.2) as a server sends it.

    With no extension negotiated (Parley negotiates none) a server frame depends only on
    its payload, so one frame serves every subscriber.
    """
    length = len(payload)
    if length < 126:
        header = bytes((0x81, length))
    elif length < 65536:
        header = struct.pack("!BBH", 0x81, 126, length)
    else:
        header = struct.pack("!BBQ", 0x81, 127, length)
    return header + payload


class OutboundEvent:
    """One event, durable (with a seq) or ephemeral (presence, typing)."""

    __slots__ = ("_sse", "_ws", "data", "event", "seq", "started", "type")

    def __init__(
        self, event: dict, started: float | None = None, data: bytes | None = None
    ) -> None:
        self.event = event
        self.type: str = event["type"]
        self.seq: int | None = event.get("seq")
        # ``data`` when the JSON text is already at hand (an event from the Redis bus).
        self.data: bytes = data if data is not None else _dumps(event).encode()
        # When the send that produced it began (time.monotonic), for the latency metric.
        self.started = started
        self._ws: bytes | None = None
        self._sse: bytes | None = None

    @property
    def ws_frame(self) -> bytes:
        if self._ws is None:
            self._ws = websocket_text_frame(self.data)
        return self._ws

    @property
    def sse_chunk(self) -> bytes:
        if self._sse is None:
            head = b"id: %d\n" % self.seq if self.seq is not None else b""
            self._sse = head + b"event: " + self.type.encode() + b"\ndata: " + self.data + b"\n\n"
        return self._sse

    def __repr__(self) -> str:
        return f"<OutboundEvent {self.type} seq={self.seq}>"


def encode(event: dict) -> bytes:
    """Compact JSON for one-off frames (hello, ack, error)."""
    return _dumps(event).encode()


def longpoll_body(events: list[OutboundEvent], last_seq: int) -> bytes:
    """A long-poll answer, made of each event's JSON text as it already is."""
    return (
        b'{"events":['
        + b",".join(event.data for event in events)
        + b'],"last_seq":%d}' % (last_seq)
    )
