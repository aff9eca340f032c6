"""What the three transports share: the room path, the checks before a stream starts, errors.

Every live URL is ``/<transport>/rooms/<slug>/``. Each transport resource answers the
parts of PROTOCOL.md that are decided before a stream exists (unknown room 404, no
access 403, bad Origin 403, bad parameters 400) the same way, through ``RoomResource``.
"""

from __future__ import annotations

import json
import re

from django.conf import settings
from twisted.internet import defer
from twisted.web.resource import Resource
from twisted.web.server import Request

from chat.live.auth import Origin, origin_allowed, server_origin
from chat.live.records import Access, ErrorCode, error_body
from chat.live.wire import parse_int
from chat.slug import SLUG_PATTERN

_SLUG = re.compile(rf"^{SLUG_PATTERN}\Z")


def room_slug(request: Request) -> str | None:
    """The slug of ``/<transport>/rooms/<slug>/`` (trailing slash optional), or None."""
    parts = request.postpath
    if parts and parts[-1] == b"":
        parts = parts[:-1]
    if len(parts) != 2 or parts[0] != b"rooms":
        return None
    try:
        slug = parts[1].decode("ascii")
    except UnicodeDecodeError:
        return None
    return slug if _SLUG.match(slug) else None


def query_int(request: Request, name: str) -> int | None:
    """A non-negative integer query parameter; None when absent; ValueError when bad."""
    values = request.args.get(name.encode())
    if not values:
        return None
    return parse_int(values[-1], name)


def header(request: Request, name: bytes) -> str | None:
    """A request header as text (Twisted gives bytes), or None when absent."""
    value = request.getHeader(name)
    return None if value is None else value.decode("latin-1")


def session_key(request: Request) -> str | None:
    raw = request.getCookie(settings.SESSION_COOKIE_NAME.encode())
    if not raw:
        return None
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        return None


def write_json(request: Request, status: int, body: dict | bytes) -> None:
    if request.finished or getattr(request, "_disconnected", False):
        return
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    request.setHeader(b"content-length", str(len(data)).encode())
    request.write(data)
    request.finish()


def write_error(request: Request, code: ErrorCode | str, detail: str | None = None) -> None:
    code = ErrorCode(code)
    write_json(request, code.status, error_body(code, detail))


def own_origin(request: Request) -> Origin | None:
    """The origin this request was made to, as the browser saw it.

    The scheme is the one it came with, or a trusted proxy's X-Forwarded-Proto: the
    server (project/server.py) removes that header from anyone else, so one that is
    here is believed. Several proxies list several schemes; the first is the client's.
    """
    scheme = "https" if request.isSecure() else "http"
    forwarded = header(request, b"x-forwarded-proto")
    if forwarded:
        claimed = forwarded.split(",", 1)[0].strip().lower()
        if claimed in ("http", "https"):
            scheme = claimed
    return server_origin(scheme, header(request, b"host"), settings.ALLOWED_HOSTS)


def outbound_backlog(transport) -> int:
    """Bytes written to a TCP transport and not yet sent to the peer."""
    try:
        return len(transport.dataBuffer) - transport.offset + transport._tempDataLen
    except AttributeError:  # not a plain TCP transport (tests): no backlog to measure
        return 0


class RoomResource(Resource):
    """Base of the transport resources: path, Origin and access checks, in that order."""

    isLeaf = True

    def __init__(self, live) -> None:
        super().__init__()
        self.live = live

    def render(self, request: Request):
        request.setHeader(b"cache-control", b"no-store")
        return super().render(request)

    def check(self, request: Request) -> tuple[str | None, ErrorCode | None]:
        """(slug, None) or (None, error code) for what can be decided at once.

        The one Origin check of every live transport (WebSocket, SSE, long-poll GET and
        POST): a browser page of another origin must not read or post as our user.
        """
        slug = room_slug(request)
        if slug is None:
            return None, ErrorCode.NOT_FOUND
        trusted = getattr(settings, "CSRF_TRUSTED_ORIGINS", [])
        if not origin_allowed(header(request, b"origin"), own_origin(request), trusted):
            return None, ErrorCode.FORBIDDEN
        return slug, None

    def prepare(self, request: Request, *params: str) -> tuple[str, list[int | None]] | None:
        """The slug and the integer query ``params``, or None once an error is written."""
        slug, refusal = self.check(request)
        if refusal is not None:
            write_error(request, refusal)
            return None
        try:
            values = [query_int(request, name) for name in params]
        except ValueError as error:
            write_error(request, ErrorCode.BAD_REQUEST, str(error))
            return None
        return slug, values

    def access(self, request: Request, slug: str) -> defer.Deferred[Access]:
        return self.live.authorizer.access(session_key(request), slug)

    @staticmethod
    def refusal(access: Access) -> ErrorCode | None:
        if access.room is None:
            return ErrorCode.NOT_FOUND
        if not access.can_read:
            return ErrorCode.FORBIDDEN
        return None
