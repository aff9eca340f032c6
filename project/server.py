"""The Twisted side of the HTTP server: one Site with the URL map of PROTOCOL.md.

``build_site()`` puts Django (through ``WSGIResource`` on its own thread pool), the static
files, the live-chat transports, ``/healthz`` and ``/metrics`` under one resource tree.
The request, channel and site classes here close the gaps Twisted's defaults leave open
for a public-facing server: bodies are capped before they are buffered, request heads
must arrive in bounded time, header names Django would confuse are dropped, and
forwarded-for headers are believed only from trusted proxies.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from prometheus_client import CONTENT_TYPE_LATEST, disable_created_metrics, generate_latest
from twisted.python.threadpool import ThreadPool
from twisted.web import http
from twisted.web.pages import notFound
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from twisted.web.wsgi import WSGIResource

from project import metrics

access_log = logging.getLogger("parley.access")
logger = logging.getLogger(__name__)
disable_created_metrics()

# A request head (request line and headers) must arrive within this many seconds of its
# first byte. Twisted's idle timeout is reset by every byte, so without this a client
# sending one byte every few seconds ("slowloris") could hold a connection forever.
HEAD_TIMEOUT = 30.0
# Idle keep-alive connections (no request in progress, nothing arriving) are closed after
# this long. Twisted suspends it while a request is being answered, so long-polls and
# event streams are not cut by it; they have their own heartbeats and bounds.
IDLE_TIMEOUT = 75
# Headers that describe the client as seen by a proxy; only a trusted proxy may set them.
FORWARDED_HEADERS = (b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host")

_TOO_LARGE_BODY = json.dumps(
    {"error": {"code": "too_large", "detail": "The request body is too large."}}
).encode()


class WSGIThreadPool(ThreadPool):
    """Django's pool, which never makes the process wait for a stuck view at exit.

    Twisted's ``stop()`` joins every thread with no timeout; a view still running after
    the shutdown grace period would then hang the process for good (its thread waits on
    the stopped reactor to write its response, the reactor waits on the thread). Threads
    are daemons and ``stop()`` only tells the idle ones to quit.
    """

    def threadFactory(self, *args: Any, **kwargs: Any):
        import threading

        return threading.Thread(*args, daemon=True, **kwargs)

    def stop(self) -> None:
        self.joined = True
        self.started = False
        self._team.quit()


class ParleyRequest(Request):
    """A request whose body is capped and whose headers are cleaned before any resource."""

    _refused = False

    def gotLength(self, length: int | None) -> None:
        self.started_at = time.monotonic()
        self._body_bytes = 0
        self._clean_headers()
        limit = settings.MAX_REQUEST_BYTES
        if length is not None and length > limit:
            self._refuse_body()
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            return
        self._body_bytes += len(data)
        if self._body_bytes > settings.MAX_REQUEST_BYTES:  # chunked bodies have no length
            self._refuse_body()
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self._refused:
            return
        super().requestReceived(command, path, version)

    def connectionLost(self, reason) -> None:
        # Twisted logs a request from finish(), which WSGIResource skips when the client
        # has already gone, even after the whole response was written: log it here.
        if not self.finished and not self._refused and hasattr(self, "started_at"):
            self.channel.site.log(self)
        super().connectionLost(reason)

    def _refuse_body(self) -> None:
        """Answer 413 and close, before the body is read into memory or a temporary file.

        The channel is still parsing this request, so the ordinary response machinery
        (which finishes the request and reads the next one) cannot be used; a complete
        response is written straight to the transport instead.
        """
        self._refused = True
        self.requestHeaders.removeHeader(b"expect")  # no "100 Continue" after a 413
        self.content = None
        response = (
            b"HTTP/1.1 413 Request Entity Too Large\r\n"
            b"Content-Type: application/json\r\n"
            b"Content-Length: " + str(len(_TOO_LARGE_BODY)).encode() + b"\r\n"
            b"Connection: close\r\n\r\n" + _TOO_LARGE_BODY
        )
        self.channel.transport.write(response)
        self.channel.transport.loseConnection()
        metrics.REFUSED_BODIES.inc()
        metrics.REQUESTS.labels("413").inc()
        channel = self.channel
        access_log.info(
            '%s - - %s "%s %s %s" 413 %d',
            self.getClientAddress().host,
            http.datetimeToLogString(),
            getattr(channel, "_command", b"-").decode("latin-1"),
            getattr(channel, "_path", b"-").decode("latin-1"),
            getattr(channel, "_version", b"-").decode("latin-1"),
            len(_TOO_LARGE_BODY),
        )

    def _clean_headers(self) -> None:
        headers = self.requestHeaders
        # WSGI maps a header name to HTTP_<NAME> with "-" turned into "_", so a client's
        # "X_Forwarded_For" would overwrite a proxy's "X-Forwarded-For" in Django's eyes.
        # Names with "_" are never needed by Parley: drop them (as nginx does by default).
        for name, _values in list(headers.getAllRawHeaders()):
            if b"_" in name:
                headers.removeHeader(name)
        if not self.from_trusted_proxy():
            for name in FORWARDED_HEADERS:
                headers.removeHeader(name)

    def from_trusted_proxy(self) -> bool:
        proxies = settings.TRUSTED_PROXIES
        if not proxies:
            return False
        host = getattr(self.getClientAddress(), "host", None)
        try:
            address = ipaddress.ip_address(host)
        except (TypeError, ValueError):
            return False
        return any(address in network for network in proxies)

    def client_ip(self) -> str:
        """The client's address: the proxy's word for it when the proxy is trusted."""
        forwarded = self.getHeader(b"x-forwarded-for")
        if forwarded and self.from_trusted_proxy():
            # The proxy appends the address it saw: the last entry is the one it vouches for.
            return forwarded.decode("latin-1").split(",")[-1].strip()
        return getattr(self.getClientAddress(), "host", "-")


class ParleyChannel(http.HTTPChannel):
    """HTTPChannel with a deadline for each request head.

    The deadline runs from the first byte of a request head to its last header; body
    bytes and the wait for the next request are left to the idle timeout.
    """

    _head_deadline = None
    _awaiting_head = True

    def dataReceived(self, data: bytes) -> None:
        if self._head_deadline is None and self._awaiting_head and data:
            self._head_deadline = self.callLater(HEAD_TIMEOUT, self._head_timed_out)
        super().dataReceived(data)

    def allHeadersReceived(self) -> None:
        self._awaiting_head = False
        self._cancel_head_deadline()
        super().allHeadersReceived()

    def requestDone(self, request) -> None:
        self._awaiting_head = True  # what comes next is the head of another request
        super().requestDone(request)

    def connectionLost(self, reason) -> None:
        self._cancel_head_deadline()
        super().connectionLost(reason)

    def _cancel_head_deadline(self) -> None:
        if self._head_deadline is not None:
            if self._head_deadline.active():
                self._head_deadline.cancel()
            self._head_deadline = None

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        logger.info("request head not complete after %ss; closing", HEAD_TIMEOUT)
        self._respondToBadRequestAndDisconnect()


class ParleySite(Site):
    """The one Site of a process: writes the access log and the HTTP metrics."""

    requestFactory = ParleyRequest
    protocol = ParleyChannel
    noisy = False

    def __init__(
        self, resource: Resource, django: DjangoFallback | None = None, **kwargs: Any
    ) -> None:
        super().__init__(resource, timeout=IDLE_TIMEOUT, parsePOSTFormSubmission=False, **kwargs)
        self.django = django
        self.draining = False

    @property
    def in_flight(self) -> int:
        """Django requests being answered (see DjangoFallback)."""
        return self.django.in_flight if self.django is not None else 0

    def log(self, request: ParleyRequest) -> None:
        # A request whose client left before any response was written: 499, as nginx.
        status = request.code if request.startedWriting or request.finished else 499
        metrics.REQUESTS.labels(str(status)).inc()
        started = getattr(request, "started_at", None)
        if started is not None:
            metrics.REQUEST_LATENCY.observe(time.monotonic() - started)
        # Common Log Format: host ident authuser [date] "request" status bytes
        access_log.info(
            '%s - - %s "%s %s %s" %d %s',
            request.client_ip(),
            http.datetimeToLogString(),
            request.method.decode("latin-1"),
            request.uri.decode("latin-1"),
            request.clientproto.decode("latin-1"),
            status,
            request.sentLength or "-",
        )


def guard_wsgi_close(application: Callable, on_done: Callable[[], None] | None = None) -> Callable:
    """Make sure the WSGI response's ``close()`` runs even when iterating it raises.

    Twisted's WSGIResource calls ``close()`` only after a clean iteration, but Django
    sends ``request_finished`` (which returns the thread's database connection) from
    ``close()``: without this, a streaming response that fails mid-way leaks it.
    ``on_done()`` runs in the WSGI thread once the job is over, whatever happened.
    """

    def guarded(environ: dict, start_response: Callable) -> Iterable[bytes]:
        try:
            result = application(environ, start_response)
        except BaseException:
            if on_done is not None:
                on_done()
            raise
        return _ClosingIterator(result, on_done)

    return guarded


class _ClosingIterator:
    def __init__(self, result: Iterable[bytes], on_done: Callable[[], None] | None) -> None:
        self._result = result
        self._on_done = on_done
        self._closed = False

    def __iter__(self):
        try:
            yield from self._result
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            if self._on_done is not None:
                self._on_done()


class DjangoFallback(Resource):
    """Everything not claimed by a native resource goes to Django, with the right paths.

    Reached as a child of the root, WSGIResource would take the first path segment as
    SCRIPT_NAME ("/rooms" for "/rooms/lobby/"), and every reverse() and redirect would be
    wrong. The segment is moved back so that Django sees SCRIPT_NAME "" and the full path.

    It also counts the Django requests in flight, from their arrival to the end of their
    WSGI job (not to the end of the connection: a view whose client left still runs), so
    that a graceful shutdown can wait for them.
    """

    isLeaf = True

    def __init__(self, reactor, pool: ThreadPool, application: Callable) -> None:
        super().__init__()
        self.in_flight = 0

        def job_done() -> None:  # in a WSGI thread
            reactor.callFromThread(self._job_done)

        self.wsgi = WSGIResource(reactor, pool, guard_wsgi_close(application, job_done))

    def _job_done(self) -> None:
        self.in_flight -= 1

    def render(self, request: Request):
        while request.prepath:
            request.postpath.insert(0, request.prepath.pop())
        self.in_flight += 1
        return self.wsgi.render(request)


class RootResource(Resource):
    """The URL map of PROTOCOL.md: native children by first segment, Django for the rest."""

    def __init__(self, django: Resource) -> None:
        super().__init__()
        self.django = django

    def getChild(self, path: bytes, request: Request) -> Resource:
        return self.django

    def render(self, request: Request):  # "/" itself
        return self.django.render(request)


class HealthResource(Resource):
    """``/healthz``: 200 while serving, 503 while draining (load balancers stop sending)."""

    isLeaf = True

    def __init__(self, details: Callable[[], dict]):
        super().__init__()
        self.details = details

    def render_GET(self, request: Request) -> bytes:
        draining = request.channel.site.draining
        body = {"status": "draining" if draining else "ok", **self.details()}
        request.setResponseCode(503 if draining else 200)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return json.dumps(body).encode()

    render_HEAD = render_GET


class MetricsResource(Resource):
    """``/metrics`` in Prometheus text format."""

    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode())
        return generate_latest()


def build_site(
    *,
    reactor,
    wsgi_pool: ThreadPool,
    live_children: dict[bytes, Resource] | None = None,
    health_details: Callable[[], dict] | None = None,
) -> ParleySite:
    """The whole URL map of PROTOCOL.md as one Site."""
    from django.core.wsgi import get_wsgi_application

    from project.static import build_static_resource

    django = DjangoFallback(reactor, wsgi_pool, get_wsgi_application())
    root = RootResource(django)
    root.putChild(b"static", build_static_resource())

    def details() -> dict:
        found = {
            "wsgi": {
                "threads": wsgi_pool.max,
                "busy": len(wsgi_pool.working),
                "queued": wsgi_pool._queue.qsize(),
            }
        }
        if health_details is not None:
            found.update(health_details())
        return found

    root.putChild(b"healthz", HealthResource(details))
    root.putChild(b"metrics", MetricsResource())
    children = live_children or {
        b"ws": notFound(),
        b"events": notFound(),
        b"poll": notFound(),
    }
    for name, child in children.items():
        root.putChild(name, child)
    metrics.register_pool("wsgi", wsgi_pool)
    return ParleySite(root, django=django)
