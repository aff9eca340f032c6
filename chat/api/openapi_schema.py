"""The OpenAPI 3.1 description of every ``/api/`` endpoint (PROTOCOL.md "HTTP API"), as
data, in one place: ``chat/api/openapi.py`` serves it at ``/api/openapi.json``.

Kept true by tests/integration/test_openapi_schemathesis.py (schemathesis against a
running server: every answer must match what is written here) and tests/unit/
test_openapi.py (every ``/api/`` URL of chat/urls.py is described, and nothing else). So
a change of an answer's shape is a change of this file in the same commit.

Request bodies allow fields they do not name (the server ignores them, as v1 clients
rely on); answers name every field they have.
"""

from __future__ import annotations

from chat.live.records import ErrorCode
from chat.live.validation import MAX_CLIENT_ID_CHARS
from chat.live.wire import MAX_INT

SLUG_PATTERN = "^[a-z0-9][a-z0-9-]{0,49}$"
EVENT_KINDS = ("message", "edited", "reaction", "deleted")


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: dict) -> dict:
    return {"anyOf": [schema, {"type": "null"}]}


def obj(required: dict, optional: dict | None = None, closed: bool = True) -> dict:
    """An object with these properties (``required`` present in every answer)."""
    schema = {
        "type": "object",
        "properties": {**required, **(optional or {})},
        "required": list(required),
    }
    if closed:
        schema["additionalProperties"] = False
    return schema


def body_of(required: dict, optional: dict | None = None) -> dict:
    """A request body: unknown fields are allowed (and ignored by the server)."""
    return obj(required, optional, closed=False)


STRING = {"type": "string"}
TS = {"type": "string", "format": "date-time"}
SEQ = {"type": "integer", "minimum": 1, "maximum": MAX_INT}
COUNT = {"type": "integer", "minimum": 0}
CLIENT_ID = nullable({"type": "string", "maxLength": MAX_CLIENT_ID_CHARS})
USERNAME = {"type": "string", "minLength": 1, "maxLength": 150}

_COMMON_EVENT = {"room": STRING, "seq": SEQ}

SCHEMAS: dict[str, dict] = {
    "Error": obj(
        {
            "error": obj(
                {
                    "code": {"type": "string", "enum": [str(c) for c in ErrorCode]},
                    "detail": STRING,
                },
                {"retry_after": {"type": "number", "minimum": 0}},
            )
        }
    ),
    "Room": obj(
        {
            "slug": {"type": "string", "pattern": SLUG_PATTERN},
            "name": STRING,
            "description": STRING,
            "kind": {"type": "string", "enum": ["room", "direct"]},
            "is_public": {"type": "boolean"},
            "is_archived": {"type": "boolean"},
            "last_seq": COUNT,
            "slow_mode_seconds": COUNT,
        },
        # Signed-in users only.
        {
            "is_member": {"type": "boolean"},
            "read_seq": nullable(COUNT),
            "unread": COUNT,
            "mentions": COUNT,
            "is_moderator": {"type": "boolean"},
        },
    ),
    "Attachment": obj(
        {
            "id": STRING,
            "name": STRING,
            "size": COUNT,
            "content_type": STRING,
            "url": STRING,
            "width": nullable(COUNT),
            "height": nullable(COUNT),
            "thumbnail_url": nullable(STRING),
        }
    ),
    "Reactions": {
        "type": "array",
        "items": obj({"emoji": STRING, "users": {"type": "array", "items": STRING}}),
    },
    "MessageEvent": obj(
        {
            "type": {"const": "message"},
            **_COMMON_EVENT,
            "user": nullable(STRING),
            "body": STRING,
            "html": STRING,
            "mentions": {"type": "array", "items": STRING},
            "reply_to": nullable(SEQ),
            "attachments": {"type": "array", "items": ref("Attachment")},
            "ts": TS,
            "client_id": CLIENT_ID,
        },
        # The message's current state, in history and in a write's answer.
        {
            "edited_at": nullable(TS),
            "reactions": ref("Reactions"),
            "deleted": {"const": True},
        },
    ),
    "EditedEvent": obj(
        {
            "type": {"const": "edited"},
            **_COMMON_EVENT,
            "target": SEQ,
            "user": nullable(STRING),
            "body": STRING,
            "html": STRING,
            "mentions": {"type": "array", "items": STRING},
            "ts": TS,
            "client_id": CLIENT_ID,
        }
    ),
    "ReactionEvent": obj(
        {
            "type": {"const": "reaction"},
            **_COMMON_EVENT,
            "target": SEQ,
            "user": nullable(STRING),
            "emoji": STRING,
            "op": {"type": "string", "enum": ["add", "remove"]},
            "ts": TS,
            "client_id": CLIENT_ID,
        }
    ),
    "DeletedEvent": obj(
        {"type": {"const": "deleted"}, **_COMMON_EVENT, "target": SEQ, "user": nullable(STRING)}
    ),
    "Event": {
        "oneOf": [ref(f"{kind.capitalize()}Event") for kind in EVENT_KINDS],
    },
    "WriteResult": obj(
        # seq null: a reaction that changed nothing (then event is null too).
        {"seq": nullable(SEQ), "event": nullable(ref("Event"))}
    ),
    "Page": obj(
        {"events": {"type": "array", "items": ref("Event")}, "has_more": {"type": "boolean"}}
    ),
    "Me": obj(
        {
            "user": STRING,
            "is_staff": {"type": "boolean"},
            "is_bot": {"type": "boolean"},
            "rooms": {"type": "array", "items": ref("Room")},
        }
    ),
    "SearchResult": obj(
        {
            "room": STRING,
            "seq": SEQ,
            "user": nullable(STRING),
            "body": STRING,
            "html": STRING,
            "ts": TS,
            "highlight": STRING,
            "cursor": {"type": "integer", "minimum": 0},
        }
    ),
    "ModerationAction": obj(
        {
            "action": {
                "type": "string",
                "enum": ["mute", "unmute", "kick", "ban", "unban", "slow_mode"],
            },
            "user": nullable(STRING),
            "minutes": nullable(COUNT),
            "seconds": nullable(COUNT),
            "reason": STRING,
            "ts": TS,
        }
    ),
}
