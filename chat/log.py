"""The room log: the one place where events get their seq.

Every durable event of a room is appended here, inside the database transaction that
inserts it. The room row is locked first (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite's
IMMEDIATE transactions lock the whole database), then its ``last_seq`` is advanced by the
number of new events, so seqs are gap-free and ordered across threads and processes and
are never handed out by anything but a committed transaction.

This module is plain Django: the chat store calls it from its own thread pool, the admin
from a WSGI thread. It never runs on the reactor thread.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection, transaction
from django.utils import timezone

from chat import access
from chat.live.records import ErrorCode, SendRequest, SendResult
from chat.live.validation import check_stored_send
from chat.models import Message, Room


def allocate_seqs(room_id: int, count: int) -> int:
    """Advance the room's ``last_seq`` by ``count``; returns the new last seq.

    Must run inside the transaction that inserts the events, after the room row is locked.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE chat_room SET last_seq = last_seq + %s WHERE id = %s RETURNING last_seq",
            [count, room_id],
        )
        return cursor.fetchone()[0]


def lock_rooms(slugs: Sequence[str]) -> dict[str, Room]:
    """Lock the rows of these rooms, in id order so that concurrent batches cannot deadlock."""
    rooms = Room.objects.select_for_update().filter(slug__in=set(slugs)).order_by("id")
    return {room.slug: room for room in rooms}


def append_messages(requests: Sequence[SendRequest]) -> list[SendResult]:
    """Append a batch of sends in ONE transaction (group commit); one result per request.

    Requests keep their order within a room, so sends pipelined by one sender get seqs in
    the order they were sent. A request whose (room, user, client_id) is already stored,
    in the database or earlier in the same batch, gets the original seq and appends nothing.
    A request with a field the database cannot store is answered with its error and left
    out, so that it cannot fail the others' transaction (the hub refuses those first; this
    is the door of the admin and the Python API, which come here directly).
    """
    results: list[SendResult | None] = [None] * len(requests)
    for index, request in enumerate(requests):
        problem = check_stored_send(request)
        if problem is not None:
            results[index] = SendResult(error=problem[0], detail=problem[1])
    valid = [(index, r) for index, r in enumerate(requests) if results[index] is None]
    if not valid:
        return results  # type: ignore[return-value]
    with transaction.atomic():
        rooms = lock_rooms([r.room for _, r in valid])
        allowed = access.posters((rooms[r.room], r.user_id) for _, r in valid if r.room in rooms)
        stored = _stored_client_ids(rooms, [r for _, r in valid])
        claimed: dict[tuple[int, int, str], int] = {}  # key -> index of its first send
        repeats: list[tuple[int, int]] = []  # (index, index of the first send)
        new_by_room: dict[str, list[int]] = {}
        for index, request in valid:
            room = rooms.get(request.room)
            if room is None:
                results[index] = SendResult(error=ErrorCode.NOT_FOUND)
                continue
            if (room.id, request.user_id) not in allowed:
                results[index] = SendResult(error=ErrorCode.FORBIDDEN)
                continue
            key = (room.id, request.user_id, request.client_id)
            if request.client_id is not None and key in stored:
                results[index] = SendResult(seq=stored[key])
                continue
            if request.client_id is not None and key in claimed:
                repeats.append((index, claimed[key]))
                continue
            if request.client_id is not None:
                claimed[key] = index
            new_by_room.setdefault(request.room, []).append(index)

        now = timezone.now()
        rows: list[tuple] = []
        for slug, indexes in new_by_room.items():
            room = rooms[slug]
            last = allocate_seqs(room.id, len(indexes))
            for seq, index in enumerate(indexes, start=last - len(indexes) + 1):
                request = requests[index]
                rows.append((room.id, seq, request.user_id, request.body, request.client_id))
                results[index] = SendResult(seq=seq, event=_message_event(slug, seq, request, now))
        _insert_messages(rows, now)

    # A client_id sent twice in one batch: the repeat gets the first send's seq.
    for index, first in repeats:
        results[index] = SendResult(seq=results[first].seq)
    return results  # type: ignore[return-value]


_INSERT = (
    "INSERT INTO chat_message (room_id, seq, kind, user_id, body, client_id, created_at) "
    "VALUES (%s, %s, 'message', %s, %s, %s, %s)"
)


def _insert_messages(rows: list[tuple], created_at) -> None:
    """One prepared INSERT run for every row (the hot path of a send).

    bulk_create spent a fifth of a loaded server's time compiling SQL for each batch;
    executemany reuses one statement. The row shape is Message's (see its fields).
    """
    if not rows:
        return
    stamp = connection.ops.adapt_datetimefield_value(created_at)
    with connection.cursor() as cursor:
        cursor.executemany(_INSERT, [(*row, stamp) for row in rows])


def _message_event(slug: str, seq: int, request: SendRequest, created_at) -> dict:
    """The event of a new message, as Message.to_event() makes it from the stored row."""
    return {
        "type": "message",
        "room": slug,
        "seq": seq,
        "user": request.username,
        "body": request.body,
        "ts": created_at.isoformat(),
        "client_id": request.client_id,
    }


def _stored_client_ids(
    rooms: dict[str, Room], requests: Sequence[SendRequest]
) -> dict[tuple[int, int, str], int]:
    """(room id, user id, client_id) -> seq for the batch's client_ids already stored."""
    wanted: dict[int, tuple[set[int], set[str]]] = {}
    for request in requests:
        room = rooms.get(request.room)
        if room is not None and request.client_id is not None:
            users, client_ids = wanted.setdefault(room.id, (set(), set()))
            users.add(request.user_id)
            client_ids.add(request.client_id)
    stored: dict[tuple[int, int, str], int] = {}
    for room_id, (users, client_ids) in wanted.items():
        # Constrain all three columns of the idempotency index: with room and client_id
        # alone the database walks every message of the room, on every batch.
        rows = Message.objects.filter(
            room_id=room_id, user_id__in=users, client_id__in=client_ids
        ).values_list("user_id", "client_id", "seq")
        for user_id, client_id, seq in rows:
            stored[(room_id, user_id, client_id)] = seq
    return stored


def delete_message(message_id: int, by_user_id: int | None = None) -> dict | None:
    """Soft-delete a message and append its ``deleted`` event; returns that event.

    Returns None when the message is already deleted or is not a ``message`` event. The
    caller hands the event to the live hub once the transaction has committed.
    """
    with transaction.atomic():
        message = Message.objects.select_related("room").get(pk=message_id)
        lock_rooms([message.room.slug])
        message.refresh_from_db(fields=["deleted_at"])
        if message.kind != Message.Kind.MESSAGE or message.deleted_at is not None:
            return None
        now = timezone.now()
        message.deleted_at = now
        message.save(update_fields=["deleted_at"])
        seq = allocate_seqs(message.room_id, 1)
        event_row = Message.objects.create(
            room_id=message.room_id,
            seq=seq,
            kind=Message.Kind.DELETED,
            user_id=by_user_id,
            target=message.seq,
            created_at=now,
        )
        return event_row.to_event(room_slug=message.room.slug)


def read_events(room_id: int, room_slug: str, after: int, limit: int) -> list[dict]:
    """Events with ``seq > after`` in seq order, at most ``limit`` (replay, long-poll)."""
    rows = (
        Message.objects.filter(room_id=room_id, seq__gt=after)
        .select_related("user")
        .order_by("seq")[:limit]
    )
    return [row.to_event(room_slug=room_slug) for row in rows]


def read_page(room_id: int, room_slug: str, before: int | None, limit: int) -> list[dict]:
    """The ``limit`` events before seq ``before`` (newest last): the history API's page."""
    rows = Message.objects.filter(room_id=room_id).select_related("user")
    if before is not None:
        rows = rows.filter(seq__lt=before)
    page = list(rows.order_by("-seq")[:limit])
    page.reverse()
    return [row.to_event(room_slug=room_slug) for row in page]
