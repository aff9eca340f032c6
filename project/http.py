"""The request, channel and site classes: what Twisted's defaults leave open, closed.

* Request heads are checked once, before any resource sees them (``project.head``), and
  must arrive within HEAD_TIMEOUT of their first byte.
* Request bodies are capped (MAX_REQUEST_BYTES) before they are buffered, and must
  arrive at BODY_MIN_RATE after a grace of BODY_GRACE: Twisted's idle timer restarts
  on every byte, so a body sent one byte at a time was never cut.
* Responses are backpressured (``project.backpressure``): a connection holds about
  1 MiB unsent, pipelined requests wait while it is full, and a client that stops
  reading is cut after SEND_STALL_TIMEOUT.
* Header names Django would confuse are dropped and forwarded-for headers believed only
  from trusted proxies (``project.request``); the Server header names no version.
* Near the process's descriptor limit, new connections get a bare 503
  (``project.descriptors``).

Every refusal is a complete response followed by a close, never a silent drop.
"""

from __future__ import annotations

import logging
import time
from http import HTTPStatus
from typing import Any

from twisted.internet.interfaces import ITCPTransport
from twisted.web import http
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import Site

from project import metrics
from project.backpressure import SEND_STALL_TIMEOUT, WSGI_ALLOWANCE, WriteGate
from project.descriptors import DescriptorBudget, RefusedConnection
from project.head import (
    HEADER_SECTION_LIMIT,
    MAX_HEADERS,
    REQUEST_LINE_LIMIT,
    HeadError,
    HeadReader,
    RequestLine,
)
from project.logs import log_access, log_date
from project.request import ParleyRequest

access_log = logging.getLogger("parley.access")
logger = logging.getLogger(__name__)
_status_counters: dict[int, Any] = {}


def requests_with_status(status: int) -> Any:
    """The request counter's child for one status; ``labels()`` locks and hashes per call."""
    counter = _status_counters.get(status)
    if counter is None:
        counter = _status_counters[status] = metrics.REQUESTS.labels(str(status))
    return counter


# A request head (request line and headers) must arrive within this many seconds of its
# first byte. Twisted's idle timeout is reset by every byte, so without this a client
# sending one byte every few seconds ("slowloris") could hold a connection forever.
HEAD_TIMEOUT = 30.0
# A request body may take BODY_GRACE seconds plus one second per BODY_MIN_RATE bytes
# received: a steady upload on a poor link goes through (1 KiB/s is slower than any
# real one), a body that trickles in to hold the connection is cut with 408.
BODY_GRACE = 30.0
BODY_MIN_RATE = 1024
# Idle keep-alive connections (no request in progress, nothing arriving) are closed after
# this long. Twisted suspends it while a request is being answered, so long-polls and
# event streams are not cut by it; they have their own heartbeats and bounds.
IDLE_TIMEOUT = 75
SERVER_NAME = b"Parley"
# How long a refused client may go on sending before its connection is cut.
REFUSAL_LINGER = 2.0

PLAIN_TEXT = b"text/plain; charset=utf-8"


def minimal_response(status: int, body: bytes | None = None, content_type=PLAIN_TEXT) -> bytes:
    """A whole response that ends the connection, for answers given outside a Request."""
    phrase = HTTPStatus(status).phrase
    if body is None:
        body = phrase.encode() + b"\n"
    return (
        b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
        % (status, phrase.encode(), content_type, len(body))
    ) + body


class ParleyChannel(http.HTTPChannel):
    """HTTPChannel with checked heads, deadlines for heads and bodies, and backpressure.

    Head lines go through a ``HeadReader`` and only its canonical head reaches Twisted's
    parser. The head deadline runs from the first byte of a head to its last line, the
    body deadline from there to the body's end; the wait for the next request is left
    to the idle timeout.
    """

    # Twisted's limits, set so that only the canonical head (already within the
    # HeadReader's limits, which answer 414/431) is parsed by it.
    MAX_LENGTH = max(REQUEST_LINE_LIMIT, HEADER_SECTION_LIMIT)
    maxHeaders = MAX_HEADERS + 1
    totalHeadersSize = REQUEST_LINE_LIMIT + HEADER_SECTION_LIMIT + 1024

    def __init__(self) -> None:
        super().__init__()
        # Made at the first line of each head: a WebSocket keeps its channel for its whole
        # life, and a HeadReader made for a head that never comes would be held with it.
        self._reader: HeadReader | None = None
        self._request_line: RequestLine | None = None
        self._awaiting_head = True
        self._head_deadline = None
        self._body_deadline = None
        self._body_elapsed = 0.0
        self._refusing = False
        # Backpressure (project/backpressure.py): whether the transport has paused us,
        # what was written since, the finished request whose successor waits, and
        # whether a WSGI thread waits on the gate.
        self._paused = False
        self._written_while_paused = 0
        self._held = None
        self._writer_waits = False
        self._closing = False
        self._stall = None
        self._linger = None
        self.write_gate = WriteGate(self._writer_waiting)

    # --- heads -----------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self._refusing:
            return  # lingering after a refusal (see _close_lingering)
        if self._head_deadline is None and self._awaiting_head and data:
            self._head_deadline = self.callLater(HEAD_TIMEOUT, self._head_timed_out)
        super().dataReceived(data)

    def lineReceived(self, line: bytes) -> None:
        if self._refusing or not self.persistent:
            return
        reader = self._reader
        if reader is None:
            if not line:
                return  # RFC 9112 2.2: empty lines before a request line are ignored
            reader = self._reader = HeadReader()
        elif reader.request_line is None and not line:
            return
        try:
            head = reader.feed(line)
        except HeadError as error:
            self.refuse(error.status)
            return
        if head is None:
            return
        self._reader = None
        self._request_line = head.request_line
        for canonical in [*head.lines(), b""]:
            super().lineReceived(canonical)
            if self._refusing or self.transport is None or self.transport.disconnecting:
                return

    def lineLengthExceeded(self, line: bytes) -> None:
        if self._reader is None:
            self._reader = HeadReader()
        self.refuse(self._reader.line_too_long().status)

    def allHeadersReceived(self) -> None:
        self._awaiting_head = False
        self._cancel("_head_deadline")
        super().allHeadersReceived()
        if self.length != 0 and not self._refusing:  # a body follows: time it
            self._body_elapsed = BODY_GRACE
            self._body_deadline = self.callLater(BODY_GRACE, self._check_body)

    def allContentReceived(self) -> None:
        self._cancel("_body_deadline")
        super().allContentReceived()

    def requestDone(self, request) -> None:
        self._request_line = None
        if self._paused and self.persistent and self._held is None:
            # The client has not read what was sent: the next pipelined request waits
            # for the transport to resume us (resumeProducing) instead of piling up.
            self._held = request
            self._update_stall()
            return
        self._awaiting_head = True  # what comes next is the head of another request
        super().requestDone(request)

    def _respondToBadRequestAndDisconnect(self) -> None:
        # Twisted's own refusals (a malformed chunk, say) get the same whole answer as
        # ours instead of a bare status line.
        self.refuse(400)

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        logger.info("request head not complete after %ss; closing", HEAD_TIMEOUT)
        self.refuse(408)

    def _check_body(self) -> None:
        """Run at the moment the body received so far had to be complete by."""
        self._body_deadline = None
        request = self.requests[-1] if self.requests else None
        received = getattr(request, "body_bytes", 0)
        allowed = BODY_GRACE + received / BODY_MIN_RATE
        if allowed <= self._body_elapsed:
            logger.info("request body slower than %d B/s; closing", BODY_MIN_RATE)
            self.refuse(408)
            return
        self._body_deadline = self.callLater(allowed - self._body_elapsed, self._check_body)
        self._body_elapsed = allowed

    def refuse(
        self, status: int, body: bytes | None = None, content_type: bytes | None = None
    ) -> None:
        """Answer ``status`` and close: the request now being read goes no further.

        Used while a head or body is being read, so no response is under way; a complete
        response goes straight to the transport.
        """
        if self._refusing or self.transport is None:
            return
        self._refusing = True
        if self.requests and not self.requests[-1].finished:
            self.requests[-1]._refused = True
        self._cancel("_head_deadline")
        self._cancel("_body_deadline")
        if body is None:
            body = HTTPStatus(status).phrase.encode() + b"\n"
        self.transport.write(minimal_response(status, body, content_type or PLAIN_TEXT))
        self._close_lingering()
        metrics.REQUESTS.labels(str(status)).inc()
        current = (self._reader and self._reader.request_line) or self._request_line
        line = current.line().decode("latin-1") if current else "-"
        access_log.info(
            '%s - - %s "%s" %d %d',
            getattr(self.transport.getPeer(), "host", "-"),
            http.datetimeToLogString(),
            line,
            status,
            len(body),
        )

    def _close_lingering(self) -> None:
        """Close after a refusal, reading and dropping what the client still sends.

        A client refused mid-upload (413, 408) is still sending; closing outright would
        make the kernel answer its next bytes with a reset, which can destroy the
        refusal before the client reads it. The write side is closed at once, the
        read side after REFUSAL_LINGER at the latest.
        """
        if not ITCPTransport.providedBy(self.transport):  # TLS has no half-close
            self.loseConnection()
            return
        self._closing = True
        self.transport.loseWriteConnection()
        self.transport.resumeProducing()  # Twisted may have paused reading
        self._linger = self.callLater(REFUSAL_LINGER, self.transport.abortConnection)

    def rawDataReceived(self, data: bytes) -> None:
        if self._refusing:
            return
        super().rawDataReceived(data)

    # --- responses -------------------------------------------------------------------

    def writeHeaders(self, version, code, reason, headers) -> None:
        if isinstance(headers, Headers) and headers.hasHeader(b"server"):
            headers.setRawHeaders(b"server", [SERVER_NAME])  # not TwistedWeb/<version>
        super().writeHeaders(version, code, reason, headers)

    def write(self, data: bytes) -> None:
        super().write(data)
        self._count_written(len(data))

    def writeSequence(self, iovec) -> None:
        super().writeSequence(iovec)
        self._count_written(sum(map(len, iovec)))

    def _count_written(self, size: int) -> None:
        if self._paused:
            self._written_while_paused += size
            if self._written_while_paused >= WSGI_ALLOWANCE:
                self.write_gate.close()

    def pauseProducing(self) -> None:
        # The transport calls this on every write while its buffer is over its size;
        # only the first call starts a paused period.
        if not self._paused:
            self._paused = True
            self._written_while_paused = 0
        super().pauseProducing()

    def resumeProducing(self) -> None:
        self._paused = False
        self._writer_waits = False
        self.write_gate.open()
        self._update_stall()
        super().resumeProducing()
        held, self._held = self._held, None
        if held is not None and self.transport is not None:
            self._awaiting_head = True
            super().requestDone(held)

    def loseConnection(self) -> None:
        self._closing = True
        self._update_stall()
        super().loseConnection()

    def _writer_waiting(self) -> None:  # a WSGI thread found the gate closed
        if not self.write_gate.is_open:
            self._writer_waits = True
            self._update_stall()

    def _update_stall(self) -> None:
        waiting = self._held is not None or self._writer_waits or self._closing
        if self._paused and waiting:
            if self._stall is None:
                self._stall = self.callLater(SEND_STALL_TIMEOUT, self._stalled)
        else:
            self._cancel("_stall")

    def _stalled(self) -> None:
        self._stall = None
        logger.info("client read nothing for %ss; aborting the connection", SEND_STALL_TIMEOUT)
        if self.transport is not None:
            self.transport.abortConnection()

    # --- end -------------------------------------------------------------------------

    def connectionLost(self, reason) -> None:
        for name in ("_head_deadline", "_body_deadline", "_stall", "_linger"):
            self._cancel(name)
        self.write_gate.shut()
        self._held = None
        super().connectionLost(reason)

    def _cancel(self, name: str) -> None:
        call = getattr(self, name)
        if call is not None:
            if call.active():
                call.cancel()
            setattr(self, name, None)


class ParleySite(Site):
    """The one Site of a process: writes the access log and the HTTP metrics."""

    requestFactory = ParleyRequest
    protocol = ParleyChannel
    noisy = False

    def __init__(self, resource: Resource, django: Any = None, **kwargs: Any) -> None:
        super().__init__(resource, timeout=IDLE_TIMEOUT, parsePOSTFormSubmission=False, **kwargs)
        self.django = django
        self.draining = False
        self.descriptors = DescriptorBudget(self.reactor)

    @property
    def in_flight(self) -> int:
        """Django requests being answered (see DjangoFallback)."""
        return self.django.in_flight if self.django is not None else 0

    def buildProtocol(self, addr):
        if not self.descriptors.can_accept():
            metrics.REFUSED_CONNECTIONS.inc()
            return RefusedConnection(self.reactor, minimal_response(503))
        return super().buildProtocol(addr)

    def log(self, request: ParleyRequest) -> None:
        # A request whose client left before any response was written: 499, as nginx.
        status = request.code if request.startedWriting or request.finished else 499
        requests_with_status(status).inc()
        started = getattr(request, "started_at", None)
        if started is not None:
            metrics.REQUEST_LATENCY.observe(time.monotonic() - started)
        # Common Log Format: host ident authuser [date] "request" status bytes
        log_access(
            access_log,
            '%s - - %s "%s %s %s" %d %s',
            request.client_ip(),
            log_date(),
            request.method.decode("latin-1"),
            request.uri.decode("latin-1"),
            request.clientproto.decode("latin-1"),
            status,
            request.sentLength or "-",
        )
