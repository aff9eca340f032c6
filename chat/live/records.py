"""Plain records shared by the Django side and the Twisted side of chat.

Nothing here imports Django, Twisted or ``project/``: the hub, the transports, the store,
``chat/log.py``, the views and the settings all speak in these types, so the live core can
be read, tested and reasoned about without the ORM, and the Django side without a reactor.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ErrorCode(StrEnum):
    """The error codes of PROTOCOL.md, the same on every transport.

    A ``StrEnum`` so that a code compares equal to (and serializes as) its wire string.
    """

    BAD_REQUEST = "bad_request"
    TOO_LARGE = "too_large"
    RATE_LIMITED = "rate_limited"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    UNAUTHORIZED = "unauthorized"
    UNAVAILABLE = "unavailable"

    @property
    def status(self) -> int:
        """The HTTP status that carries this code (long-poll, the API)."""
        return _STATUS[self]

    @property
    def detail(self) -> str:
        """The default human-readable text, when the caller has nothing more precise."""
        return _DETAIL[self]


_STATUS = {
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.UNAVAILABLE: 503,
}
_DETAIL = {
    ErrorCode.BAD_REQUEST: "The request is malformed.",
    ErrorCode.UNAUTHORIZED: "The token is missing, invalid or revoked.",
    ErrorCode.FORBIDDEN: "You may not do that in this room.",
    ErrorCode.NOT_FOUND: "No such room.",
    ErrorCode.TOO_LARGE: "The message is too long.",
    ErrorCode.RATE_LIMITED: "Too many messages; slow down.",
    ErrorCode.UNAVAILABLE: "The service is temporarily unavailable; retry later.",
}


def error_body(code: ErrorCode | str, detail: str | None = None, **extra: object) -> dict:
    """The one shape of an error over HTTP: ``{"error": {"code", "detail", ...}}``."""
    code = ErrorCode(code)
    return {"error": {"code": str(code), "detail": detail or code.detail, **extra}}


@dataclass(frozen=True, slots=True)
class RateLimit:
    """``count`` sends per ``seconds`` window; ``count == 0`` means no limit."""

    count: int
    seconds: float

    @property
    def enabled(self) -> bool:
        return self.count > 0


@dataclass(frozen=True, slots=True)
class RoomInfo:
    """What the live side knows of a room row (read on the store's threads)."""

    id: int
    slug: str
    is_public: bool
    is_archived: bool
    last_seq: int


@dataclass(frozen=True, slots=True)
class UserInfo:
    id: int
    username: str


@dataclass(frozen=True, slots=True)
class Access:
    """The answer for one (session, room): ``room`` is None for an unknown room."""

    room: RoomInfo | None
    user: UserInfo | None
    can_read: bool


class WriteKind(StrEnum):
    """The client frames that append to a room's log, and the event each appends."""

    SEND = "send"  # -> message
    EDIT = "edit"  # -> edited
    DELETE = "delete"  # -> deleted
    REACT = "react"  # -> reaction


@dataclass(frozen=True, slots=True)
class SendRequest:
    """One user's write into one room (a send, edit, delete or reaction), as the hub
    hands it to the store and the log; validated (chat/live/validation.py) before.

    ``body`` is the text of a send or an edit; ``target`` the seq an edit, delete or
    reaction acts on; ``reply_to`` a send's reply; ``emoji`` and ``op`` a reaction's;
    ``attachments`` the upload ids a send attaches (chat/log_uploads.py claims them).
    """

    room: str  # slug
    user_id: int
    username: str
    body: str
    client_id: str | None
    kind: WriteKind = WriteKind.SEND
    target: int | None = None
    reply_to: int | None = None
    emoji: str | None = None
    op: str | None = None
    attachments: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ReadNotice:
    """A user's read position in a room moved (PROTOCOL.md "read"): for that user's own
    connections, in every process. ``unread`` and ``mentions`` are the counts after the
    move, as of the room's ``through`` seq (what the counts include)."""

    user_id: int
    room: str  # slug
    read_seq: int
    unread: int
    mentions: int
    through: int


@dataclass(frozen=True, slots=True)
class SendResult:
    seq: int | None = None
    event: dict | None = None  # the new event when one was appended
    error: ErrorCode | None = None
    detail: str | None = None  # what exactly was wrong, for the error's text
    retry_after: float | None = None  # seconds, on rate_limited (PROTOCOL.md)

    @property
    def created(self) -> bool:
        return self.event is not None
