"""The JSON API (PROTOCOL.md): room list and history pages, thin over chat.log.

Every error has the protocol's shape ``{"error": {"code": ..., "detail": ...}}``, built by
``chat.live.records.error_body`` as on every other transport; numbers in the query are
read by the same parser as the live transports' (``chat.live.wire.parse_int``).
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt

from chat import access, log
from chat.live.records import ErrorCode, error_body
from chat.live.wire import MAX_INT, parse_int
from chat.models import Room

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_SEQ = MAX_INT
_SAFE_METHODS = ("GET", "HEAD")


def error(code: ErrorCode, detail: str | None = None, status: int | None = None) -> JsonResponse:
    """The protocol's error answer; the status is the code's unless given (405)."""
    return JsonResponse(error_body(code, detail), status=status or code.status)


def _method_not_allowed() -> JsonResponse:
    # PROTOCOL.md's error codes are a closed list; a wrong method is a bad request.
    response = error(ErrorCode.BAD_REQUEST, "Only GET is allowed here.", status=405)
    response["Allow"] = ", ".join(_SAFE_METHODS)
    return response


def query_int(raw: str | None, name: str) -> int | None:
    """``raw`` as a non-negative integer; None when absent; ValueError otherwise."""
    if raw is None:
        return None
    return parse_int(raw, name, minimum=0, maximum=MAX_SEQ)


# The API only reads, so CSRF protection buys nothing here; exempting it lets a POST get
# the protocol's JSON 405 instead of Django's HTML CSRF page.
@csrf_exempt
@never_cache
def rooms(request: HttpRequest) -> JsonResponse:
    """``GET /api/rooms/``: the rooms the user may read (public + member of), archived too."""
    if request.method not in _SAFE_METHODS:
        return _method_not_allowed()
    rows = Room.objects.visible_to(request.user).values(
        "slug", "name", "description", "is_public", "is_archived", "last_seq"
    )
    return JsonResponse({"rooms": list(rows)})


@csrf_exempt
@never_cache
def messages(request: HttpRequest, slug: str) -> JsonResponse:
    """``GET /api/rooms/<slug>/messages/?before=<seq>&limit=<n>``: one page of the log.

    Returns ``{"events": [...], "has_more": bool}``, newest last: the ``limit`` (default
    50) events with ``seq < before`` (the newest ones without ``before``), including
    ``deleted`` events; a deleted message has ``"body": ""`` and ``"deleted": true``.
    ``has_more`` says whether older events exist before the first one returned.

    ``before`` and ``limit`` must be non-negative integers (anything else is a 400);
    PROTOCOL.md: a ``limit`` above 200 is treated as 200, so a client asking for more
    gets a full page and ``has_more`` tells it whether to ask again. Unknown room: 404; a
    private room the user may not read (anonymous included): 403.
    """
    if request.method not in _SAFE_METHODS:
        return _method_not_allowed()
    try:
        before = query_int(request.GET.get("before"), "before")
        limit = query_int(request.GET.get("limit"), "limit")
    except ValueError as exc:
        return error(ErrorCode.BAD_REQUEST, str(exc))
    limit = DEFAULT_LIMIT if limit is None else min(limit, MAX_LIMIT)

    room = Room.objects.filter(slug=slug).first()
    if room is None:
        return error(ErrorCode.NOT_FOUND)
    if not access.may_read(room, access.user_id_of(request.user)):
        return error(ErrorCode.FORBIDDEN, "This room is private.")

    # One extra row tells whether anything older exists, without a second query.
    events = log.read_page(room.id, room.slug, before, limit + 1)
    has_more = len(events) > limit
    if has_more:
        events = events[1:]
    return JsonResponse({"events": events, "has_more": has_more})
