"""Plain helpers of the live resources: reading a request, and writing a JSON answer.

Every live URL is ``/<transport>/rooms/<slug>/``. What the three transports do with these
(the checks before a stream starts, the open path, refusals) is chat/live/transport.py;
this module only reads and writes, and holds no state.
"""

from __future__ import annotations

import json
import math
import re

from django.conf import settings
from twisted.web.server import Request

from chat.live.auth import Origin, server_origin
from chat.live.records import ErrorCode, error_body
from chat.live.wire import parse_int
from chat.slug import SLUG_PATTERN
from chat.tokens import bearer_secret, credential

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
    """The credential a live connection is opened with: a bearer token's credential key
    (chat/tokens.py; a bad token's too, which signs in nobody: 401), else the Django
    session cookie. A token in the query string is never read."""
    secret = bearer_secret(header(request, b"authorization"))
    if secret is not None:
        return credential(secret)
    raw = request.getCookie(settings.SESSION_COOKIE_NAME.encode())
    if not raw:
        return None
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        return None


def client_address(request: Request) -> str:
    """The client's address, as a trusted proxy reports it when there is one.

    The server (project/request.py) removes X-Forwarded-For from anyone but a trusted
    proxy, so one that is here is believed; the proxy appends the address it saw, so the
    last entry is the one it vouches for.
    """
    forwarded = header(request, b"x-forwarded-for")
    if forwarded:
        claimed = forwarded.rsplit(",", 1)[-1].strip()
        if claimed:
            return claimed
    return str(getattr(request.getClientAddress(), "host", "-"))


def own_origin(request: Request) -> Origin | None:
    """The origin this request was made to, as the browser saw it.

    The scheme is the one it came with, or a trusted proxy's X-Forwarded-Proto: the
    server (project/request.py) removes that header from anyone else, so one that is
    here is believed. Several proxies list several schemes; the first is the client's.
    """
    scheme = "https" if request.isSecure() else "http"
    forwarded = header(request, b"x-forwarded-proto")
    if forwarded:
        claimed = forwarded.split(",", 1)[0].strip().lower()
        if claimed in ("http", "https"):
            scheme = claimed
    return server_origin(scheme, header(request, b"host"), settings.ALLOWED_HOSTS)


def write_json(request: Request, status: int, body: dict | bytes) -> None:
    """The whole answer of a request. The caller knows the client is still there."""
    if request.finished:
        return
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    request.setHeader(b"content-length", b"%d" % len(data))
    request.write(data)
    request.finish()


def write_error(
    request: Request,
    code: ErrorCode | str,
    detail: str | None = None,
    *,
    status: int | None = None,
    **extra: object,
) -> None:
    """``{"error": ...}`` with the code's status (or ``status``, for the 405)."""
    code = ErrorCode(code)
    retry_after = extra.get("retry_after")
    if isinstance(retry_after, int | float) and not isinstance(retry_after, bool):
        # As the API's (chat/api/http.py): a rate limit or a mute also says when, in HTTP.
        request.setHeader(b"Retry-After", str(max(1, math.ceil(retry_after))).encode())
    write_json(request, status or code.status, error_body(code, detail, **extra))
