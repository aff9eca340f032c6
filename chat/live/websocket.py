"""WebSocket transport: ``/ws/rooms/<slug>/?since=<seq>`` over Twisted's wire protocol.

Frames <-> hub calls, nothing more; the open path is chat/live/transport.py's. Three things
Twisted's ``WebSocketResource`` does not do are done here:

- Refusals (bad Origin, unknown room, no access, too many connections) are answered as
  plain HTTP before any protocol is built: its ``render_GET`` asserts that
  ``buildProtocol`` returns one, so the handshake is run here, after the checks.
- Twisted buffers a fragmented message whole with no limit. ``LimitedWireProtocol``
  counts a message's bytes as wsproto parses them and closes with 1009 as soon as they
  pass ``CHAT_MAX_FRAME_BYTES``, before the message is ever held whole.
- Events go out as frames built once per event (``OutboundEvent.ws_frame``) and written
  straight to the TCP transport: no extension is negotiated, so a server frame is the
  same bytes for every subscriber.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
from collections import deque

from django.conf import settings
from twisted.internet import defer
from twisted.web.server import Request
from wsproto import ConnectionType
from wsproto.connection import Connection as WSConnection
from wsproto.events import CloseConnection, Message

from chat.live import compat
from chat.live.events import OutboundEvent, encode, websocket_text_frame
from chat.live.records import ErrorCode
from chat.live.transport import (
    CLOSE_GRACE,
    LiveConnection,
    Refusal,
    RoomResource,
    abort_if_open,
    forget_departure,
)
from chat.live.validation import check_client_id
from chat.live.web import header
from chat.live.wire import FrameError, parse_frame

logger = logging.getLogger(__name__)

# Close codes (RFC 6455 7.4.1, the IANA registry, and PROTOCOL.md's 4403).
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011
CLOSE_TRY_AGAIN = 1013
CLOSE_FORBIDDEN = 4403
# The frames that append to the log (the hub's ``submit``); ``read`` and ``typing`` do not.
WRITES = frozenset({"send", "edit", "delete", "react"})
_CLOSE_CODES = {
    "slow": CLOSE_TRY_AGAIN,
    "unavailable": CLOSE_INTERNAL,
    "revoked": CLOSE_FORBIDDEN,
}

# Pings go out this often; a peer that answered none of the last two is dead (a laptop
# closed mid-connection never sends a FIN) and is closed.
PING_INTERVAL = 20.0
PING_FRAME = b"\x89\x06parley"  # FIN + ping, unmasked, 6 bytes of payload (RFC 6455 5.5.2)
# More malformed frames than this within a minute close the connection (PROTOCOL.md): a
# client that keeps sending garbage is broken or hostile, and each one costs an answer.
MAX_MALFORMED = 10
MALFORMED_WINDOW = 60.0
# A close handshake the peer does not finish is cut after this long (transport.py).
CLOSE_TIMEOUT = CLOSE_GRACE


class LimitedWireProtocol(compat.WireProtocol):
    """Twisted's wire protocol, with a limit on the size of each incoming message."""

    max_message_bytes = 65536
    _message_bytes = 0
    closing = False  # our close frame is sent: data is dropped until the peer's close
    owner: ChatWebSocket | None = None

    def dataReceived(self, data: bytes) -> None:
        connection = compat.wire_connection(self)
        connection.receive_data(data)
        for event in connection.events():
            if self.closing:
                # Our close frame is sent: wsproto sends nothing more in LOCAL_CLOSING (a
                # pong included), so a ping is dropped, and a close event (the peer's, or
                # wsproto's own for a protocol error) just ends the TCP connection. Found
                # by tests/fuzz: either raised LocalProtocolError out of dataReceived.
                if isinstance(event, CloseConnection):
                    self.transport.loseConnection()
                continue
            if isinstance(event, Message):
                chunk = event.data
                size = len(chunk.encode()) if isinstance(chunk, str) else len(chunk)
                self._message_bytes += size
                if self._message_bytes > self.max_message_bytes:
                    self.owner.message_too_big()
                    return
                if event.message_finished:
                    self._message_bytes = 0
            elif isinstance(event, CloseConnection):
                self.owner.peer_closing()
            compat.dispatch_event(event, self)


_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 1.3
SWITCHING_PROTOCOLS = (
    b"HTTP/1.1 101 Switching Protocols\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: %s\r\n\r\n"
)


def upgrade_key(request: Request) -> tuple[str, str | None]:
    """The client's Sec-WebSocket-Key, or a reason the request is no handshake (RFC 6455
    4.2.1). No subprotocol or extension is offered back: Parley negotiates none."""
    upgrade = header(request, b"upgrade") or ""
    if upgrade.strip().lower() != "websocket":
        return "", "missing 'Upgrade: websocket'"
    tokens = {token.strip().lower() for token in (header(request, b"connection") or "").split(",")}
    if "upgrade" not in tokens:
        return "", "missing 'Connection: Upgrade'"
    if (header(request, b"sec-websocket-version") or "").strip() != "13":
        return "", "Sec-WebSocket-Version must be 13"
    key = (header(request, b"sec-websocket-key") or "").strip()
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            raise ValueError(key)
    except (ValueError, binascii.Error):
        return "", "Sec-WebSocket-Key must be 16 bytes in base64"
    return key, None


def accept_token(key: str) -> bytes:
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + _GUID).digest())


class ChatWebSocket(LiveConnection):
    """One WebSocket connection: a hub subscriber and a source of sends.

    Also Twisted's WebSocketProtocol (negotiationStarted ... connectionLost) for the wire.
    """

    transport_name = "websocket"

    def __init__(self, live, request: Request, slug: str) -> None:
        super().__init__(live, request, slug)
        self.key = ""
        self.read_seq: int | None = None
        self.wire: LimitedWireProtocol | None = None
        self.tcp = None
        self.pongs_missed = 0
        # Times of recent malformed frames, made at the first one: an empty deque is 760
        # bytes, as much as a tenth of what an idle connection costs in all.
        self.malformed: deque[float] | None = None
        self._close_timer = None
        self._producing = False  # registered as the transport's producer

    def parse(self) -> None:
        super().parse()
        key, problem = upgrade_key(self.request)
        if problem is not None:
            raise Refusal(
                ErrorCode.BAD_REQUEST,
                f"Not a WebSocket handshake: {problem}",
                headers=((b"upgrade", b"websocket"), (b"sec-websocket-version", b"13")),
            )
        self.key = key

    async def serve(self) -> None:
        # The hello's read_seq: read before the upgrade, while a failure is still a 503.
        self.read_seq = await self.wait(self.live.reads.position(self.room.info, self.user))
        self.upgrade()
        self.subscribe()
        if not self.gone:
            # From here the socket's connectionLost ends the connection (left()): the open
            # path's coroutines, its Deferreds and frames (about 1.5 KiB) are not held for
            # as long as the socket stays open.
            self.detached = True

    def upgrade(self) -> None:
        """The 101 and the wire protocol, on the connection the request came on.

        wsproto's own handshake would parse the request again with h11 (measured as two
        fifths of the CPU of a connect); the request is already parsed and checked.
        """
        wire = compat.server_wire(LimitedWireProtocol, WSConnection(ConnectionType.SERVER), self)
        wire.owner = self
        wire.max_message_bytes = settings.CHAT_MAX_FRAME_BYTES
        transport = self.request.channel.transport
        compat.upgrade_channel(self.request, wire)  # calls negotiationStarted
        transport.write(SWITCHING_PROTOCOLS % accept_token(self.key))
        # The HTTP channel was the transport's producer; from here on the connection is
        # this one's, and so are the transport's pause and resume (the slow-consumer bound).
        transport.unregisterProducer()
        wire.attachProducer(self)
        self._producing = self.streaming = True
        forget_departure(self.request)
        self.key = ""  # needed for the 101 only

    # -- WebSocketProtocol ----------------------------------------------------------

    def negotiationStarted(self, transport: LimitedWireProtocol) -> None:
        self.wire = transport
        self.tcp = transport.transport

    def negotiationFinished(self) -> None:
        pass  # the 101 is written by upgrade(); subscribed right after it

    def pongReceived(self, payload: bytes) -> None:
        self.pongs_missed = 0

    def textMessageReceived(self, message: str) -> None:
        if self.closed:
            return
        try:
            frame = parse_frame(message)
        except FrameError as error:
            return self.bad_frame(None, str(error))
        kind = frame.get("type")
        if not isinstance(kind, str):  # a list is not hashable (found by tests/fuzz)
            return self.bad_frame(None, f"Unknown frame type {kind!r:.40}.")
        if kind in WRITES:
            # The fields go to the hub as they came: it validates them, for every transport.
            d = defer.Deferred.fromCoroutine(self._write(frame))
            d.addErrback(lambda failure: logger.error("write failed: %s", failure.getTraceback()))
        elif kind == "read":
            d = defer.Deferred.fromCoroutine(self._read(frame.get("seq")))
            d.addErrback(lambda failure: logger.error("read failed: %s", failure.getTraceback()))
        elif kind == "typing":
            self.live.hub.typing(self.room, self)
        else:
            self.bad_frame(None, f"Unknown frame type {kind!r:.40}.")

    def bytesMessageReceived(self, data: bytes) -> None:
        self.bad_frame(None, "Binary frames are not accepted; send JSON text.")

    def connectionLost(self, reason) -> None:
        if self._close_timer is not None and self._close_timer.active():
            self._close_timer.cancel()
        self.left()

    # -- the room's subscriber ---------------------------------------------------------

    def started(self, last_seq: int) -> None:
        user = self.user.username if self.user else None
        hello = {
            "type": "hello",
            "room": self.slug,
            "user": user,
            "last_seq": last_seq,
            "read_seq": self.read_seq,
        }
        self._write_frame(websocket_text_frame(encode(hello)))

    def deliver(self, event: OutboundEvent) -> None:
        self._write_frame(event.ws_frame)

    def end(self, reason: str) -> None:
        if not self.streaming:
            super().end(reason)
        else:
            self.close(_CLOSE_CODES.get(reason, CLOSE_GOING_AWAY), reason)

    def cut(self) -> None:
        self.close(CLOSE_TRY_AGAIN, "too slow")

    # -- helpers -------------------------------------------------------------------------

    def _write_frame(self, frame: bytes) -> None:
        if self.closed:
            return
        # Sent now when nothing is buffered (compat.send_now: no epoll calls per frame).
        compat.send_now(self.tcp, frame)
        if self.paused:
            self.written_while_paused(len(frame))

    def _write_json(self, body: dict) -> None:
        self._write_frame(websocket_text_frame(encode(body)))

    async def _write(self, frame: dict) -> None:
        result = await self.live.hub.submit(self.slug, self.user, frame)
        # A client_id is echoed only when it is one: an invalid one (a lone surrogate
        # cannot even be encoded) would make the answer itself fail.
        client_id = frame.get("client_id")
        echo = client_id if check_client_id(client_id) is None else None
        if result.error == ErrorCode.BAD_REQUEST:
            self.bad_frame(echo, result.detail or ErrorCode.BAD_REQUEST.detail)
        elif result.error is not None:
            self.error(result.error, echo, result.detail, result.retry_after)
        else:
            self._write_json({"type": "ack", "client_id": echo, "seq": result.seq})

    async def _read(self, seq: object) -> None:
        """A ``read`` frame: no answer when it is taken (the ``read`` event follows if the
        position moved); an error frame when it is refused."""
        answer = await self.live.reads.read(self.slug, self.user, seq)
        if answer.error == ErrorCode.BAD_REQUEST:
            self.bad_frame(None, answer.detail or ErrorCode.BAD_REQUEST.detail)
        elif answer.error is not None:
            self.error(answer.error, None, answer.detail)

    def error(
        self,
        code: ErrorCode | str,
        client_id: str | None = None,
        detail: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        code = ErrorCode(code)
        body = {"type": "error", "code": str(code), "detail": detail or code.detail}
        if client_id is not None:
            body["client_id"] = client_id
        if retry_after is not None:
            body["retry_after"] = retry_after
        self._write_json(body)

    def bad_frame(self, client_id: str | None, detail: str) -> None:
        """A malformed frame or send: answered, and counted for the 1008 close."""
        now = self.live.reactor.seconds()
        malformed = self.malformed
        if malformed is None:
            malformed = self.malformed = deque()
        malformed.append(now)
        while malformed and now - malformed[0] > MALFORMED_WINDOW:
            malformed.popleft()
        self.error(ErrorCode.BAD_REQUEST, client_id, detail)
        if len(malformed) > MAX_MALFORMED:
            self.close(CLOSE_POLICY, "too many malformed frames")

    def message_too_big(self) -> None:
        self.close(CLOSE_TOO_BIG, "message too big")

    def peer_closing(self) -> None:
        """The peer's close frame: Twisted answers it and closes TCP once it is sent."""
        if not self.closed:
            self.closed = True
            self._unsubscribe()
            self._release_transport()
            self._cut_after_grace()

    def close(self, code: int, reason: str = "") -> None:
        """Send a close frame, then wait for the peer's (RFC 6455 7.1.1) before closing TCP.

        Closing TCP at once while the peer is still sending (the rest of an oversized
        message, say) makes our kernel answer with a reset, and the peer never reads the
        close frame or its code. Reading on and dropping data frames until the peer's close
        frame arrives avoids that; a peer that never sends one is cut after CLOSE_TIMEOUT.
        """
        if self.closed or self.wire is None:
            return
        self.closed = True
        self._unsubscribe()
        wire = self.wire
        self._release_transport()
        self._cut_after_grace()
        try:
            frame = compat.wire_connection(wire).send(CloseConnection(code, reason[:100]))
        except Exception:  # wsproto refuses a close in a state it cannot send one
            self.tcp.loseConnection()
            return
        wire.closing = True
        self.tcp.write(frame)

    def _cut_after_grace(self) -> None:
        # Whoever closed first, a peer that stops reading must not keep the socket.
        if self._close_timer is None:
            self._close_timer = self.live.reactor.callLater(CLOSE_TIMEOUT, abort_if_open, self.tcp)

    def _release_transport(self) -> None:
        # A transport whose producer is paused resumes it, instead of closing, once its
        # buffer is sent: nothing more is produced, so the close must not wait on it.
        if self._producing:
            self._producing = False
            self.wire.detachProducer()
            self.paused = False

    def heartbeat(self) -> None:
        """Called every PING_INTERVAL: ping, or close a peer that stopped answering."""
        if self.closed or self.wire is None:
            return
        if self.pongs_missed >= 2:
            self.close(CLOSE_GOING_AWAY, "no pong")
            return
        self.pongs_missed += 1
        # The frame is the same for everyone: written as it is, like the events, instead
        # of each ping going through wsproto (a whole round costs a call per connection).
        compat.send_now(self.tcp, PING_FRAME)


class WebSocketResource(RoomResource):
    """``/ws/rooms/<slug>/``: checks first, then the handshake, then a ChatWebSocket."""

    connection = ChatWebSocket
