"""A database outage, answered as the protocol's ``unavailable`` by every Django door.

PROTOCOL.md: while the database (or the bus) is down, requests get 503 ``unavailable``
and nothing is lost. The live transports do it in chat/live/store.py; this is the same
rule for what Django serves. An outage can surface anywhere a request reads the database
(the token middleware, a view, a page's template), so it is answered in three places,
each of which a request always passes: ``answer`` in the API's ``endpoint`` wrapper and
in the token middleware (both also run inside a host's own Django project), and
``server_error``, Parley's project's ``handler500``, for everything else. A chaos run
(bench/chaos.py) found the token middleware's read answering Django's HTML 500 page
while PostgreSQL restarted.
"""

from __future__ import annotations

import sys

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults

from chat.live.records import ErrorCode, error_body

# What the database (or its driver) raises when it cannot be used now, as in
# chat/live/store.py: the database is down, unreachable, restarting or locked.
OUTAGES = (OperationalError, InterfaceError)
RETRY_AFTER_SECONDS = 1


def answer() -> JsonResponse:
    """503 ``unavailable``, with a Retry-After."""
    response = JsonResponse(error_body(ErrorCode.UNAVAILABLE), status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    return response


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: an outage is a 503 ``unavailable`` (JSON for the API, a short page
    for a browser); anything else is Django's own 500 (a bug, which the protocol has no
    code for)."""
    if isinstance(sys.exc_info()[1], OUTAGES):
        if request.path.startswith("/api/"):
            return answer()
        response = HttpResponse(
            "<!doctype html><title>Unavailable</title>"
            "<p>Parley is unavailable for a moment. Please try again shortly.</p>",
            status=503,
        )
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    return defaults.server_error(request)
