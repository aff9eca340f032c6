"""``GET /api/openapi.json``: the OpenAPI 3.1 description of the JSON API (PROTOCOL.md),
built once from chat/api/openapi_schema.py (shapes) and openapi_paths.py (operations)."""

from __future__ import annotations

from functools import cache

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from chat.api.http import endpoint, error
from chat.api.openapi_paths import PATHS, RESPONSES
from chat.api.openapi_schema import SCHEMAS
from chat.live.records import ErrorCode

VERSION = "2"


@cache
def description() -> dict:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Parley HTTP API",
            "version": VERSION,
            "description": "The JSON API of Parley (docs/PROTOCOL.md). Errors are "
            '{"error": {"code", "detail"}}; a method a path does not list is 405 '
            "bad_request with Allow.",
        },
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "responses": RESPONSES,
            "securitySchemes": {
                "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "sessionid"},
                "csrfHeader": {"type": "apiKey", "in": "header", "name": "X-CSRFToken"},
                "bearerToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API token (prl_...) from /accounts/tokens/.",
                },
            },
        },
    }


@endpoint("GET")
def openapi(request: HttpRequest) -> JsonResponse:
    return JsonResponse(description(), json_dumps_params={"ensure_ascii": False})


@csrf_exempt  # nothing is done here: no CSRF page before the JSON 404
def api_not_found(request: HttpRequest) -> JsonResponse:
    """Any path under /api/ that is none of the described ones (a slug that is not one,
    a path that does not exist): the protocol's 404 in JSON, whatever the method."""
    return error(ErrorCode.NOT_FOUND, "No such API path.")
