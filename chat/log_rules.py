"""The moderation rules of a write, decided inside the append transaction (chat/log.py).

PROTOCOL.md "Moderation": a muted user's writes to the room get ``forbidden`` with
``retry_after`` (the seconds until the mute ends); in a room with slow mode on, a user who
is not a moderator may send one message per ``slow_mode_seconds``, and an earlier send
gets ``rate_limited`` with ``retry_after``. Both are read under the room's row lock, in
the transaction that appends, so a mute or a slow mode set a moment ago by any process
holds for the very next write everywhere, with nothing cached to go stale.

What a mute stops: sends, edits and reactions (what adds to the room). A muted user may
still delete their own messages: a deletion adds nothing, and taking back what one said
is what a moderator hopes for. A mute holds for whoever it names; muting a moderator is
refused where mutes are made (chat/moderation.py), and making a muted user a moderator
does not lift it (unmuting does).

Costs, per batch and not per write: one query for the mutes of the batch's (rooms x
users); in rooms with slow mode on, one for the moderators among their senders (staff,
then the rooms' moderators) and one for their ``LastPost`` rows, and one upsert of the
``LastPost`` rows of the messages appended. ``LastPost`` is written only in rooms with slow
mode on; turning slow mode on therefore starts everyone afresh.

A moderator deleting someone else's message is kept in the audit log
(``ModerationAction``), in the same transaction as the deletion.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime

from chat import access, fast_queries
from chat.live.records import ErrorCode, SendRequest, SendResult, WriteKind
from chat.log_state import RoomAppend
from chat.models import LastPost, ModerationAction, Mute, Room

# The writes a mute stops (a deletion of one's own message is allowed; see above).
MUTED_WRITES = frozenset({WriteKind.SEND, WriteKind.EDIT, WriteKind.REACT})


def seconds_until(later: datetime, now: datetime) -> int:
    """Whole seconds from ``now`` to ``later``, at least 1: a client told to retry after
    0 seconds would retry at once and be refused again."""
    return max(1, math.ceil((later - now).total_seconds()))


def _duration(seconds: int) -> str:
    """ "9 more minutes", as the page's notice says it (ui/modmenu.js ``remaining``)."""
    if seconds >= 5400:
        count, unit = round(seconds / 3600), "hour"
    elif seconds >= 90:
        count, unit = math.ceil(seconds / 60), "minute"
    else:
        count, unit = seconds, "second"
    return f"{count} more {unit}{'' if count == 1 else 's'}"


class WriteRules:
    """The rules of one batch: read once (``__init__``) with the rooms locked, then asked
    per write (``refusal``), told of what was appended (``appended``), written at the end
    (``flush``)."""

    def __init__(
        self, rooms: dict[str, Room], requests: Iterable[SendRequest], now: datetime
    ) -> None:
        self.now = now
        requests = [r for r in requests if r.room in rooms]
        self._mutes: dict[tuple[int, int], datetime] = {}
        writers = {(rooms[r.room].id, r.user_id) for r in requests if r.kind in MUTED_WRITES}
        if writers:
            # Plain SQL for the usual answer, nobody muted (chat/fast_queries.py); the
            # few mutes found are read again for their end, as datetimes.
            found = writers & fast_queries.muted_pairs(
                {room_id for room_id, _ in writers}, {user_id for _, user_id in writers}, now
            )
            if found:
                rows = Mute.objects.filter(
                    room_id__in={room_id for room_id, _ in found},
                    user_id__in={user_id for _, user_id in found},
                    until__gt=now,
                ).values_list("room_id", "user_id", "until")
                self._mutes = {(r, u): until for r, u, until in rows if (r, u) in found}
        # Slow mode: senders who are not moderators, in rooms with it on.
        senders = {
            (rooms[r.room], r.user_id)
            for r in requests
            if r.kind == WriteKind.SEND and rooms[r.room].slow_mode_seconds > 0
        }
        self._exempt = access.moderators(senders) if senders else set()
        slowed = {(room.id, user_id) for room, user_id in senders} - self._exempt
        self._last: dict[tuple[int, int], datetime] = {}
        if slowed:
            rows = LastPost.objects.filter(
                room_id__in={room_id for room_id, _ in slowed},
                user_id__in={user_id for _, user_id in slowed},
            ).values_list("room_id", "user_id", "at")
            self._last = {
                (room_id, user_id): at
                for room_id, user_id, at in rows
                if (room_id, user_id) in slowed
            }
        self._posted: dict[tuple[int, int], datetime] = {}
        self._deletions: list[ModerationAction] = []

    def refusal(self, room: Room, request: SendRequest) -> SendResult | None:
        """Why this write may not be appended now (None: it may)."""
        key = (room.id, request.user_id)
        until = self._mutes.get(key)
        if until is not None and request.kind in MUTED_WRITES:
            wait = seconds_until(until, self.now)
            return SendResult(
                error=ErrorCode.FORBIDDEN,
                detail=f"You are muted in this room for {_duration(wait)}.",
                retry_after=wait,
            )
        if (
            request.kind == WriteKind.SEND
            and room.slow_mode_seconds > 0
            and key not in self._exempt
        ):
            last = self._posted.get(key) or self._last.get(key)
            if last is not None:
                elapsed = (self.now - last).total_seconds()
                if elapsed < room.slow_mode_seconds:
                    wait = max(1, math.ceil(room.slow_mode_seconds - elapsed))
                    return SendResult(
                        error=ErrorCode.RATE_LIMITED,
                        detail=f"Slow mode: one message per {room.slow_mode_seconds} s here.",
                        retry_after=wait,
                    )
        return None

    def appended(self, append: RoomAppend, request: SendRequest, result: SendResult) -> None:
        """``request`` appended ``result`` in ``append``'s room."""
        if not result.created:
            return
        room = append.room
        key = (room.id, request.user_id)
        if request.kind == WriteKind.SEND:
            if room.slow_mode_seconds > 0 and key not in self._exempt:
                self._posted[key] = self.now
        elif request.kind == WriteKind.DELETE:
            target = append.targets.get(request.target)
            author = target.user_id if target is not None else None
            if author != request.user_id:
                self._deletions.append(deletion(room.id, request.user_id, author, request.target))

    def flush(self) -> None:
        """Write the batch's slow-mode times and moderators' deletions (in its transaction)."""
        if self._posted:
            LastPost.objects.bulk_create(
                [
                    LastPost(room_id=room_id, user_id=user_id, at=at)
                    for (room_id, user_id), at in self._posted.items()
                ],
                update_conflicts=True,
                unique_fields=["room", "user"],
                update_fields=["at"],
            )
            self._posted = {}
        if self._deletions:
            ModerationAction.objects.bulk_create(self._deletions)
            self._deletions = []


def deletion(
    room_id: int, actor_id: int | None, author_id: int | None, seq: int | None
) -> ModerationAction:
    """The audit row of a moderator's (or staff's, or a script's) deletion of a message."""
    return ModerationAction(
        room_id=room_id,
        actor_id=actor_id,
        action=ModerationAction.Action.DELETE,
        target_user_id=author_id,
        target_seq=seq,
    )
