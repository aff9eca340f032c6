"""Search: the API's ``GET /api/search/`` and the page ``/search/`` (PROTOCOL.md
"Search (v2)"), both over chat/search.py.

``GET /api/search/?q=&room=&before=&cursor=&limit=`` answers
``{"results": [...], "has_more": bool}``. Signed-in users only: anonymous is ``403``
``forbidden``. ``room`` unknown is ``404``, one the user may not read ``403`` (as
history). ``limit`` default 20, above 100 treated as 100; ``before``, ``cursor`` and
``limit`` that are not integers (``limit`` from 1) and a ``q`` with nothing to search are
``400`` ``bad_request``. Paging: ``cursor=<the last result's cursor>`` across rooms,
``before=<seq>`` within ``room``.
"""

from __future__ import annotations

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from chat import access, search
from chat.api.http import MAX_SEQ, ApiError, endpoint, readable_room
from chat.live.records import ErrorCode
from chat.live.wire import parse_int


def _ints(request: HttpRequest) -> dict:
    """``before``, ``cursor`` and ``limit`` from the query; ValueError for a bad one."""

    def read(name: str, minimum: int) -> int | None:
        raw = request.GET.get(name)
        if raw is None or raw == "":
            return None
        return parse_int(raw, name, minimum=minimum, maximum=MAX_SEQ)

    limit = read("limit", 1)
    return {
        "before": read("before", 0),
        "cursor": read("cursor", 0),
        "limit": search.DEFAULT_LIMIT if limit is None else min(limit, search.MAX_LIMIT),
    }


@endpoint("GET")
def search_api(request: HttpRequest) -> JsonResponse:
    if access.user_id_of(request.user) is None:
        raise ApiError(ErrorCode.FORBIDDEN, "Sign in to search.")
    try:
        numbers = _ints(request)
    except ValueError as exc:
        raise ApiError(ErrorCode.BAD_REQUEST, str(exc)) from None
    slug = request.GET.get("room") or None
    room = readable_room(request, slug) if slug is not None else None
    try:
        results, has_more = search.search(request.user, request.GET.get("q", ""), room, **numbers)
    except search.SearchError as exc:
        raise ApiError(ErrorCode.BAD_REQUEST, str(exc)) from None
    return JsonResponse({"results": results, "has_more": has_more})


@require_safe
def search_page(request: HttpRequest) -> HttpResponse:
    """The results page: the same search, drawn by the server (no JavaScript)."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    q = request.GET.get("q", "")
    context: dict = {
        "q": q,
        "search_q": q,
        "results": [],
        "has_more": False,
        "error": None,
        "next": None,
    }
    if q.strip():
        try:
            numbers = _ints(request)
            results, has_more = search.search(request.user, q, **numbers)
        except (ValueError, search.SearchError) as exc:
            context["error"] = str(exc)
        else:
            context.update(results=results, has_more=has_more)
            if has_more and results:
                context["next"] = results[-1]["cursor"]
    status = 400 if context["error"] else 200
    return render(request, "chat/search.html", context, status=status)
