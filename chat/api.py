"""The JSON API (PROTOCOL.md): room list and history pages, thin over chat.log.

Every error has the protocol's shape ``{"error": {"code": ..., "detail": ...}}``.
"""

from __future__ import annotations

import re

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt

from chat import log
from chat.models import Room

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
# Seqs are stored as 64-bit integers; anything larger is not a seq (and would overflow
# the database's integer comparison) so it is a bad request, not an empty page.
MAX_SEQ = 2**63 - 1
_DIGITS = re.compile(r"[0-9]{1,19}")
_SAFE_METHODS = ("GET", "HEAD")


def error(status: int, code: str, detail: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "detail": detail}}, status=status)


def _method_not_allowed() -> JsonResponse:
    # PROTOCOL.md's error codes are a closed list; a wrong method is a bad request.
    response = error(405, "bad_request", "Only GET is allowed here.")
    response["Allow"] = ", ".join(_SAFE_METHODS)
    return response


def parse_positive_int(raw: str | None, name: str, maximum: int) -> int | None:
    """``raw`` as an integer in 1..maximum; None when absent; ValueError otherwise."""
    if raw is None:
        return None
    if not _DIGITS.fullmatch(raw) or not 1 <= int(raw) <= maximum:
        raise ValueError(f"{name} must be an integer from 1 to {maximum}.")
    return int(raw)


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

    ``before`` and ``limit`` must be positive integers; a ``limit`` over 200 is a 400
    ``bad_request`` rather than silently clamped, so a client never mistakes a short page
    for the end of the log. Unknown room: 404; a private room the user may not read
    (anonymous included): 403.
    """
    if request.method not in _SAFE_METHODS:
        return _method_not_allowed()
    try:
        before = parse_positive_int(request.GET.get("before"), "before", MAX_SEQ)
        limit = parse_positive_int(request.GET.get("limit"), "limit", MAX_LIMIT)
    except ValueError as exc:
        return error(400, "bad_request", str(exc))
    if limit is None:
        limit = DEFAULT_LIMIT

    room = Room.objects.filter(slug=slug).first()
    if room is None:
        return error(404, "not_found", "No such room.")
    if not room.can_read(request.user):
        return error(403, "forbidden", "This room is private.")

    # One extra row tells whether anything older exists, without a second query.
    events = log.read_page(room.id, room.slug, before, limit + 1)
    has_more = len(events) > limit
    if has_more:
        events = events[1:]
    return JsonResponse({"events": events, "has_more": has_more})
