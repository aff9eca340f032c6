"""The operations of the OpenAPI description (chat/api/openapi_schema.py has the shapes):
every ``/api/`` path, its parameters, bodies, answers and errors.

Security: reads work for anonymous users too (a public room's history), so they list
"no credentials" beside the session cookie and the bearer token; writes need the
session cookie with ``X-CSRFToken``, or a bearer token (PROTOCOL.md "Authentication").
A bad, revoked or expired token is 401 on every path. A method a path does not list is
405 ``bad_request`` with ``Allow``.
"""

from __future__ import annotations

from chat.api.http import MAX_SEQ
from chat.api.openapi_schema import (
    CLIENT_ID,
    COUNT,
    SLUG_PATTERN,
    STRING,
    USERNAME,
    body_of,
    nullable,
    obj,
    ref,
)
from chat.live.validation import MAX_ATTACHMENTS
from chat.moderation import MAX_MUTE_MINUTES, MAX_REASON_CHARS, MAX_SLOW_MODE_SECONDS

READ_SECURITY = [{}, {"sessionCookie": []}, {"bearerToken": []}]
WRITE_SECURITY = [{"bearerToken": []}, {"sessionCookie": [], "csrfHeader": []}]
READ_ERRORS = (400, 401, 403, 404)
WRITE_ERRORS = (400, 401, 403, 404, 413, 429, 503)

ERROR_TEXT = {
    400: "bad_request: a malformed parameter or body (a JSON body of the wrong shape too)",
    401: "unauthorized: a bad, revoked or expired bearer token",
    403: "forbidden: anonymous, no CSRF token, not a member, archived, muted, banned",
    404: "not_found: no such room, message, user",
    413: "too_large: the body is over the limit",
    429: "rate_limited: over the write rate limit or slow mode (see retry_after)",
    503: "unavailable: the database or the bus is down; retry later",
}

RESPONSES = {
    str(status): {
        "description": text,
        "content": {"application/json": {"schema": ref("Error")}},
        **(
            {"headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}}}
            if status == 429
            else {}
        ),
    }
    for status, text in ERROR_TEXT.items()
}


def _query(name: str, schema: dict, text: str, required: bool = False) -> dict:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "schema": schema,
        "description": text,
    }


SLUG = {
    "name": "slug",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": SLUG_PATTERN},
    "example": "lobby",
}
SEQ_IN_PATH = {
    "name": "seq",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_SEQ},
    "example": 1,
}
SEQ_QUERY = {"type": "integer", "minimum": 0, "maximum": MAX_SEQ}


def or_empty(schema: dict) -> dict:
    return {"anyOf": [schema, {"const": ""}]}


def op(
    op_id: str,
    summary: str,
    ok: dict[int, dict],
    *,
    write: bool = False,
    params: list | None = None,
    body: dict | None = None,
    media: str = "application/json",
    errors: tuple[int, ...] | None = None,
) -> dict:
    """One operation: its 2xx answers (status -> schema) and its errors."""
    responses = {
        str(status): {"description": "OK", "content": {"application/json": {"schema": schema}}}
        for status, schema in ok.items()
    }
    for status in errors or (WRITE_ERRORS if write else READ_ERRORS):
        responses[str(status)] = {"$ref": f"#/components/responses/{status}"}
    operation = {
        "operationId": op_id,
        "summary": summary,
        "security": WRITE_SECURITY if write else READ_SECURITY,
        "responses": responses,
    }
    if params:
        operation["parameters"] = params
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {media: {"schema": body}}}
    return operation


WRITE = ref("WriteResult")
SEND = body_of(
    {"body": {"type": "string"}},
    {
        "client_id": CLIENT_ID,
        "reply_to": nullable({"type": "integer", "minimum": 1, "maximum": MAX_SEQ}),
        "attachments": {"type": "array", "items": STRING, "maxItems": MAX_ATTACHMENTS},
    },
)
REASON = nullable({"type": "string", "maxLength": MAX_REASON_CHARS})


def _moderation(action: str, fields: dict, optional: dict | None = None) -> dict:
    return body_of({"action": {"const": action}, **fields}, optional)


MODERATION = {
    "oneOf": [
        _moderation(
            "mute",
            {
                "user": USERNAME,
                "minutes": {"type": "integer", "minimum": 1, "maximum": MAX_MUTE_MINUTES},
            },
            {"reason": REASON},
        ),
        _moderation("unmute", {"user": USERNAME}, {"reason": REASON}),
        _moderation("kick", {"user": USERNAME}, {"reason": REASON}),
        _moderation("ban", {"user": USERNAME}, {"reason": REASON}),
        _moderation("unban", {"user": USERNAME}, {"reason": REASON}),
        _moderation(
            "slow_mode",
            {"seconds": {"type": "integer", "minimum": 0, "maximum": MAX_SLOW_MODE_SECONDS}},
            {"reason": REASON},
        ),
    ]
}

ROOM = ref("Room")

PATHS: dict[str, dict] = {
    "/api/rooms/": {
        "get": op(
            "listRooms",
            "The rooms the user may read (public ones, and private ones they belong to).",
            {200: obj({"rooms": {"type": "array", "items": ROOM}})},
            errors=(401,),
        )
    },
    "/api/rooms/{slug}/": {
        "parameters": [SLUG],
        "get": op("getRoom", "One room object.", {200: ROOM}),
    },
    "/api/rooms/{slug}/messages/": {
        "parameters": [SLUG],
        "get": op(
            "getHistory",
            "A history page in seq order: without after, the newest limit events below "
            "before; with after, the oldest limit above it.",
            {200: ref("Page")},
            params=[
                _query("before", SEQ_QUERY, "events below this seq"),
                _query("after", SEQ_QUERY, "events above this seq"),
                _query("limit", {**SEQ_QUERY}, "page size, default 50; above 200 is 200"),
            ],
        ),
        "post": op(
            "sendMessage",
            "Send a message; 200 with the original for a client_id already stored.",
            {201: WRITE, 200: WRITE},
            write=True,
            body=SEND,
        ),
    },
    "/api/rooms/{slug}/messages/{seq}/": {
        "parameters": [SLUG, SEQ_IN_PATH],
        "get": op("getMessage", "The event at seq.", {200: obj({"event": ref("Event")})}),
        "patch": op(
            "editMessage",
            "Edit one's own message.",
            {200: WRITE},
            write=True,
            body=body_of({"body": {"type": "string"}}, {"client_id": CLIENT_ID}),
        ),
        "delete": op(
            "deleteMessage",
            "Delete a message (the author's, or any as a moderator).",
            {200: WRITE},
            write=True,
            params=[_query("client_id", {"type": "string", "maxLength": 64}, "idempotency key")],
        ),
    },
    "/api/rooms/{slug}/messages/{seq}/reactions/": {
        "parameters": [SLUG, SEQ_IN_PATH],
        "post": op(
            "react",
            "Add or remove a reaction; seq null when it changed nothing.",
            {200: WRITE},
            write=True,
            body=body_of(
                {"emoji": {"type": "string"}, "op": {"type": "string", "enum": ["add", "remove"]}},
                {"client_id": CLIENT_ID},
            ),
        ),
    },
    "/api/rooms/{slug}/read/": {
        "parameters": [SLUG],
        "post": op(
            "markRead",
            "Move the user's read position (only forward; clamped to last_seq).",
            {200: obj({"read_seq": COUNT, "unread": COUNT, "mentions": COUNT})},
            write=True,
            body=body_of({"seq": {"type": "integer", "minimum": 0, "maximum": MAX_SEQ}}),
        ),
    },
    "/api/rooms/{slug}/join/": {
        "parameters": [SLUG],
        "post": op("joinRoom", "Join a public room.", {200: ROOM}, write=True),
    },
    "/api/rooms/{slug}/leave/": {
        "parameters": [SLUG],
        "post": op("leaveRoom", "Leave a room.", {200: ROOM}, write=True),
    },
    "/api/rooms/{slug}/uploads/": {
        "parameters": [SLUG],
        "post": op(
            "upload",
            "Upload an attachment (multipart, field file) to list in a send.",
            {201: obj({"upload": ref("Attachment")})},
            write=True,
            media="multipart/form-data",
            body=body_of({"file": {"type": "string", "format": "binary"}}),
        ),
    },
    "/api/rooms/{slug}/moderation/": {
        "parameters": [SLUG],
        "post": op(
            "moderate",
            "Mute, unmute, kick, ban, unban, slow mode (moderators only).",
            {200: obj({"action": ref("ModerationAction"), "room": ROOM})},
            write=True,
            body=MODERATION,
        ),
    },
    "/api/dms/": {
        "post": op(
            "openDirect",
            "The direct room with that user: 201 when made by this request, else 200.",
            {201: ROOM, 200: ROOM},
            write=True,
            body=body_of({"user": USERNAME}),
        ),
    },
    "/api/search/": {
        "get": op(
            "search",
            "Full-text search over every message the user may read, newest first.",
            {
                200: obj(
                    {
                        "results": {"type": "array", "items": ref("SearchResult")},
                        "has_more": {"type": "boolean"},
                    }
                )
            },
            params=[
                _query("q", {"type": "string", "minLength": 1}, "the words", required=True),
                # Here an empty value is no value (the search page's form sends them).
                _query(
                    "room",
                    {"type": "string", "pattern": "^(|" + SLUG_PATTERN[1:-1] + ")$"},
                    "only this room",
                ),
                _query("before", or_empty(SEQ_QUERY), "within room: results below this seq"),
                _query("cursor", or_empty(SEQ_QUERY), "the last result's cursor: the next page"),
                _query(
                    "limit",
                    or_empty({"type": "integer", "minimum": 1, "maximum": MAX_SEQ}),
                    "default 20, above 100 is 100",
                ),
            ],
        )
    },
    "/api/me/": {
        "get": op("me", "The signed-in user and their rooms with counts.", {200: ref("Me")}),
    },
    "/api/openapi.json": {
        "get": {
            "operationId": "openapi",
            "summary": "This description.",
            "security": READ_SECURITY,
            "responses": {
                "200": {
                    "description": "OK",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        }
    },
}

__all__ = ["COUNT", "PATHS", "RESPONSES"]
