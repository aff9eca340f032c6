"""Server-Sent Events transport: ``/events/rooms/<slug>/?since=<seq>``.

A held Twisted request subscribed to the hub; the open path is chat/live/transport.py's.
Each durable event goes out as the chunk cached on the event (``id:``, ``event:``,
``data:``), ephemeral ones without ``id:``. Sends go through the long-poll POST.
"""

from __future__ import annotations

from chat.live.events import OutboundEvent
from chat.live.records import ErrorCode
from chat.live.transport import CLOSE_GRACE, LiveConnection, Refusal, RoomResource, abort_if_open
from chat.live.web import header
from chat.live.wire import parse_int

# A comment line goes out this often (PROTOCOL.md: at least every 15 s), so proxies do
# not close an idle stream and a dead client is noticed at the next write.
PING_INTERVAL = 10.0
# How long the browser waits before reconnecting after the stream ends: soon enough that
# a reader misses little, late enough that a server ending every stream at once (shutdown)
# is not hit by every browser in the same instant.
RETRY_MS = 2000


class EventStream(LiveConnection):
    """One SSE response: a hub subscriber, and the request's push producer."""

    transport_name = "sse"

    def __init__(self, live, request, slug: str) -> None:
        super().__init__(live, request, slug)
        self._producing = False

    def parse(self) -> None:
        super().parse()
        last_event_id = header(self.request, b"last-event-id")
        if last_event_id:  # the browser's own reconnect knows best
            try:
                self.since = parse_int(last_event_id, "Last-Event-ID")
            except ValueError as error:
                raise Refusal(ErrorCode.BAD_REQUEST, str(error)) from None

    async def serve(self) -> None:
        request = self.request
        request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"x-accel-buffering", b"no")  # nginx: do not buffer the stream
        # The channel passes its transport's pause and resume on to the request's producer.
        request.registerProducer(self, True)
        self.streaming = self._producing = True
        self.subscribe()
        await self.over  # until the client leaves, or the grace after its end

    def started(self, last_seq: int) -> None:
        self._write(b"retry: %d\n\n" % RETRY_MS)

    def deliver(self, event: OutboundEvent) -> None:
        self._write(event.sse_chunk)

    def heartbeat(self) -> None:
        self._write(b": ping\n\n")

    def _write(self, data: bytes) -> None:
        if self.closed:
            return
        self.request.write(data)
        if self.paused:
            self.written_while_paused(len(data))

    def end(self, reason: str) -> None:
        """The stream ends, and its connection closes: the browser's EventSource
        reconnects with Last-Event-ID. A client that does not take the end (it stopped
        reading: a slow consumer) is cut after CLOSE_GRACE."""
        if not self.streaming:
            super().end(reason)
            return
        if self.closed:
            return
        self.closed = True
        self._unsubscribe()
        request = self.request
        channel = request.channel
        if self._producing:
            self._producing = False
            request.unregisterProducer()
        request.finish()
        # Not the transport's loseConnection: the channel is its producer, and a transport
        # with a paused producer resumes it instead of closing once its buffer is sent.
        channel.loseConnection()
        self.live.reactor.callLater(CLOSE_GRACE, self._after_grace, channel.transport)

    def _after_grace(self, transport) -> None:
        abort_if_open(transport)
        self.finished()  # and its place under the user's limit is given back


class EventStreamResource(RoomResource):
    connection = EventStream
