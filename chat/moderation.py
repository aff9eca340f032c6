"""Moderation of a room (PROTOCOL.md "Moderation"): mute, unmute, kick, ban, unban, slow
mode. The API's door is chat/api/moderation_views.py; this module is the operations.

Each action is one transaction that changes the rows the rules read and writes its
``ModerationAction`` (the audit log: who, whom, what, when, why) beside them, so that an
action is never in effect without its record, nor recorded without effect. How each takes
effect on every process:

- ``mute``/``unmute``: a ``Mute`` row, read by every write's transaction
  (chat/log_rules.py): the next write anywhere is refused (or let through). Nothing live
  to tell.
- ``slow_mode``: ``Room.slow_mode_seconds``, read the same way. The room's change is
  announced after the commit (``AccessChange.room_changed`` for everyone): the inboxes
  send their members a ``rooms`` frame with the new ``slow_mode_seconds``.
- ``kick``: the membership removed (its ``m2m_changed`` notice drops the room from the
  user's inbox), then ``AccessChange.kicked``: every process ends the user's live
  connections to the room at once (chat/live/access_watch.py), close ``4403``; in a
  public room they may reconnect and rejoin.
- ``ban``: a kick and a ``Ban`` row: chat/access.py refuses them the room (read and
  write) until ``unban``, whose notice lets the next connection in at once.

Refused (``ModerationError``): an actor who is not a moderator of the room (403
``forbidden``), an unknown user (404 ``not_found``), a mute, kick or ban of a moderator of
the room, of staff, or of oneself (403 ``forbidden``: PROTOCOL.md's code for "you may not
do that in this room"), and a malformed body (400 ``bad_request``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from functools import partial

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from chat import access
from chat.live.publish import AccessChange, announce_access
from chat.live.records import ErrorCode
from chat.live.validation import storable
from chat.models import Ban, ModerationAction, Mute, Room

# A year: a longer mute is a ban.
MAX_MUTE_MINUTES = 525_600
# Six hours: a longer slow mode is an archived room.
MAX_SLOW_MODE_SECONDS = 21_600
MAX_REASON_CHARS = 500

Action = ModerationAction.Action
# The actions that name a user, and those of them that may not name a moderator.
USER_ACTIONS = frozenset({Action.MUTE, Action.UNMUTE, Action.KICK, Action.BAN, Action.UNBAN})
PUNISHMENTS = frozenset({Action.MUTE, Action.KICK, Action.BAN})
ACTIONS = frozenset(USER_ACTIONS | {Action.SLOW_MODE})


class ModerationError(Exception):
    def __init__(self, code: ErrorCode, detail: str) -> None:
        super().__init__(detail)
        self.code, self.detail = code, detail


@dataclass(frozen=True, slots=True)
class Request:
    """A moderation request as checked: what to do, to whom, for how long, why."""

    action: str
    username: str | None = None
    value: int | None = None  # minutes of a mute, seconds of slow mode
    reason: str = ""


def parse(data: dict) -> Request:
    """The request ``data`` (a JSON object) asks for; ModerationError 400 otherwise."""
    action = data.get("action")
    if not isinstance(action, str) or action not in ACTIONS:
        names = ", ".join(sorted(ACTIONS))
        raise ModerationError(ErrorCode.BAD_REQUEST, f"action must be one of {names}.")
    reason = data.get("reason", "")
    if reason is None:
        reason = ""
    if not isinstance(reason, str) or not storable(reason) or len(reason) > MAX_REASON_CHARS:
        raise ModerationError(
            ErrorCode.BAD_REQUEST, f"reason must be text of at most {MAX_REASON_CHARS} characters."
        )
    if action == Action.SLOW_MODE:
        seconds = _integer(data.get("seconds"), "seconds", 0, MAX_SLOW_MODE_SECONDS)
        return Request(action, value=seconds, reason=reason.strip())
    username = data.get("user")
    if not isinstance(username, str) or not username or len(username) > 150:
        raise ModerationError(ErrorCode.BAD_REQUEST, "user must be a username.")
    if not storable(username):
        raise ModerationError(ErrorCode.BAD_REQUEST, "user must be a username.")
    minutes = None
    if action == Action.MUTE:
        minutes = _integer(data.get("minutes"), "minutes", 1, MAX_MUTE_MINUTES)
    return Request(action, username, minutes, reason.strip())


def _integer(value: object, name: str, low: int, high: int) -> int:
    # A JSON integer: bool is an int to Python, and 1.5 or "10" are not minutes.
    if type(value) is not int or not low <= value <= high:
        raise ModerationError(
            ErrorCode.BAD_REQUEST, f"{name} must be an integer from {low} to {high}."
        )
    return value


def perform(room: Room, actor, request: Request) -> ModerationAction:
    """Carry out ``request`` in ``room`` as ``actor`` (a signed-in user); the audit row.

    The caller has checked that ``actor`` may moderate ``room``; this checks the target.
    """
    target = None
    if request.action in USER_ACTIONS:
        model = get_user_model()
        target = model._default_manager.filter(**{model.USERNAME_FIELD: request.username}).first()
        if target is None:
            raise ModerationError(ErrorCode.NOT_FOUND, "No such user.")
        if request.action in PUNISHMENTS:
            if target.pk == actor.pk:
                raise ModerationError(ErrorCode.FORBIDDEN, "You cannot do that to yourself.")
            if access.may_moderate(room, target.pk):
                raise ModerationError(
                    ErrorCode.FORBIDDEN, f"{request.username} is a moderator of this room."
                )
    with transaction.atomic():
        record = ModerationAction.objects.create(
            room=room,
            actor=actor,
            action=request.action,
            target_user=target,
            value=request.value,
            reason=request.reason,
        )
        _APPLY[request.action](room, actor, target, request)
    return record


def _mute(room: Room, actor, target, request: Request) -> None:
    until = timezone.now() + timedelta(minutes=request.value)
    Mute.objects.update_or_create(
        room=room,
        user=target,
        defaults={
            "until": until,
            "reason": request.reason,
            "by": actor,
            "created_at": timezone.now(),
        },
    )


def _unmute(room: Room, actor, target, request: Request) -> None:
    Mute.objects.filter(room=room, user=target).delete()


def _kick(room: Room, actor, target, request: Request) -> None:
    room.members.remove(target)  # m2m_changed: the read position, the inbox's notice
    _after_commit(AccessChange.kicked(room.slug, (target.pk,)))


def _ban(room: Room, actor, target, request: Request) -> None:
    Ban.objects.update_or_create(
        room=room,
        user=target,
        defaults={"reason": request.reason, "by": actor, "created_at": timezone.now()},
    )
    _kick(room, actor, target, request)


def _unban(room: Room, actor, target, request: Request) -> None:
    if Ban.objects.filter(room=room, user=target).delete()[0]:
        # A refusal may be cached by the servers: the next connection is let in.
        _after_commit(AccessChange.room_changed(room.slug, (target.pk,)))


def _slow_mode(room: Room, actor, target, request: Request) -> None:
    # update_fields: the room's access fields are untouched, so chat/signals.py's room
    # notice does not fire; this one tells the inboxes of the new value.
    room.slow_mode_seconds = request.value
    room.save(update_fields=["slow_mode_seconds"])
    _after_commit(AccessChange.room_changed(room.slug))


def _after_commit(change: AccessChange) -> None:
    transaction.on_commit(partial(announce_access, change), robust=True)


_APPLY = {
    Action.MUTE: _mute,
    Action.UNMUTE: _unmute,
    Action.KICK: _kick,
    Action.BAN: _ban,
    Action.UNBAN: _unban,
    Action.SLOW_MODE: _slow_mode,
}


def describe(record: ModerationAction, target_username: str | None) -> dict:
    """The audit row as the API answers it."""
    return {
        "action": record.action,
        "user": target_username,
        "minutes": record.value if record.action == Action.MUTE else None,
        "seconds": record.value if record.action == Action.SLOW_MODE else None,
        "reason": record.reason,
        "ts": record.created_at.isoformat(),
    }
