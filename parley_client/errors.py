"""The client's exceptions: one per error code of PROTOCOL.md, and the stream's ends."""

from __future__ import annotations


class ParleyError(Exception):
    """An error answer of the server: ``code`` (PROTOCOL.md's list), ``detail`` (its
    text), ``status`` (the HTTP status, None over the WebSocket), ``retry_after``
    (seconds, on ``rate_limited`` and a mute's ``forbidden``)."""

    code = "error"

    def __init__(
        self,
        detail: str = "",
        *,
        code: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{code or self.code}: {detail}" if detail else (code or self.code))
        self.code = code or self.code
        self.detail = detail
        self.status = status
        self.retry_after = retry_after


class BadRequest(ParleyError):
    code = "bad_request"


class TooLarge(ParleyError):
    code = "too_large"


class RateLimited(ParleyError):
    code = "rate_limited"


class Forbidden(ParleyError):
    code = "forbidden"


class NotFound(ParleyError):
    code = "not_found"


class Unauthorized(ParleyError):
    """The token is missing, bad, expired or revoked (HTTP 401): never retried."""

    code = "unauthorized"


class Unavailable(ParleyError):
    """The server's database or bus is down, or the server could not be reached."""

    code = "unavailable"


class ConnectionFailed(Unavailable):
    """No answer at all: refused, reset, timed out. Retried like ``unavailable``."""


class AccessLost(Forbidden):
    """The event stream was closed 4403: the user lost access to the room (removed,
    kicked, banned, or the token was revoked). Not reconnected."""


BY_CODE: dict[str, type[ParleyError]] = {
    cls.code: cls
    for cls in (BadRequest, TooLarge, RateLimited, Forbidden, NotFound, Unauthorized, Unavailable)
}
BY_STATUS = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    413: TooLarge,
    429: RateLimited,
    503: Unavailable,
}
