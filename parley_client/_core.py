"""What the sync and the asyncio clients share: requests described as data, answers
decoded, the retry rule, and the event stream's resume state. No I/O here."""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from parley_client.errors import (
    BY_CODE,
    BY_STATUS,
    AccessLost,
    ConnectionFailed,
    ParleyError,
    RateLimited,
    Unavailable,
)

USER_AGENT = "parley-client/0.1"
DURABLE = frozenset({"message", "edited", "deleted", "reaction"})
EPHEMERAL = frozenset({"presence", "typing", "read"})
# WebSocket close codes after which reconnecting is pointless (PROTOCOL.md): 4403 lost
# access; 1008 too many malformed frames and 1009 a frame too big are this client's bugs.
FATAL_CLOSES = {4403: AccessLost}


def new_client_id(kind: str = "c") -> str:
    """A fresh client_id: the key that makes a write idempotent (resent as it is)."""
    return f"{kind}-{uuid.uuid4().hex}"


def room_path(room: str, *rest: str) -> str:
    return "/api/rooms/" + "/".join(quote(part, safe="") for part in (room, *rest)) + "/"


@dataclass(frozen=True)
class Call:
    """One API request, resent as it is on a retry (its client_id included)."""

    method: str
    path: str
    params: dict[str, Any] | None = None
    body: dict[str, Any] | None = None


def send_call(room: str, body: str, client_id: str, reply_to: int | None, attachments) -> Call:
    payload: dict[str, Any] = {"body": body, "client_id": client_id}
    if reply_to is not None:
        payload["reply_to"] = reply_to
    if attachments:
        payload["attachments"] = list(attachments)
    return Call("POST", room_path(room, "messages"), body=payload)


def history_call(room: str, before, after, limit) -> Call:
    params = {
        k: v for k, v in (("before", before), ("after", after), ("limit", limit)) if v is not None
    }
    return Call("GET", room_path(room, "messages"), params=params or None)


def error_from(status: int | None, data: Any, retry_header: str | None = None) -> ParleyError:
    """The exception for an error answer (``data``: the decoded JSON body, if any)."""
    error = data.get("error") if isinstance(data, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    detail = error.get("detail", "") if isinstance(error, dict) else ""
    retry_after = error.get("retry_after") if isinstance(error, dict) else None
    if retry_after is None and retry_header:
        try:
            retry_after = float(retry_header)
        except ValueError:
            retry_after = None
    cls = BY_CODE.get(code) or BY_STATUS.get(status or 0, ParleyError)
    return cls(
        str(detail or ""),
        code=code or cls.code,
        status=status,
        retry_after=retry_after if isinstance(retry_after, int | float) else None,
    )


def decode(status: int, content: bytes, headers) -> Any:
    """The JSON of a successful answer (None for 204), or raise its ParleyError."""
    try:
        data = json.loads(content) if content else None
    except ValueError:
        data = None
    if 200 <= status < 300:
        return data
    raise error_from(status, data, headers.get("retry-after"))


@dataclass
class Retry:
    """When to try a call again: ``unavailable``, a lost connection, and ``rate_limited``
    (after its ``retry_after``), within ``deadline`` seconds in all. A write is resent
    with the same client_id, which the server answers with the original seq, so a retry
    never makes a duplicate."""

    deadline: float
    started: float
    attempt: int = 0

    def delay(self, error: ParleyError, now: float) -> float | None:
        """Seconds to wait before the next attempt, or None to give up (raise)."""
        if not isinstance(error, Unavailable | ConnectionFailed | RateLimited):
            return None
        self.attempt += 1
        if isinstance(error, RateLimited) and error.retry_after is not None:
            wait = float(error.retry_after)
        else:
            wait = backoff(self.attempt)
        if now + wait - self.started > self.deadline:
            return None
        return wait


def backoff(attempt: int) -> float:
    """Exponential backoff with jitter: 0.25 s, 0.5 s, ... up to 10 s."""
    return min(10.0, 0.25 * 2 ** max(0, attempt - 1)) * random.uniform(0.5, 1.0)


def ws_base(base_url: str) -> str:
    parts = urlsplit(base_url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


@dataclass
class StreamState:
    """Where a room's event stream is: the last durable seq handed on. Every reconnect
    asks for ``since=last_seq``, and a durable event at or below it is dropped, so the
    events come once each, in seq order, across any number of reconnects."""

    room: str | None  # None: the inbox
    last_seq: int | None = None
    ephemeral: bool = False
    failures: int = 0
    pending: list[dict] = field(default_factory=list)

    def url(self, base_url: str) -> str:
        if self.room is None:
            return ws_base(base_url) + "/ws/me/"
        path = f"{ws_base(base_url)}/ws/rooms/{quote(self.room, safe='')}/"
        if self.last_seq is not None:
            path += "?" + urlencode({"since": self.last_seq})
        return path

    def take(self, raw: str | bytes) -> dict | None:
        """The frame to hand on, if any."""
        try:
            frame = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(frame, dict):
            return None
        kind = frame.get("type")
        if self.room is None:  # the inbox is ephemeral: every frame, a fresh hello each time
            if kind == "hello":
                self.failures = 0
            return frame
        if kind == "hello":
            self.failures = 0
            if self.last_seq is None and isinstance(frame.get("last_seq"), int):
                self.last_seq = frame["last_seq"]  # live from here; resumes from here
            return None
        if kind in DURABLE:
            seq = frame.get("seq")
            if not isinstance(seq, int):
                return None
            if self.last_seq is not None and seq <= self.last_seq:
                return None  # had it already (a replay overlapping what was handed on)
            self.last_seq = seq
            return frame
        if self.ephemeral and kind in EPHEMERAL:
            return frame
        return None

    def closed(self, code: int | None, reason: str = "") -> float:
        """The socket closed with ``code``: raise when it must not be reopened, else the
        seconds to wait before reconnecting."""
        fatal = FATAL_CLOSES.get(code or 0)
        if fatal is not None:
            raise fatal(reason or "access to the room was lost", code="forbidden")
        self.failures += 1
        return backoff(self.failures)

    def refused(self, error: ParleyError) -> float:
        """The handshake was refused: raise unless it is worth another try."""
        if not isinstance(error, Unavailable | RateLimited):
            raise error
        self.failures += 1
        if isinstance(error, RateLimited) and error.retry_after:
            return float(error.retry_after)
        return backoff(self.failures)
