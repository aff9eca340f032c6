"""What a write must be before it goes near the database: the one check of every field.

Every transport (WebSocket, long-poll, and later REST, IRC and the Python API) hands the
hub what the client sent, unchecked beyond its JSON shape; the hub asks this module.
Text that the database cannot store must be refused here, per request, because a
group-commit batch is one transaction: a single unstorable value (a lone surrogate such
as ``"\\ud800"``, which is valid JSON; a NUL, which PostgreSQL refuses in text) would
otherwise fail every other user's send in the same batch.

``chat.log`` asks again (``check_stored_send``) for whatever reaches it by another way
(the admin, the Python API): the log is the last door before the database.
"""

from __future__ import annotations

import re

from chat.live.records import ErrorCode, SendRequest
from chat.slug import SLUG_PATTERN

MAX_CLIENT_ID_CHARS = 64  # PROTOCOL.md: client_id is a string of up to 64 chars
# Lone surrogates cannot be encoded as UTF-8 (SQLite and PostgreSQL both refuse them);
# NUL is refused by PostgreSQL in text columns and truncates C strings elsewhere.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_SLUG = re.compile(rf"{SLUG_PATTERN}")

Problem = tuple[ErrorCode, str]


def storable(text: str) -> bool:
    """Whether ``text`` can be stored as text by every database Parley supports."""
    return _UNSTORABLE.search(text) is None


def check_client_id(client_id: object) -> Problem | None:
    """None when ``client_id`` is acceptable (a short storable string, or None).

    A transport echoes a client_id in its answer only when this accepts it: a lone
    surrogate cannot even be encoded into the reply.
    """
    if client_id is None:
        return None
    if not isinstance(client_id, str) or len(client_id) > MAX_CLIENT_ID_CHARS:
        return ErrorCode.BAD_REQUEST, "client_id must be a string of at most 64 chars."
    if not storable(client_id):
        return ErrorCode.BAD_REQUEST, "client_id holds a character that cannot be stored."
    return None


def check_body(body: object, max_chars: int) -> Problem | None:
    """None when ``body`` is a message text that may be appended."""
    if not isinstance(body, str):
        return ErrorCode.BAD_REQUEST, "body must be a string."
    if not body.strip():
        return ErrorCode.BAD_REQUEST, "body must not be empty."
    if len(body) > max_chars:
        return ErrorCode.TOO_LARGE, f"body is over {max_chars} characters."
    if not storable(body):
        return ErrorCode.BAD_REQUEST, "body holds a character that cannot be stored."
    return None


def check_room_slug(slug: object) -> Problem | None:
    """None when ``slug`` has the shape of a room slug (anything else names no room).

    The live paths are checked against the same pattern; the log checks again because a
    slug is a query parameter, and an unencodable one would fail the batch's query.
    """
    if isinstance(slug, str) and _SLUG.fullmatch(slug):
        return None
    return ErrorCode.NOT_FOUND, "No such room."


def check_stored_send(request: SendRequest) -> Problem | None:
    """What the log insists on for every send, whoever made it: each field can be stored.

    Not the length of the body, which is a setting of the transports (the admin may
    post longer texts): only what would make the database refuse the row, or the query.
    """
    problem = check_room_slug(request.room) or check_client_id(request.client_id)
    if problem is not None:
        return problem
    if not isinstance(request.body, str):
        return ErrorCode.BAD_REQUEST, "body must be a string."
    if not storable(request.body):
        return ErrorCode.BAD_REQUEST, "body holds a character that cannot be stored."
    if not isinstance(request.user_id, int) or not isinstance(request.username, str):
        return ErrorCode.BAD_REQUEST, "The sender is not a user."
    return None
