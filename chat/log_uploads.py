"""Attachments in the room log: a send claims its uploads inside the append transaction
(chat/log.py), and readers of the log put them back on the messages (chat/history.py).

PROTOCOL.md "Attachments": an upload may be attached once, only by its uploader, only in
its room. The batch's uploads are read once, with their rows locked (``FOR UPDATE`` on
PostgreSQL; SQLite's IMMEDIATE transaction locks the database), after the room rows: a
second send naming the same upload, in this batch or in another transaction, and the
cleanup of unattached uploads (chat/uploads.py) cannot both have it. A send naming an
upload that is not the sender's, not this room's, already attached, or unknown, is
``bad_request`` and appends nothing (its rows are not touched). An idempotent resend never
gets here: its client_id is answered with the original seq before (chat/log.py).

A message's attachments are listed in the order of their uploads (created_at, then id),
so that the event appended and the same message read back from the database are equal.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db.models import Subquery

from chat.live.records import SendRequest, WriteKind
from chat.models import Message, Room, Upload
from chat.uploads import attachment

NOT_YOURS = (
    "attachments names an upload that is not the sender's, not this room's, or already attached."
)

_FIELDS = ("id", "room_id", "user_id", "message_id", "created_at", "name", "size")
_FIELDS += ("content_type", "width", "height", "thumbnail")


class BatchUploads:
    """The uploads one append batch names, locked; claimed by its sends one by one."""

    def __init__(self, rows: dict[str, tuple]) -> None:
        self._rows = rows
        self._taken: set[str] = set()
        self._links: list[tuple[int, int, list[str]]] = []  # (room id, seq, upload ids)

    @classmethod
    def read(cls, requests: Sequence[SendRequest]) -> BatchUploads:
        ids = {
            upload_id for r in requests if r.kind == WriteKind.SEND for upload_id in r.attachments
        }
        if not ids:
            return cls({})
        rows = Upload.objects.select_for_update().filter(id__in=ids).values_list(*_FIELDS)
        return cls({row[0]: row for row in rows})

    def claim(self, request: SendRequest, room: Room) -> list[dict] | None:
        """The attachment objects of ``request``'s uploads, now taken by it; None (and
        nothing taken) if any of them may not be attached by this send."""
        rows = []
        for upload_id in request.attachments:
            row = self._rows.get(upload_id)
            if (
                row is None
                or upload_id in self._taken
                or row[1] != room.id
                or row[2] != request.user_id
                or row[3] is not None
            ):
                return None
            rows.append(row)
        self._taken.update(request.attachments)
        rows.sort(key=lambda row: (row[4], row[0]))
        return [_attachment(row[:1] + row[5:]) for row in rows]

    def attached(self, room: Room, seq: int, attachments: list[dict]) -> None:
        """The message at ``seq`` carries these; linked in ``link`` once it is written."""
        if attachments:
            self._links.append((room.id, seq, [a["id"] for a in attachments]))

    def link(self) -> None:
        """Point the claimed uploads at their messages (after the messages' INSERT)."""
        for room_id, seq, ids in self._links:
            message = Message.objects.filter(room_id=room_id, seq=seq).values("id")[:1]
            Upload.objects.filter(id__in=ids, message__isnull=True).update(
                message_id=Subquery(message)
            )
        self._links = []


def _attachment(row: tuple) -> dict:
    upload_id, name, size, content_type, width, height, thumbnail = row
    return attachment(upload_id, name, size, content_type, width, height, bool(thumbnail))


def with_attachments(room_id: int, events: list[dict]) -> list[dict]:
    """Fill in ``attachments`` of the page's live messages from their Upload rows (one
    query); a deleted message keeps ``[]``."""
    seqs = [e["seq"] for e in events if e["type"] == "message" and not e.get("deleted")]
    if not seqs:
        return events
    rows = (
        Upload.objects.filter(message__room_id=room_id, message__seq__in=seqs)
        .order_by("created_at", "id")
        .values_list(
            "message__seq", "id", "name", "size", "content_type", "width", "height", "thumbnail"
        )
    )
    by_message: dict[int, list[dict]] = {}
    for seq, *row in rows:
        by_message.setdefault(seq, []).append(_attachment(tuple(row)))
    for event in events:
        found = by_message.get(event["seq"]) if event["type"] == "message" else None
        if found:
            event["attachments"] = found
    return events
