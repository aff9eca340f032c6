"""One room's part of an append transaction (chat/log.py): its seqs and its writes.

``RoomAppend`` is made once the room's row is locked. It hands out the room's next seqs
from the locked row's ``last_seq``, queues new messages for one prepared INSERT (the hot
path: a batch of sends is one ``executemany``, whatever its size), and applies edits,
deletions and reactions to their target's current state with the ORM (rarer; each first
flushes the queued messages, so a target appended earlier in the same batch exists).
``flush`` writes what is queued and the room's new ``last_seq``; ``flush_all`` does it for
every room of a batch at once.

Each event's wire form is made by ``Message.to_event`` from the row as stored, so a live
event and the same event replayed from the database are the same JSON.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db import connection

from chat.live.records import ErrorCode, SendRequest, SendResult
from chat.models import Mention, Message, Reaction, Room
from chat.render import Rendered

# PROTOCOL.md: at most 20 distinct emoji per message.
MAX_DISTINCT_REACTIONS = 20

_INSERT = (
    "INSERT INTO chat_message (room_id, seq, kind, user_id, body, html, mentions, client_id, "
    "reply_to, emoji, op, created_at) "
    "VALUES (%s, %s, 'message', %s, %s, %s, %s, %s, %s, '', '', %s)"
)
_MENTIONS = Message._meta.get_field("mentions")


@dataclass(slots=True)
class Target:
    """A message a write names: its row id (None while queued), seq, kind, author."""

    id: int | None
    seq: int
    kind: str
    user_id: int | None
    deleted: datetime | None


@dataclass(frozen=True, slots=True)
class Body:
    """A rendered text and the ids of the users it mentions (username -> id)."""

    rendered: Rendered
    mention_ids: dict[str, int]

    def mentioned(self, author_id: int) -> list[int]:
        """The ids of the users mentioned, but the author: a mention of oneself is text,
        not a notification (no ``Mention`` row, so it counts for nobody)."""
        ids = (self.mention_ids[name] for name in self.rendered.mentions)
        return [user_id for user_id in ids if user_id != author_id]


class RoomAppend:
    def __init__(self, room: Room, now: datetime, targets: dict[int, Target]) -> None:
        self.room = room
        self.now = now
        self.targets = targets
        self.next_seq = room.last_seq + 1
        self._written_last = room.last_seq
        self._rows: list[tuple] = []
        self._mentions: list[tuple[int, int, int]] = []
        self._stamp = connection.ops.adapt_datetimefield_value(now)

    def _seq(self) -> int:
        seq = self.next_seq
        self.next_seq += 1
        return seq

    # -- lookups ---------------------------------------------------------------------

    def is_message(self, seq: int) -> bool:
        target = self.targets.get(seq)
        return target is not None and target.kind == Message.Kind.MESSAGE

    def target(self, seq: int) -> Target | None:
        """The message at ``seq``, with its row id (flushing the queue if it is queued)."""
        target = self.targets.get(seq)
        if target is not None and target.id is None:
            self.flush()
            target.id = Message.objects.get(room_id=self.room.id, seq=seq).pk
        return target

    # -- writes ----------------------------------------------------------------------

    def message(
        self, request: SendRequest, body: Body, attachments: list[dict] | None = None
    ) -> SendResult:
        seq = self._seq()
        rendered = body.rendered
        mentions = _MENTIONS.get_db_prep_value(rendered.mentions, connection)
        self._rows.append(
            (
                self.room.id,
                seq,
                request.user_id,
                request.body,
                rendered.html,
                mentions,
                request.client_id,
                request.reply_to,
                self._stamp,
            )
        )
        self._mentions.extend(
            (self.room.id, seq, user_id) for user_id in body.mentioned(request.user_id)
        )
        self.targets[seq] = Target(None, seq, Message.Kind.MESSAGE, request.user_id, None)
        row = Message(
            room_id=self.room.id,
            seq=seq,
            kind=Message.Kind.MESSAGE,
            user_id=request.user_id,
            body=request.body,
            html=rendered.html,
            mentions=rendered.mentions,
            client_id=request.client_id,
            reply_to=request.reply_to,
            created_at=self.now,
        )
        event = row.to_event(self.room.slug, request.username, attachments=attachments)
        return SendResult(seq=seq, event=event)

    def edit(self, request: SendRequest, target: Target, body: Body) -> SendResult:
        self.flush()
        rendered = body.rendered
        Message.objects.filter(pk=target.id).update(
            body=request.body, html=rendered.html, mentions=rendered.mentions, edited_at=self.now
        )
        Mention.objects.filter(room_id=self.room.id, seq=target.seq).delete()
        Mention.objects.bulk_create(
            Mention(room_id=self.room.id, seq=target.seq, user_id=user_id)
            for user_id in body.mentioned(request.user_id)
        )
        return self._event(
            request.user_id,
            request.username,
            kind=Message.Kind.EDITED,
            target=target.seq,
            body=request.body,
            html=rendered.html,
            mentions=rendered.mentions,
            client_id=request.client_id,
        )

    def delete(
        self, user_id: int | None, username: str | None, client_id: str | None, target: Target
    ) -> SendResult:
        self.flush()
        Message.objects.filter(pk=target.id).update(deleted_at=self.now)
        Mention.objects.filter(room_id=self.room.id, seq=target.seq).delete()
        target.deleted = self.now
        return self._event(
            user_id,
            username,
            kind=Message.Kind.DELETED,
            target=target.seq,
            client_id=client_id,
        )

    def react(self, request: SendRequest, target: Target) -> SendResult:
        self.flush()
        reactions = Reaction.objects.filter(message_id=target.id)
        mine = reactions.filter(user_id=request.user_id, emoji=request.emoji)
        if request.op == "remove":
            if not mine.exists():
                return SendResult(seq=None)  # nothing to remove: a no-op, acked with null
            mine.delete()
        else:
            if mine.exists():
                return SendResult(seq=None)  # already in effect
            emoji = set(reactions.values_list("emoji", flat=True).distinct())
            if request.emoji not in emoji and len(emoji) >= MAX_DISTINCT_REACTIONS:
                return SendResult(
                    error=ErrorCode.BAD_REQUEST,
                    detail=f"A message has at most {MAX_DISTINCT_REACTIONS} different reactions.",
                )
            Reaction.objects.create(
                message_id=target.id,
                user_id=request.user_id,
                emoji=request.emoji,
                seq=self.next_seq,
            )
        return self._event(
            request.user_id,
            request.username,
            kind=Message.Kind.REACTION,
            target=target.seq,
            emoji=request.emoji,
            op=request.op,
            client_id=request.client_id,
        )

    def _event(self, user_id: int | None, username: str | None, **fields) -> SendResult:
        seq = self._seq()
        row = Message.objects.create(
            room_id=self.room.id, seq=seq, user_id=user_id, created_at=self.now, **fields
        )
        return SendResult(seq=seq, event=row.to_event(self.room.slug, username))

    # -- the end -----------------------------------------------------------------------

    def flush(self) -> None:
        """Write the queued messages and mentions, and the room's last seq."""
        flush_all([self])

    def _take(self) -> tuple[list[tuple], list[tuple[int, int, int]], tuple[int, int] | None]:
        """What is queued (rows, mentions, (last seq, room id) or None), now written."""
        rows, mentions = self._rows, self._mentions
        self._rows, self._mentions = [], []
        last = self.next_seq - 1
        update = None
        if last != self._written_last:
            update = (last, self.room.id)
            self._written_last = last
        return rows, mentions, update


def flush_all(appends: Iterable[RoomAppend]) -> None:
    """Write what every room of the batch queued: one ``executemany`` per statement for
    the whole batch, not per room. With many rooms and few senders in each, a batch holds
    sends of as many rooms as sends (bench/write_path.py): per-room statements made the
    cost of a send grow with the number of rooms in its batch."""
    rows: list[tuple] = []
    mentions: list[tuple[int, int, int]] = []
    updates: list[tuple[int, int]] = []
    for append in appends:
        r, m, u = append._take()
        rows += r
        mentions += m
        if u is not None:
            updates.append(u)
    with connection.cursor() as cursor:
        if rows:
            cursor.executemany(_INSERT, rows)
        if mentions:
            cursor.executemany(
                "INSERT INTO chat_mention (room_id, seq, user_id) VALUES (%s, %s, %s)", mentions
            )
        if updates:
            cursor.executemany("UPDATE chat_room SET last_seq = %s WHERE id = %s", updates)
