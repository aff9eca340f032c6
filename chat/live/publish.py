"""The thread-safe door from Django code (WSGI threads) into the live hub.

Django code never touches the hub directly: the hub lives on the reactor thread and is
not thread-safe. The server installs sinks at start-up, and two things go through them
with ``reactor.callFromThread``:

- ``publish_committed(event)``: an already committed durable event (the admin's delete);
- ``announce_access(change)``: something that access to live rooms depends on has
  changed (PROTOCOL.md "Losing access"; chat/signals.py makes these after the commit):
  the hub re-authorizes the connections it concerns, here and, through the bus, in
  every other process.
- ``announce_read(notice)``: a user's read position moved (the REST API's ``read``):
  their own connections hear of it, here and in every other process.

And one thing waits for the reactor: ``submit(slug, user, frame)``, a write (send, edit,
delete, reaction) through the hub's write path (validation, rate limit, group commit,
delivery), for the REST API in a WSGI thread. It returns None where no hub is installed
(chat/writes.py then appends through chat.log itself).

In a process with no reactor (``manage.py shell``, a management command, a Celery
worker) nothing is installed. With ``REDIS_URL`` its events, access changes and read
notices go on the bus themselves (chat/live/redis_publish.py, a blocking client), and
every server delivers them as another server's. Without Redis (one server), its events
are found by the server's cursor check (chat/live/service.py, every 0.25 s), and its
access changes are rows the same check reads (chat/access_notices.py, read by
chat/live/notices.py). What bypasses even that (``QuerySet.update()``, raw SQL) reaches
live connections at the room check, which re-authorizes every one of them against the
database (chat/live/access_watch.py ``check_all``, every 5 s).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from chat.live.records import ReadNotice, SendResult, UserInfo

logger = logging.getLogger(__name__)

_sink: Callable[[dict], None] | None = None
_access_sink: Callable[[AccessChange], None] | None = None
_read_sink: Callable[[ReadNotice], None] | None = None
_submit: Callable[..., SendResult] | None = None
_call_from_thread: Callable[..., None] | None = None

ROOM = "room"
ACCOUNTS = "accounts"
SESSION = "session"
KICK = "kick"


@dataclass(frozen=True, slots=True)
class AccessChange:
    """One change of what access to live rooms depends on. Plain data: it crosses
    threads here and processes on the bus (``as_json``/``from_json``).

    - ``room``: the room ``room``'s access changed for ``users`` (None: for everyone):
      members added or removed, the room made private or public, archived, deleted.
    - ``accounts``: the accounts ``users`` changed (deactivated, deleted, password
      changed, which signs out their other sessions): their connections to every room.
    - ``session``: the session ``session`` ended (logout): the connections opened with
      it end; ``users`` is its user, for the transports that do not tell their session.
      A revoked, expired or deleted API token is this kind too: ``session`` is the
      token's credential key, ``token:<digest>`` (chat/tokens.py), which its live
      connections were opened with, so revocation ends them by the logout's path.
    - ``kick``: the users ``users`` were kicked or banned from the room ``room`` by a
      moderator (PROTOCOL.md "Moderation"): their connections to it end outright, with
      no read, even where the rule would still let them read (a public room they were
      kicked from: they may reconnect; a ban refuses the reconnect).
    """

    kind: str
    room: str | None = None
    users: tuple[int, ...] | None = None
    session: str | None = None

    @classmethod
    def room_changed(cls, slug: str, users: tuple[int, ...] | None = None) -> AccessChange:
        return cls(ROOM, room=slug, users=None if users is None else tuple(sorted(users)))

    @classmethod
    def accounts_changed(cls, users: tuple[int, ...]) -> AccessChange:
        return cls(ACCOUNTS, users=tuple(sorted(users)))

    @classmethod
    def kicked(cls, slug: str, users: tuple[int, ...]) -> AccessChange:
        return cls(KICK, room=slug, users=tuple(sorted(users)))

    @classmethod
    def session_ended(cls, session: str, user: int | None) -> AccessChange:
        return cls(SESSION, session=session, users=None if user is None else (user,))

    def as_json(self) -> dict:
        users = None if self.users is None else list(self.users)
        return {"kind": self.kind, "room": self.room, "users": users, "session": self.session}

    @classmethod
    def from_json(cls, data: object) -> AccessChange | None:
        """The change ``data`` describes, or None when it is not a well-formed one."""
        if not isinstance(data, dict):
            return None
        kind, room, users, session = (data.get(k) for k in ("kind", "room", "users", "session"))
        if users is not None:
            # bool is an int, and no user id is a bool.
            if not isinstance(users, list) or not all(type(u) is int for u in users):
                return None
            users = tuple(users)
        if kind == ROOM and isinstance(room, str):
            return cls.room_changed(room, users)
        if kind == ACCOUNTS and users:
            return cls.accounts_changed(users)
        if kind == KICK and isinstance(room, str) and users:
            return cls.kicked(room, users)
        if kind == SESSION and isinstance(session, str) and session:
            return cls(SESSION, session=session, users=users[:1] if users else None)
        return None


def install(
    call_from_thread: Callable[..., None],
    sink: Callable[[dict], None],
    access_sink: Callable[[AccessChange], None] | None = None,
    *,
    read_sink: Callable[[ReadNotice], None] | None = None,
    submit: Callable[..., SendResult] | None = None,
) -> None:
    """Called once by the server: ``sink(event)``, ``access_sink(change)`` and
    ``read_sink(notice)`` will run on the reactor thread; ``submit(slug, user, frame)``
    blocks the calling thread until the hub has answered (the server passes the hub's
    write path wrapped in ``blockingCallFromThread``)."""
    global _sink, _access_sink, _read_sink, _submit, _call_from_thread
    _sink, _access_sink, _call_from_thread = sink, access_sink, call_from_thread
    _read_sink, _submit = read_sink, submit


def uninstall() -> None:
    global _sink, _access_sink, _read_sink, _submit, _call_from_thread
    _sink = _access_sink = _read_sink = _submit = _call_from_thread = None


def submit(slug: str, user: UserInfo, frame: dict) -> SendResult | None:
    """A write through the hub of this process (from a thread that is not the reactor's);
    None when there is no hub here."""
    if _submit is None:
        return None
    return _submit(slug, user, frame)


def announce_read(notice: ReadNotice) -> None:
    """Tell the user's live connections, in every process, that their read position
    moved (any thread)."""
    if _read_sink is None or _call_from_thread is None:
        if not _no_reactor().publish_read(notice):
            logger.info("no live hub in this process; %s is not announced", notice)
        return
    _call_from_thread(_read_sink, notice)


def publish_committed(event: dict) -> None:
    """Deliver a committed durable event to every live subscriber (any thread)."""
    if _sink is None or _call_from_thread is None:
        if not _no_reactor().publish_event(event):
            logger.info("no live hub in this process; the servers' cursor check finds %s", event)
        return
    _call_from_thread(_sink, event)


def announce_access(change: AccessChange) -> None:
    """Tell the live hub of every process that ``change`` was committed (any thread)."""
    if _access_sink is None or _call_from_thread is None:
        if _no_reactor().publish_access(change):
            return
        # No Redis to publish on: a row the servers read at their cursor check
        # (chat/access_notices.py); imported here, as Django code only calls this.
        from chat import access_notices

        if not access_notices.record(change.as_json()):
            logger.info(
                "no live hub in this process; %s reaches live clients at the servers' "
                "next room check",
                change,
            )
        return
    _call_from_thread(_access_sink, change)


def _no_reactor():
    """A process with no hub publishes on the Redis bus itself (Python API, PROTOCOL.md);
    imported when first needed: a server process never needs it."""
    from chat.live import redis_publish

    return redis_publish
