"""The Python API for Django code (PROTOCOL.md "Python API for Django code").

    from chat import parley

    event = parley.send("lobby", bob, "Build #812 passed", client_id="ci-812")
    parley.edit("lobby", bob, event["seq"], "Build #812 passed ✅")
    parley.react("lobby", alice, event["seq"], "🎉")
    parley.delete("lobby", bob, event["seq"])
    parley.mark_read("lobby", alice, event["seq"])

Callable from any thread of any process that has the Django settings (a view, the admin,
``manage.py``, a Celery task) but a server's reactor thread. Each write is the frame a
WebSocket client would send, through chat/writes.py, so it is checked, permitted,
idempotent (by ``client_id``) and appended exactly as one: durable when the call returns.
It returns the committed event (for a repeated ``client_id``, the original one, as the
log has it now); a reaction that changes nothing returns None. A refusal raises
``Refused`` with the PROTOCOL's error code (``Unavailable`` when the database is down:
retry later; ``retry_after`` on ``rate_limited``).

How the event reaches live clients within 1 s, wherever the call runs:

- In a server process, through its hub (chat/live/publish.py ``submit``): the same
  group commit, rate limit and delivery as a WebSocket send, then the bus to the other
  processes. Inside an atomic block the write joins the caller's transaction instead
  (chat/writes.py) and is published after that commits.
- In a process with no reactor and ``REDIS_URL`` set: after the commit the event (and
  any access change, and a moved read position) is published on the Redis bus with a
  blocking client (chat/live/redis_publish.py); every server delivers it as it delivers
  another server's. Measured (bench/parley_delay.py, --workers 2 on PostgreSQL): median
  43 ms from the call to a WebSocket client, 2 ms of it after the call returned.
- With no Redis (one server, SQLite or PostgreSQL), nothing can reach the server from
  outside but the database: the server compares the ``last_seq`` of the rooms it has
  live with the database every ``CHAT_CURSOR_CHECK_SECONDS`` (0.25 s; chat/live/
  service.py) and reads what it is missing: median 177 ms from the call to a WebSocket
  client on SQLite, at most 249 ms in 20 sends. One indexed query of the room rows: with
  1000 live rooms on SQLite an idle server uses 1.45% of a core with it, 0.1% without
  (bench/parley_delay.py --check-cost), where a notifier would need a second channel per
  database (PostgreSQL's LISTEN/NOTIFY has no SQLite counterpart) and still this check
  for what a dropped listener missed. Access changes made there (an admin removal in
  ``manage.py shell``) are rows the same check reads (chat/access_notices.py).

``chat.signals.event_appended`` is sent after the commit of every durable event, by the
process that appended it (chat/log.py), whichever door it came through.
"""

from __future__ import annotations

import copy
from functools import partial

from django.contrib.auth import get_user_model
from django.db import DatabaseError, transaction

from chat import log, positions, writes
from chat.live import publish
from chat.live.records import ErrorCode, ReadNotice, SendResult
from chat.live.wire import MAX_INT
from chat.models import Room

__all__ = ["Refused", "Unavailable", "delete", "edit", "mark_read", "react", "send"]


class Refused(Exception):
    """A write or read refused, with PROTOCOL.md's error ``code`` (``bad_request``,
    ``too_large``, ``rate_limited``, ``forbidden``, ``not_found``, ``unavailable``) and a
    human-readable ``detail``; ``retry_after`` (seconds) on ``rate_limited``."""

    def __init__(self, code: str, detail: str | None = None, retry_after: float | None = None):
        self.code = str(ErrorCode(code))
        self.detail = detail or ErrorCode(code).detail
        self.retry_after = retry_after
        super().__init__(f"{self.code}: {self.detail}")


class Unavailable(Refused):
    """The database (or the server's store) is unavailable: nothing was written; retry."""


def send(
    room,
    user,
    body: str,
    client_id: str | None = None,
    reply_to: int | None = None,
    attachments: list | None = None,
) -> dict:
    """Post ``body`` in ``room`` (a slug or a Room) as ``user`` (a user or a username);
    the ``message`` event. Sending in a public room joins it, as on the wire."""
    frame: dict = {"type": "send", "body": body, "client_id": client_id, "reply_to": reply_to}
    if attachments:
        frame["attachments"] = list(attachments)  # the send frame's field (PROTOCOL.md)
    return _write(room, user, frame)


def edit(room, user, target: int, body: str, client_id: str | None = None) -> dict:
    """Replace the text of the author's own message ``target``; the ``edited`` event."""
    return _write(
        room, user, {"type": "edit", "target": target, "body": body, "client_id": client_id}
    )


def delete(room, user, target: int, client_id: str | None = None) -> dict:
    """Delete message ``target`` (its author, a moderator or staff); the ``deleted`` event."""
    return _write(room, user, {"type": "delete", "target": target, "client_id": client_id})


def react(
    room, user, target: int, emoji: str, op: str = "add", client_id: str | None = None
) -> dict | None:
    """Add (or, ``op="remove"``, remove) a reaction; the ``reaction`` event, or None when
    it changed nothing (an add already in effect, a remove of none)."""
    frame = {"type": "react", "target": target, "emoji": emoji, "op": op, "client_id": client_id}
    return _write(room, user, frame)


def mark_read(room, user, seq: int) -> dict:
    """Move ``user``'s read position in ``room`` to ``seq`` (only forward; clamped to the
    room's ``last_seq``; members only). ``{"room", "read_seq", "unread", "mentions"}``;
    the user's live connections hear of a move (a ``read`` event), on every process."""
    account = _account(user)
    if type(seq) is not int or not 0 <= seq <= MAX_INT:
        raise Refused(ErrorCode.BAD_REQUEST, f"seq must be an integer from 0 to {MAX_INT}.")
    try:
        found = _room(room)
        if not found.can_read(account):
            raise Refused(ErrorCode.FORBIDDEN)
        result = positions.mark_read(found.id, account.pk, seq)
    except DatabaseError as error:
        raise Unavailable(ErrorCode.UNAVAILABLE) from error
    if result is None:
        raise Refused(ErrorCode.FORBIDDEN, "Join the room to keep a read position in it.")
    if result.moved:
        notice = ReadNotice(
            user_id=account.pk,
            room=found.slug,
            read_seq=result.read_seq,
            unread=result.unread,
            mentions=result.mentions,
            through=result.through,
        )
        transaction.on_commit(partial(publish.announce_read, notice), robust=True)
    return {
        "room": found.slug,
        "read_seq": result.read_seq,
        "unread": result.unread,
        "mentions": result.mentions,
    }


# -- the one write path ------------------------------------------------------------------


def _write(room, user, frame: dict) -> dict | None:
    slug = room.slug if isinstance(room, Room) else room
    if not isinstance(slug, str):
        raise Refused(ErrorCode.NOT_FOUND)
    account = _account(user)
    # Inside the caller's atomic block the write joins that transaction (and is published
    # after it commits): the hub's store commits on a connection of its own, which on
    # SQLite would wait for the write lock the caller's transaction holds.
    door = writes.append if transaction.get_connection().in_atomic_block else writes.submit
    result: SendResult = door(slug, account, frame)
    if result.error is not None:
        kind = Unavailable if result.error == ErrorCode.UNAVAILABLE else Refused
        raise kind(result.error, result.detail, result.retry_after)
    if result.created:
        # A copy: the hub's event is also the one in its ring and on its way to clients.
        return copy.deepcopy(result.event)
    if result.seq is None:
        return None  # a reaction that changed nothing
    # A client_id already stored: the original event, as the log has it now.
    try:
        found = _room(slug)
        return log.read_message(found.id, found.slug, result.seq)
    except DatabaseError as error:
        raise Unavailable(ErrorCode.UNAVAILABLE) from error


def _room(room) -> Room:
    if isinstance(room, Room):
        return room
    found = Room.objects.filter(slug=room).first() if isinstance(room, str) else None
    if found is None:
        raise Refused(ErrorCode.NOT_FOUND)
    return found


def _account(user):
    """A signed-in account: a user object, or the username of one."""
    if isinstance(user, str):
        model = get_user_model()
        try:
            return model._default_manager.get_by_natural_key(user)
        except model.DoesNotExist:
            raise Refused(ErrorCode.NOT_FOUND, f"No user named {user!r:.80}.") from None
    if getattr(user, "pk", None) is None or not getattr(user, "is_authenticated", False):
        raise Refused(ErrorCode.FORBIDDEN, "Writes need a signed-in user.")
    return user
