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

from chat.live.auth import origin_allowed
from chat.live.records import Access
from chat.slug import SLUG_PATTERN

_SLUG = re.compile(rf"^{SLUG_PATTERN}\Z")
STATUS_OF = {
    "bad_request": 400,
    "forbidden": 403,
    "not_found": 404,
    "too_large": 413,
    "rate_limited": 429,
    "unavailable": 503,
}
DETAIL_OF = {
    "bad_request": "The request is malformed.",
    "forbidden": "You may not do that in this room.",
    "not_found": "No such room.",
    "too_large": "The message is too long.",
    "rate_limited": "Too many messages; slow down.",
    "unavailable": "The service is temporarily unavailable; retry later.",
}


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
    raw = values[-1]
    if not raw.isdigit() or len(raw) > 18:
        raise ValueError(name)
    return int(raw)


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


def error_body(code: str, detail: str | None = None) -> dict:
    return {"error": {"code": code, "detail": detail or DETAIL_OF[code]}}


def write_error(request: Request, code: str, detail: str | None = None) -> None:
    write_json(request, STATUS_OF[code], error_body(code, detail))


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

    def check(self, request: Request) -> tuple[str | None, str | None]:
        """(slug, None) or (None, error code) for what can be decided at once."""
        slug = room_slug(request)
        if slug is None:
            return None, "not_found"
        origin = header(request, b"origin")
        if not origin_allowed(origin, settings.ALLOWED_HOSTS):
            return None, "forbidden"
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
            write_error(request, "bad_request", f"{error} must be a non-negative integer.")
            return None
        return slug, values

    def access(self, request: Request, slug: str) -> defer.Deferred[Access]:
        return self.live.authorizer.access(session_key(request), slug)

    @staticmethod
    def refusal(access: Access) -> str | None:
        if access.room is None:
            return "not_found"
        if not access.can_read:
            return "forbidden"
        return None
