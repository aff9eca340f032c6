"""The one base of the three live transports: one open path, one way to notice that the
client left, one place for refusals.

A live connection of any transport (a WebSocket, an SSE stream, a held long-poll) lives
in one coroutine, ``LiveConnection.run``, run with ``Deferred.fromCoroutine``:

    checks      path, Origin, query                        -> 404 / 403 / 400 at once
    access      session -> user, may they read? (store threads)   -> 404 / 403
    the limit   CHAT_MAX_CONNECTIONS_PER_USER (connections.py)   -> 429
    the room    hub.room(): the live room, loaded
    serve       the transport's part: the WebSocket upgrade, then subscribed until the
                socket closes; the SSE stream, subscribed until it ends; one long-poll wait
    finally     unsubscribed, and the connection's place under the limit given back
                (a subscribed WebSocket leaves the coroutine instead, "detached": then
                its connectionLost does this, and nothing of the coroutine is kept)

The client leaving is learnt one way, ``left()``: from ``request.notifyFinish()``'s errback,
or, once a WebSocket has taken the connection over (the request never hears of it then),
from its ``connectionLost``. It cancels whatever the coroutine is waiting for, so a client
that leaves during the access check, the room load or a long-poll wait ends its coroutine
there and then, and the ``finally`` cleans up after every way a connection can end.

A transport implements only its wire format: ``parse`` (its query and headers), ``serve``,
and the subscriber's ``started``/``deliver``/``end``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from django.conf import settings
from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from chat.live import metrics
from chat.live.auth import origin_allowed
from chat.live.records import ErrorCode, UserInfo
from chat.live.store import StoreUnavailable
from chat.live.web import (
    client_address,
    header,
    own_origin,
    query_int,
    room_slug,
    session_key,
    write_error,
)
from chat.tokens import is_credential

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Bytes written to one client and not yet sent. A chat client this far behind (thousands
# of messages) is cut and resumes with `since` / Last-Event-ID; without a bound one stuck
# client would make the server's memory grow with every message of its room.
MAX_UNSENT_BYTES = 1024 * 1024
# A transport pauses its producer once more than its buffer (Twisted's FileDescriptor
# .bufferSize, 64 KiB) waits to be sent, and resumes it only when all of it has gone. What
# a paused connection may write on top is the rest of the bound.
TRANSPORT_BUFFER = 64 * 1024
PAUSED_ALLOWANCE = MAX_UNSENT_BYTES - TRANSPORT_BUFFER
# A connection the server ended (a close frame, the end of a stream, queued behind what the
# client has not read) gets this long to be taken before TCP is cut: long enough for a
# client that reads to see why it was closed, short enough that one that stopped reading
# does not keep its socket and its megabyte of buffer. (A plain loseConnection() waits for
# the client to read everything first, for ever if it never does: issue 9.)
CLOSE_GRACE = 5.0

# How a server-side end shows over HTTP, before a stream exists (and for a long-poll).
_END_CODES = {"revoked": ErrorCode.FORBIDDEN}


class Refusal(Exception):
    """A request answered with an error instead of a stream."""

    def __init__(
        self,
        code: ErrorCode,
        detail: str | None = None,
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        super().__init__(code, detail)
        self.code = code
        self.detail = detail
        self.headers = headers

    def answer(self, request: Request) -> None:
        for name, value in self.headers:
            request.setHeader(name, value)
        write_error(request, self.code, self.detail)


def refuse_bad_token(credential: str | None, access: Any) -> None:
    """A request with a bearer token that signs in nobody (bad, revoked, expired): 401
    ``unauthorized``, before anything else (PROTOCOL.md "Authentication")."""
    if access.user is None and is_credential(credential):
        raise Refusal(ErrorCode.UNAUTHORIZED)


def notice_departure(request: Request, left: Callable[[], None]) -> None:
    """Call ``left()`` when the client of ``request`` goes away before its answer ends.

    The one way live code learns it: ``notifyFinish()`` fails when the connection is lost
    first, and succeeds (ignored here) when the answer was finished.
    """
    request.notifyFinish().addErrback(lambda _failure: left())


def forget_departure(request: Request) -> None:
    """Drop ``notice_departure``'s notification once a WebSocket has the connection: the
    request never finishes then, so it would never fire, only be held while the socket is."""
    request.notifications.clear()


def abort_if_open(transport: Any) -> None:
    if transport.connected:
        transport.abortConnection()


@implementer(IPushProducer)
class LiveConnection:
    """One live connection of any transport, from its request to its end.

    It is the room's subscriber (``user``, ``session_key``, ``started``, ``deliver``,
    ``drop``) and its transport's push producer: the transport pauses it when its buffer is
    full, and what is written while paused counts toward the slow-consumer bound. That is
    Twisted's public signal. The way before read the transport's buffer after every write:
    three private fields of the TCP transport, nothing at all over TLS (no such fields), and
    slower: 1000 subscribers x 200 events over loopback TCP (bench/micro_write_path.py)
    took 1825 ns a delivery that way and 1675 ns this way; with a tenth of the clients not
    reading (their transports paused), 1987 and 1843 ns.
    """

    transport_name = ""

    def __init__(self, live: Any, request: Request, slug: str) -> None:
        self.live = live
        self.request = request
        self.slug = slug
        self.session_key = session_key(request)
        self.address = client_address(request)
        self.user: UserInfo | None = None
        self.room: Any = None  # the LiveRoom, once loaded
        self.since: int | None = None
        self.subscribed = False
        self.streaming = False  # the transport's answer has begun (101, stream headers)
        self.closed = False  # ended, by either side: nothing more is written
        self.gone = False  # the client left
        self._over: defer.Deferred[None] | None = None  # see ``over``
        self._over_done = False
        # The connection lives on past ``run`` (a WebSocket, once subscribed): ``left()``
        # does what the end of ``run`` does.
        self.detached = False
        self.paused = False
        self.admitted: tuple[str, object] | None = None  # its key in OpenConnections
        self._allowance = PAUSED_ALLOWANCE
        self._waiting: defer.Deferred | None = None
        self._subscribing = False

    @property
    def over(self) -> defer.Deferred[None]:
        """A stream's end (the client left, or the server ended it and its grace passed):
        made when first awaited, since a WebSocket room stream never awaits it."""
        if self._over is None:
            self._over = defer.succeed(None) if self._over_done else defer.Deferred()
        return self._over

    @property
    def limit_key(self) -> tuple[str, object]:
        user = self.user
        return ("user", user.id) if user is not None else ("address", self.address)

    # -- the transport's part ---------------------------------------------------------

    def parse(self) -> None:
        """Read the transport's query and headers; raise Refusal for bad ones."""
        self.since = self.query("since")

    async def serve(self) -> None:
        """Answer the request; return (or be cancelled) when the connection is over."""
        raise NotImplementedError

    def started(self, last_seq: int) -> None:
        """Subscribed; ``last_seq`` is the room's newest seq (a subscriber also has
        ``deliver(event)``: WebSocket and SSE; a long-poll is answered by its wait)."""

    def end(self, reason: str) -> None:
        """End the connection from the server's side (the reason: shutdown, slow,
        unavailable, revoked). Before a stream exists, and for a long-poll, that is an
        HTTP answer: 403 `forbidden` when access was revoked, else 503 `unavailable`."""
        if self.closed:
            return
        self.refuse(Refusal(_END_CODES.get(reason, ErrorCode.UNAVAILABLE)))
        self.closed = True
        if self._waiting is not None:
            self._waiting.cancel()

    def cut(self) -> None:
        """A slow consumer's end."""
        self.end("slow")

    def heartbeat(self) -> None:
        """Called by the transport's keep-alive loop (service.py)."""

    # -- the open path ----------------------------------------------------------------

    def open(self) -> defer.Deferred[None]:
        notice_departure(self.request, self.left)
        d = defer.Deferred.fromCoroutine(self.run())
        d.addErrback(lambda failure: logger.error("%s: %s", self, failure.getTraceback()))
        return d

    async def run(self) -> None:
        live = self.live
        try:
            access = await self.wait(live.authorizer.access(self.session_key, self.slug))
            refuse_bad_token(self.session_key, access)
            if access.room is None:
                raise Refusal(ErrorCode.NOT_FOUND)
            if not access.can_read:
                raise Refusal(ErrorCode.FORBIDDEN)
            self.user = access.user
            if not live.open_connections.admit(self):
                raise Refusal(
                    ErrorCode.RATE_LIMITED,
                    f"Too many live connections (at most {live.open_connections.max_per_user}"
                    " per user); close one and retry.",
                )
            try:
                self.room = await self.wait(live.hub.room(access.room))
            except KeyError:  # the room was deleted while it loaded
                raise Refusal(ErrorCode.NOT_FOUND) from None
            await self.serve()
        except Refusal as refusal:
            self.refuse(refusal)
        except defer.CancelledError:
            pass  # the client left, or the server ended the connection while it waited
        except StoreUnavailable:
            logger.warning("%s in %s: the database is unavailable", self.transport_name, self.slug)
            self.fail()
        except Exception:
            logger.exception("%s in %s failed", self.transport_name, self.slug)
            self.fail()
        finally:
            if not self.detached:
                self.wrap_up()

    def wrap_up(self) -> None:
        """Unsubscribed, and the place under the limit given back (again: a no-op)."""
        self.closed = True
        self._unsubscribe()
        self.live.open_connections.release(self)

    async def wait(self, d: defer.Deferred[T]) -> T:
        """Every wait of the open path: cancelled (CancelledError) when the client leaves
        or the server ends the connection meanwhile."""
        if self.closed:
            d.addErrback(lambda failure: failure.trap(defer.CancelledError))
            d.cancel()
            raise defer.CancelledError()
        self._waiting = d
        try:
            result = await d
        finally:
            self._waiting = None
        if self.closed:
            raise defer.CancelledError()
        return result

    def left(self) -> None:
        """The client went away: nothing more is written, and the open path ends."""
        if self.gone:
            return
        self.gone = self.closed = True
        if self._waiting is not None:
            self._waiting.cancel()
        self.finished()
        if self.detached:
            self.wrap_up()

    def finished(self) -> None:
        """The stream is over (see ``over``)."""
        self._over_done = True
        if self._over is not None and not self._over.called:
            self._over.callback(None)

    def refuse(self, refusal: Refusal) -> None:
        if not self.gone and not self.request.finished:
            refusal.answer(self.request)

    def fail(self) -> None:
        if self.streaming:
            self.end("unavailable")
        else:
            self.refuse(Refusal(ErrorCode.UNAVAILABLE))

    def query(self, name: str) -> int | None:
        try:
            return query_int(self.request, name)
        except ValueError as error:
            raise Refusal(ErrorCode.BAD_REQUEST, str(error)) from None

    # -- the room's subscriber --------------------------------------------------------

    def subscribe(self) -> None:
        self.subscribed = self._subscribing = True
        try:
            self.live.hub.subscribe(self.room, self, self.since)
        finally:
            self._subscribing = False
        if self.closed:  # ended while it subscribed (its replay outran it): the room forgets it
            self._unsubscribe()

    def drop(self, reason: str) -> None:
        """The room ends this subscription (shutdown, slow, unavailable, revoked); it has
        forgotten the subscriber already, or does now."""
        self._unsubscribe()
        self.end(reason)

    def _unsubscribe(self) -> None:
        # Once the room has dropped a subscriber itself, unsubscribing it is a no-op there.
        if not self.subscribed or self._subscribing:
            return  # during hub.subscribe the room does not hold it yet: subscribe() will
        self.subscribed = False
        self.live.hub.unsubscribe(self.room, self)

    # -- the transport's producer: the slow-consumer bound ------------------------------

    def pauseProducing(self) -> None:
        # Called on every write while the transport's buffer is full; only the first call
        # of a paused period starts it.
        if not self.paused:
            self.paused = True
            self._allowance = PAUSED_ALLOWANCE

    def resumeProducing(self) -> None:
        # Everything written has gone to the kernel: the client is reading.
        self.paused = False

    def stopProducing(self) -> None:
        pass  # the transport is going; left() or the stream's end follows

    def written_while_paused(self, size: int) -> None:
        """Count a write made while paused (the transports check ``paused`` inline: this is
        off the hot path); past the allowance the client is too slow and is cut.

        The count is of bytes written since the transport last had all it was given sent,
        an upper bound of what is still unsent: a client that keeps reading, however
        slowly, empties the buffer now and then and starts the count again.
        """
        self._allowance -= size
        if self._allowance < 0 and not self.closed:
            logger.info("%s client in %s is too slow; cutting it", self.transport_name, self.slug)
            metrics.SLOW_CONSUMERS.labels(self.transport_name).inc()
            self.cut()  # which unsubscribes it: the room forgets it now, not at the socket's end

    def __repr__(self) -> str:
        who = self.user.username if self.user else self.address
        return f"<{type(self).__name__} {self.slug} {who}>"


class RoomResource(Resource):
    """Base of the transport resources: the method, the path and Origin checks, then the
    transport's ``connection`` opened for a GET."""

    isLeaf = True
    connection: type[LiveConnection] = LiveConnection
    methods: tuple[bytes, ...] = (b"GET",)

    def __init__(self, live: Any) -> None:
        super().__init__()
        self.live = live

    def render(self, request: Request):
        request.setHeader(b"cache-control", b"no-store")
        if request.method not in self.methods:
            # PROTOCOL.md: a wrong method is 405 with code bad_request and an Allow header
            # (Twisted's own 405 is an HTML page). HEAD too: a stream has no headers alone.
            allowed = b", ".join(self.methods)
            request.setHeader(b"allow", allowed)
            verb = "is" if len(self.methods) == 1 else "are"
            detail = f"Only {allowed.decode()} {verb} allowed here."
            write_error(request, ErrorCode.BAD_REQUEST, detail, status=405)
            return NOT_DONE_YET
        return super().render(request)

    def render_GET(self, request: Request):
        try:
            connection = self.connection(self.live, request, self.check(request))
            connection.parse()
        except Refusal as refusal:
            refusal.answer(request)
            return NOT_DONE_YET
        connection.open()
        return NOT_DONE_YET

    def check(self, request: Request) -> str:
        """The room's slug, or Refusal for what can be decided at once.

        The one Origin check of every live transport (WebSocket, SSE, long-poll GET and
        POST): a browser page of another origin must not read or post as our user.
        """
        slug = room_slug(request)
        if slug is None:
            raise Refusal(ErrorCode.NOT_FOUND)
        trusted = getattr(settings, "CSRF_TRUSTED_ORIGINS", [])
        if not origin_allowed(header(request, b"origin"), own_origin(request), trusted):
            raise Refusal(ErrorCode.FORBIDDEN)
        return slug
