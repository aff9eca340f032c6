"""Server-Sent Events transport: ``/events/rooms/<slug>/?since=<seq>``.

A held Twisted request (NOT_DONE_YET) subscribed to the hub; it is forgotten when the
client goes away (``notifyFinish``). Each durable event goes out as the chunk cached on
the event (``id:``, ``event:``, ``data:``), ephemeral ones without ``id:``. Sends go
through the long-poll POST.
"""

from __future__ import annotations

import logging

from twisted.web.server import NOT_DONE_YET, Request

from chat.live import metrics
from chat.live.events import OutboundEvent
from chat.live.records import ErrorCode
from chat.live.web import RoomResource, header, outbound_backlog, write_error
from chat.live.wire import parse_int

logger = logging.getLogger(__name__)

# A comment line goes out this often (PROTOCOL.md: at least every 15 s), so proxies do
# not close an idle stream and a dead client is noticed at the next write.
PING_INTERVAL = 10.0
# Bytes queued for a client that does not read; past it the stream is ended and the
# browser's EventSource reconnects with Last-Event-ID (see websocket.MAX_OUTBOUND_BYTES).
MAX_OUTBOUND_BYTES = 1024 * 1024
# How long the browser waits before reconnecting after the stream ends.
RETRY_MS = 2000


class EventStream:
    """One SSE response: a hub subscriber."""

    transport_name = "sse"

    def __init__(self, live, room, user, request: Request) -> None:
        self.live = live
        self.room = room
        self.user = user
        self.request = request
        self.open = True

    def started(self, last_seq: int) -> None:
        self._write(b"retry: %d\n\n" % RETRY_MS)

    def deliver(self, event: OutboundEvent) -> None:
        self._write(event.sse_chunk)

    def ping(self) -> None:
        self._write(b": ping\n\n")

    def drop(self, reason: str) -> None:
        self._end()

    def gone(self, _reason=None) -> None:
        if self.open:
            self.open = False
            self.live.streams.discard(self)
            self.live.hub.unsubscribe(self.room, self)

    def _write(self, data: bytes) -> None:
        if not self.open:
            return
        self.request.write(data)
        if outbound_backlog(self.request.channel.transport) > MAX_OUTBOUND_BYTES:
            logger.info("event stream in %s is too slow; ending it", self.room.slug)
            metrics.SLOW_CONSUMERS.labels(self.transport_name).inc()
            self.gone()
            self.request.channel.transport.loseConnection()

    def _end(self) -> None:
        if self.open:
            self.open = False
            self.live.streams.discard(self)
            self.request.finish()


class EventStreamResource(RoomResource):
    def render_GET(self, request: Request):
        prepared = self.prepare(request, "since")
        if prepared is None:
            return NOT_DONE_YET
        slug, (since,) = prepared
        last_event_id = header(request, b"last-event-id")
        if last_event_id:  # the browser's own reconnect knows best
            try:
                since = parse_int(last_event_id, "Last-Event-ID")
            except ValueError as error:
                write_error(request, ErrorCode.BAD_REQUEST, str(error))
                return NOT_DONE_YET
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))
        d = self.access(request, slug)
        d.addCallback(self._authorized, request, since, gone)
        d.addErrback(self._failed, request)
        return NOT_DONE_YET

    def _authorized(self, access, request: Request, since, gone):
        refusal = self.refusal(access)
        if refusal is not None:
            write_error(request, refusal)
            return None
        return self.live.hub.room(access.room).addCallback(
            self._start, access, request, since, gone
        )

    def _start(self, room, access, request: Request, since, gone) -> None:
        if gone:
            return
        request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"x-accel-buffering", b"no")  # nginx: do not buffer the stream
        stream = EventStream(self.live, room, access.user, request)
        request.notifyFinish().addBoth(stream.gone)
        self.live.streams.add(stream)
        self.live.hub.subscribe(room, stream, since)

    def _failed(self, failure, request: Request) -> None:
        logger.warning("event stream failed to start: %s", failure.getErrorMessage())
        write_error(request, "unavailable")
