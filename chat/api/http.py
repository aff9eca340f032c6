"""What every JSON API view shares: errors, methods, sign-in, CSRF, bodies, the room.

Every error has the protocol's shape ``{"error": {"code": ..., "detail": ...}}``, built by
``chat.live.records.error_body`` as on every other transport, with the code's status
(``ErrorCode.status``). A view raises ``ApiError`` anywhere and ``endpoint`` answers it, so
no path of a view can forget the shape. Numbers in the query are read by the same parser
as the live transports' (``chat.live.wire.parse_int``), JSON bodies by the same as their
frames' (``chat.live.wire.parse_frame``).

Writes need a signed-in user and, with the session cookie, a CSRF token: Django's check,
answered in the protocol's JSON (403 ``forbidden``) rather than Django's HTML page, which
is why the views are ``csrf_exempt`` and ``endpoint`` runs the check itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt

from chat import access, outages
from chat.live.records import ErrorCode, SendResult, error_body
from chat.live.wire import MAX_INT, FrameError, parse_frame, parse_int
from chat.models import Room

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_SEQ = MAX_INT
_SAFE_METHODS = ("GET", "HEAD")


class ApiError(Exception):
    """Raised by a view: answered with the protocol's error (and ``extra`` fields)."""

    def __init__(self, code: ErrorCode, detail: str | None = None, **extra: object) -> None:
        super().__init__(detail or code.detail)
        self.code, self.detail, self.extra = code, detail, extra


def error(
    code: ErrorCode, detail: str | None = None, status: int | None = None, **extra: object
) -> JsonResponse:
    """The protocol's error answer; the status is the code's unless given (405)."""
    response = JsonResponse(error_body(code, detail, **extra), status=status or code.status)
    retry_after = extra.get("retry_after")
    if isinstance(retry_after, int | float):
        response["Retry-After"] = str(max(1, math.ceil(retry_after)))
    elif code == ErrorCode.UNAVAILABLE:
        response["Retry-After"] = str(outages.RETRY_AFTER_SECONDS)
    return response


def query_int(raw: str | None, name: str) -> int | None:
    """``raw`` as a non-negative integer; None when absent; ValueError otherwise."""
    if raw is None:
        return None
    return parse_int(raw, name, minimum=0, maximum=MAX_SEQ)


class _CsrfCheck(CsrfViewMiddleware):
    """Django's own CSRF check, telling the reason instead of rendering its HTML page."""

    def _reject(self, request, reason):
        return reason


def csrf_problem(request: HttpRequest) -> str | None:
    """Why the request fails Django's CSRF check (None: it passes)."""
    check = _CsrfCheck(lambda _request: None)
    check.process_request(request)
    return check.process_view(request, None, (), {})


def endpoint(*methods: str) -> Callable:
    """A JSON API view answering ``methods`` (GET also answers HEAD): any other method is
    the protocol's 405 with ``Allow``; a write (any other than GET) needs a signed-in
    user and passes the CSRF check; ``ApiError`` becomes its error answer."""
    allowed = tuple(dict.fromkeys(("GET", "HEAD") if m == "GET" else (m,) for m in methods))
    allowed = tuple(m for group in allowed for m in group)

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def answer(request: HttpRequest, *args, **kwargs) -> JsonResponse:
            if request.method not in allowed:
                response = error(
                    ErrorCode.BAD_REQUEST, f"Only {', '.join(allowed)} here.", status=405
                )
                response["Allow"] = ", ".join(allowed)
                return response
            try:
                if request.method not in _SAFE_METHODS:
                    # A Bearer token request passes: chat/token_auth.py sets Django's
                    # _dont_enforce_csrf_checks, which this check honours.
                    if csrf_problem(request) is not None:
                        raise ApiError(ErrorCode.FORBIDDEN, "CSRF check failed: send X-CSRFToken.")
                    if access.user_id_of(request.user) is None:
                        raise ApiError(ErrorCode.FORBIDDEN, "Sign in to do that.")
                return view(request, *args, **kwargs)
            except ApiError as exc:
                return error(exc.code, exc.detail, **exc.extra)
            except outages.OUTAGES:
                return outages.answer()

        # The CSRF check is made above, in JSON; every answer is the user's own.
        return csrf_exempt(never_cache(answer))

    return decorate


def json_body(request: HttpRequest) -> dict:
    """The request's body as a JSON object (the same parser and bound as the long-poll
    POST's: ``CHAT_MAX_FRAME_BYTES``, 413 before the body is read when its length says)."""
    limit = settings.CHAT_MAX_FRAME_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        raise ApiError(ErrorCode.TOO_LARGE, f"The body is over {limit} bytes.")
    data = request.read(limit + 1)
    if len(data) > limit:
        raise ApiError(ErrorCode.TOO_LARGE, f"The body is over {limit} bytes.")
    try:
        return parse_frame(data)
    except FrameError as exc:
        raise ApiError(ErrorCode.BAD_REQUEST, str(exc)) from None


def readable_room(request: HttpRequest, slug: str) -> Room:
    """The room ``slug`` if the user may read it: else 404 (no such room) or 403."""
    room = Room.objects.filter(slug=slug).first()
    if room is None:
        raise ApiError(ErrorCode.NOT_FOUND)
    if not access.may_read(room, access.user_id_of(request.user)):
        raise ApiError(ErrorCode.FORBIDDEN, "This room is private.")
    return room


def seq_in_path(raw: str) -> int:
    """A message's seq from the URL: an integer from 1; anything else is a 400."""
    try:
        return parse_int(raw, "seq", minimum=1, maximum=MAX_SEQ)
    except ValueError as exc:
        raise ApiError(ErrorCode.BAD_REQUEST, str(exc)) from None


def failed(result: SendResult) -> ApiError:
    """A write's error as the API's (``retry_after`` where the hub gave one)."""
    extra = {} if result.retry_after is None else {"retry_after": result.retry_after}
    return ApiError(ErrorCode(result.error), result.detail, **extra)
