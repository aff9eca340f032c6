"""Rows of a room's log written straight to the tables, for the tests of what reads them
(counts, read positions, room objects): they need a log of a given shape, not the append
path, which tests/unit/test_log.py covers."""

from __future__ import annotations

from django.db.models import F
from django.utils import timezone

from chat.models import Mention, Message, Room


def append(room: Room, user, count: int = 1, *, mentions=(), kind: str = "message") -> list[int]:
    """``count`` events by ``user`` at the room's next seqs; each mentions ``mentions``."""
    Room.objects.filter(pk=room.pk).update(last_seq=F("last_seq") + count)
    room.refresh_from_db(fields=["last_seq"])
    seqs = list(range(room.last_seq - count + 1, room.last_seq + 1))
    now = timezone.now()
    Message.objects.bulk_create(
        Message(
            room=room,
            seq=seq,
            kind=kind,
            user=user,
            body=f"m{seq}",
            created_at=now,
            mentions=[u.username for u in mentions],
        )
        for seq in seqs
    )
    Mention.objects.bulk_create(
        Mention(room=room, seq=seq, user=u) for seq in seqs for u in mentions
    )
    return seqs


def delete(room: Room, seq: int) -> None:
    """Soft-delete message ``seq`` as chat.log does (its mentions go with it)."""
    Message.objects.filter(room=room, seq=seq).update(deleted_at=timezone.now())
    Mention.objects.filter(room=room, seq=seq).delete()
