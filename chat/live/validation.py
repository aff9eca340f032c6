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

from chat.emoji_check import is_single_emoji
from chat.live.records import ErrorCode, SendRequest, UserInfo, WriteKind
from chat.live.wire import MAX_INT
from chat.slug import SLUG_PATTERN

MAX_CLIENT_ID_CHARS = 64  # PROTOCOL.md: client_id is a string of up to 64 chars
# PROTOCOL.md "attachments": at most 10 upload ids per send. An id is what
# chat/models_extra.py new_upload_id makes (URL-safe base64), up to its column's 32 chars.
MAX_ATTACHMENTS = 10
UPLOAD_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
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


def check_attachments(value: object) -> Problem | None:
    """None when ``value`` is a send's ``attachments``: absent (None) or a list of at most
    MAX_ATTACHMENTS distinct upload ids. Whose uploads they are is the log's to say."""
    if value is None:
        return None
    if not isinstance(value, list | tuple) or len(value) > MAX_ATTACHMENTS:
        return (
            ErrorCode.BAD_REQUEST,
            f"attachments must be a list of at most {MAX_ATTACHMENTS} upload ids.",
        )
    if not all(isinstance(v, str) and UPLOAD_ID.fullmatch(v) for v in value):
        return ErrorCode.BAD_REQUEST, "attachments must hold upload ids (strings)."
    if len(set(value)) != len(value):
        return ErrorCode.BAD_REQUEST, "attachments names an upload twice."
    return None


def check_seq(value: object, name: str) -> Problem | None:
    """None when ``value`` is a seq: a JSON integer from 1 (not a bool, not 1.0)."""
    if type(value) is not int or not 1 <= value <= MAX_INT:
        return ErrorCode.BAD_REQUEST, f"{name} must be the seq of a message (an integer from 1)."
    return None


# A write frame's "type" -> the kind of write (PROTOCOL.md "Client -> server").
_KINDS = {kind.value: kind for kind in WriteKind}
REACTION_OPS = ("add", "remove")


def request_from_frame(
    slug: str, user: UserInfo, frame: dict, max_chars: int
) -> SendRequest | Problem:
    """The write a client frame asks for (``send``, ``edit``, ``delete``, ``react``), every
    field checked; or the problem with it. The same for every transport and the API: a
    frame without ``type`` is a send (the v1 long-poll POST).

    Whether the target is a message of this room, and whether this user may act on it,
    is the log's to say (inside the transaction that appends).
    """
    kind = (
        _KINDS.get(frame.get("type", "send"))
        if isinstance(frame.get("type", "send"), str)
        else None
    )
    if kind is None:
        return ErrorCode.BAD_REQUEST, f"Unknown frame type {frame.get('type')!r:.40}."
    client_id = frame.get("client_id")
    problem = check_client_id(client_id)
    if problem is not None:
        return problem
    body, target, reply_to, emoji, op = "", None, None, None, None
    attachments: tuple[str, ...] = ()
    if kind == WriteKind.SEND:
        # Attachments: a send with files may have no text (PROTOCOL.md's send lists
        # ``attachments`` beside ``body``; a photo needs no caption).
        problem = check_attachments(frame.get("attachments"))
        if problem is not None:
            return problem
        attachments = tuple(frame.get("attachments") or ())
    if kind in (WriteKind.SEND, WriteKind.EDIT):
        body = frame.get("body")
        if attachments and (body is None or (isinstance(body, str) and not body.strip())):
            body = ""  # no text (or only blanks) beside files: stored as an empty body
        else:
            problem = check_body(body, max_chars)
    if problem is None and kind != WriteKind.SEND:
        target = frame.get("target")
        problem = check_seq(target, "target")
    if problem is None and kind == WriteKind.SEND:
        reply_to = frame.get("reply_to")
        if reply_to is not None:
            problem = check_seq(reply_to, "reply_to")
    if problem is None and kind == WriteKind.REACT:
        emoji, op = frame.get("emoji"), frame.get("op")
        if not is_single_emoji(emoji):
            problem = ErrorCode.BAD_REQUEST, "emoji must be one emoji."
        elif op not in REACTION_OPS:
            problem = ErrorCode.BAD_REQUEST, 'op must be "add" or "remove".'
    if problem is not None:
        return problem
    return SendRequest(
        room=slug,
        user_id=user.id,
        username=user.username,
        body=body,
        client_id=client_id,
        kind=kind,
        target=target,
        reply_to=reply_to,
        emoji=emoji,
        op=op,
        attachments=attachments,
    )


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
    try:
        kind = WriteKind(request.kind)
    except ValueError:
        return ErrorCode.BAD_REQUEST, "Unknown kind of write."
    if kind != WriteKind.SEND:
        problem = check_seq(request.target, "target")
    elif request.reply_to is not None:
        problem = check_seq(request.reply_to, "reply_to")
    if problem is None and request.attachments:
        problem = check_attachments(request.attachments)
    if problem is None and kind == WriteKind.REACT:
        if not is_single_emoji(request.emoji):
            problem = ErrorCode.BAD_REQUEST, "emoji must be one emoji."
        elif request.op not in REACTION_OPS:
            problem = ErrorCode.BAD_REQUEST, 'op must be "add" or "remove".'
    return problem
