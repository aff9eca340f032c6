"""WebSocket transport: ``/ws/rooms/<slug>/?since=<seq>`` on ``twisted.web.websocket``.

Frames <-> hub calls, nothing more. Three things Twisted's ``WebSocketResource`` does not
do are done here:

- Refusals (bad Origin, unknown room, no access) are answered as plain HTTP 403/404
  before any protocol is built: its ``render_GET`` asserts that ``buildProtocol`` returns
  one, so the handshake is run here, after the checks.
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
from twisted.web._websocket_impl import (
    _handleEvent,
    _WebSocketWireProtocol,
    serverBootstrap,
)
from twisted.web.server import NOT_DONE_YET, Request
from wsproto import ConnectionType
from wsproto.connection import Connection as WSConnection
from wsproto.events import CloseConnection, Message

from chat.live import metrics
from chat.live.events import OutboundEvent, encode, websocket_text_frame
from chat.live.records import ErrorCode
from chat.live.validation import check_client_id
from chat.live.web import RoomResource, header, outbound_backlog, write_error
from chat.live.wire import FrameError, parse_frame

logger = logging.getLogger(__name__)

# Close codes (RFC 6455 7.4.1 and the IANA registry).
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011
CLOSE_TRY_AGAIN = 1013

# Bytes queued for a client that does not read. A chat client that is this far behind
# (thousands of messages) is disconnected and resumes with `since`; without the bound one
# stuck client would make the server's memory grow with every message of the room.
MAX_OUTBOUND_BYTES = 1024 * 1024
# Pings go out this often; a peer that answered none of the last two is dead (a laptop
# closed mid-connection never sends a FIN) and is closed.
PING_INTERVAL = 20.0
# More malformed frames than this within a minute close the connection (PROTOCOL.md).
MAX_MALFORMED = 10
MALFORMED_WINDOW = 60.0
# A close handshake the peer does not finish is cut after this long.
CLOSE_TIMEOUT = 5.0


class LimitedWireProtocol(_WebSocketWireProtocol):
    """Twisted's wire protocol, with a limit on the size of each incoming message."""

    max_message_bytes = 65536
    _message_bytes = 0
    closing = False  # our close frame is sent: data is dropped until the peer's close

    def dataReceived(self, data: bytes) -> None:
        self._wsconn.receive_data(data)
        for event in self._wsconn.events():
            if isinstance(event, Message) and self.closing:
                continue
            if isinstance(event, Message):
                chunk = event.data
                size = len(chunk.encode()) if isinstance(chunk, str) else len(chunk)
                self._message_bytes += size
                if self._message_bytes > self.max_message_bytes:
                    self._wsp.message_too_big()
                    return
                if event.message_finished:
                    self._message_bytes = 0
            _handleEvent(event, self)


class ChatWebSocket:
    """One WebSocket connection: a hub subscriber and a source of sends."""

    transport_name = "websocket"

    def __init__(self, live, room, user, since: int | None) -> None:
        self.live = live
        self.room = room
        self.user = user
        self.since = since
        self.wire: LimitedWireProtocol | None = None
        self.tcp = None
        self.closed = False
        self.subscribed = False
        self.pongs_missed = 0
        self.malformed: deque[float] = deque()

    # -- WebSocketProtocol ----------------------------------------------------------

    def negotiationStarted(self, transport: LimitedWireProtocol) -> None:
        self.wire = transport
        self.tcp = transport.transport

    def negotiationFinished(self) -> None:
        self.live.websockets.add(self)
        self.subscribed = True
        self.live.hub.subscribe(self.room, self, self.since)

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
        if kind == "send":
            # The fields go to the hub as they came: it validates them, for every transport.
            client_id = frame.get("client_id")
            d = self.live.hub.send(self.room.slug, self.user, frame.get("body"), client_id)
            d.addCallback(self._answer_send, client_id)
        elif kind == "typing":
            self.live.hub.typing(self.room, self)
        else:
            self.bad_frame(None, f"Unknown frame type {kind!r:.40}.")

    def bytesMessageReceived(self, data: bytes) -> None:
        self.bad_frame(None, "Binary frames are not accepted; send JSON text.")

    def connectionLost(self, reason) -> None:
        self.closed = True
        self.live.websockets.discard(self)
        if self.subscribed:
            self.subscribed = False
            self.live.hub.unsubscribe(self.room, self)

    # -- hub subscriber ----------------------------------------------------------------

    def started(self, last_seq: int) -> None:
        user = self.user.username if self.user else None
        hello = {"type": "hello", "room": self.room.slug, "user": user, "last_seq": last_seq}
        self._write_frame(websocket_text_frame(encode(hello)))

    def deliver(self, event: OutboundEvent) -> None:
        self._write_frame(event.ws_frame)

    def drop(self, reason: str) -> None:
        self.subscribed = False
        code = {"slow": CLOSE_TRY_AGAIN, "unavailable": CLOSE_INTERNAL}.get(
            reason, CLOSE_GOING_AWAY
        )
        self.close(code, reason)

    # -- helpers -------------------------------------------------------------------------

    def _write_frame(self, frame: bytes) -> None:
        if self.closed:
            return
        tcp = self.tcp
        tcp.write(frame)
        if outbound_backlog(tcp) > MAX_OUTBOUND_BYTES:
            logger.info("websocket client in %s is too slow; closing", self.room.slug)
            metrics.SLOW_CONSUMERS.labels(self.transport_name).inc()
            if self.subscribed:
                self.subscribed = False
                self.live.hub.unsubscribe(self.room, self)
            self.close(CLOSE_TRY_AGAIN, "too slow")

    def _write_json(self, body: dict) -> None:
        self._write_frame(websocket_text_frame(encode(body)))

    def _answer_send(self, result, client_id: object) -> None:
        # A client_id is echoed only when it is one: an invalid one (a lone surrogate
        # cannot even be encoded) would make the answer itself fail.
        echo = client_id if check_client_id(client_id) is None else None
        if result.error == ErrorCode.BAD_REQUEST:
            self.bad_frame(echo, result.detail or ErrorCode.BAD_REQUEST.detail)
        elif result.error is not None:
            self.error(result.error, echo, result.detail, result.retry_after)
        else:
            self._write_json({"type": "ack", "client_id": echo, "seq": result.seq})

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
        self.malformed.append(now)
        while self.malformed and now - self.malformed[0] > MALFORMED_WINDOW:
            self.malformed.popleft()
        self.error(ErrorCode.BAD_REQUEST, client_id, detail)
        if len(self.malformed) > MAX_MALFORMED:
            self.close(CLOSE_POLICY, "too many malformed frames")

    def message_too_big(self) -> None:
        self.close(CLOSE_TOO_BIG, "message too big")

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
        wire = self.wire
        try:
            frame = wire._wsconn.send(CloseConnection(code, reason[:100]))
        except Exception:  # wsproto refuses a close in a state it cannot send one
            self.tcp.loseConnection()
            return
        wire.closing = True
        self.tcp.write(frame)
        self.live.reactor.callLater(CLOSE_TIMEOUT, _abort_if_open, self.tcp)

    def heartbeat(self) -> None:
        """Called every PING_INTERVAL: ping, or close a peer that stopped answering."""
        if self.closed:
            return
        if self.pongs_missed >= 2:
            self.close(CLOSE_GOING_AWAY, "no pong")
            return
        self.pongs_missed += 1
        self.wire.ping(b"parley")


def _abort_if_open(tcp) -> None:
    if tcp.connected:
        tcp.abortConnection()


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


class WebSocketResource(RoomResource):
    """``/ws/rooms/<slug>/``: checks first, then the handshake, then a ChatWebSocket."""

    def render_GET(self, request: Request):
        prepared = self.prepare(request, "since")
        if prepared is None:
            return NOT_DONE_YET
        slug, (since,) = prepared
        key, problem = upgrade_key(request)
        if problem is not None:
            request.setHeader(b"upgrade", b"websocket")
            request.setHeader(b"sec-websocket-version", b"13")
            write_error(request, ErrorCode.BAD_REQUEST, f"Not a WebSocket handshake: {problem}")
            return NOT_DONE_YET
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))
        d = self.access(request, slug)
        d.addCallback(self._authorized, request, key, since, gone)
        d.addErrback(self._failed, request)
        return NOT_DONE_YET

    def _authorized(self, access, request: Request, key: str, since, gone) -> None:
        refusal = self.refusal(access)
        if refusal is not None:
            write_error(request, refusal)
            return
        d = self.live.hub.room(access.room)
        d.addCallback(self._upgrade, access, request, key, since, gone)
        return d

    def _upgrade(self, room, access, request: Request, key: str, since, gone) -> None:
        if gone or request.channel is None or request.channel.transport is None:
            return  # the client left while we were checking
        protocol = ChatWebSocket(self.live, room, access.user, since)
        response = SWITCHING_PROTOCOLS % accept_token(key)
        # wsproto's own handshake would parse the request again with h11 (measured as
        # two fifths of the CPU of a connect); the request is already parsed and checked.
        connection = WSConnection(ConnectionType.SERVER)
        wire = LimitedWireProtocol(connection, serverBootstrap, protocol)
        wire.max_message_bytes = settings.CHAT_MAX_FRAME_BYTES
        transport = request.channel.transport
        request.channel._protocolUpgradeForWebsockets(wire)
        transport.write(response)
        protocol.negotiationFinished()

    def _failed(self, failure, request: Request) -> None:
        logger.warning("websocket handshake failed: %s", failure.getErrorMessage())
        write_error(request, ErrorCode.UNAVAILABLE)
