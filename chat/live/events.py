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
    """One event, durable (with a seq) or ephemeral (presence, typing).

    A room's ring keeps its last events for resumes; there an event is ``compact()``: its
    JSON text only (the dict decoded again, and the frames made again, when a replay or
    an edit needs them). A message's dict and its two frames were three quarters of the
    1.9 KB it held in a full ring, and a ring is 1,024 events per live room.
    """

    __slots__ = ("_event", "_sse", "_ws", "data", "seq", "started", "type")

    def __init__(
        self, event: dict, started: float | None = None, data: bytes | None = None
    ) -> None:
        self._event: dict | None = event
        self.type: str = event["type"]
        self.seq: int | None = event.get("seq")
        # ``data`` when the JSON text is already at hand (an event from the Redis bus).
        self.data: bytes = data if data is not None else _dumps(event).encode()
        # When the send that produced it began (time.monotonic), for the latency metric.
        self.started = started
        self._ws: bytes | None = None
        self._sse: bytes | None = None

    @property
    def event(self) -> dict:
        event = self._event
        if event is None:
            # Kept compact: a fresh dict each time, so that no reader keeps it inflated.
            event = json.loads(self.data)
        return event

    def compact(self) -> None:
        """Keep the JSON text only (it is the event; everything else is made from it)."""
        self._event = self._ws = self._sse = None

    @property
    def ws_frame(self) -> bytes:
        if self._ws is not None:
            return self._ws
        frame = websocket_text_frame(self.data)
        if self._event is not None:  # a compact event stays compact
            self._ws = frame
        return frame

    @property
    def sse_chunk(self) -> bytes:
        if self._sse is not None:
            return self._sse
        head = b"id: %d\n" % self.seq if self.seq is not None else b""
        chunk = head + b"event: " + self.type.encode() + b"\ndata: " + self.data + b"\n\n"
        if self._event is not None:
            self._sse = chunk
        return chunk

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
