"""The room log: the one place where events get their seq.

Every durable event of a room is appended here, inside the database transaction that
inserts it. The room row is locked first (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite's
IMMEDIATE transactions lock the whole database), then its ``last_seq`` is advanced by the
number of new events, so seqs are gap-free and ordered across threads and processes and
are never handed out by anything but a committed transaction.

Writes are sends, edits, deletions and reactions (``SendRequest.kind``): each appends one
event (a no-op reaction none) and changes the target message's current state in the same
transaction, so that history, the unread counts and the log never disagree. Bodies are
rendered (chat/render.py) before the room rows are locked: rendering and the mention
lookup are the slow part of a write, and the lock on SQLite is the whole database's.

The readers are chat/history.py's (re-exported here: the store and the views read the
log through this module).

This module is plain Django: the chat store calls it from its own thread pool, the admin
from a WSGI thread. It never runs on the reactor thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone

from chat import access, fast_queries, signals
from chat.history import read_events, read_message, read_page
from chat.live.publish import AccessChange, announce_access
from chat.live.records import ErrorCode, SendRequest, SendResult, WriteKind
from chat.live.validation import check_stored_send
from chat.log_rules import WriteRules  # moderation: mutes, slow mode, the audit of deletes
from chat.log_state import Body, RoomAppend, Target, flush_all
from chat.log_uploads import NOT_YOURS, BatchUploads
from chat.models import Message, Room
from chat.render import render

__all__ = [
    "allocate_seqs",
    "append_events",
    "delete_message",
    "lock_rooms",
    "read_events",
    "read_message",
    "read_page",
]


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
    return fast_queries.lock_rooms(slugs)


def append_events(requests: Sequence[SendRequest]) -> list[SendResult]:
    """Append a batch of writes in ONE transaction (group commit); one result per request.

    Requests keep their order within a room, so writes pipelined by one sender get seqs in
    the order they were sent. A request whose (room, user, client_id) is already stored,
    in the database or earlier in the same batch, gets the original seq and appends
    nothing. A request with a field the database cannot store is answered with its error
    and left out, so that it cannot fail the others' transaction (the hub refuses those
    first; this is the door of the admin and the REST API without a hub, which come here
    directly).
    """
    results: list[SendResult | None] = [None] * len(requests)
    for index, request in enumerate(requests):
        problem = check_stored_send(request)
        if problem is not None:
            results[index] = SendResult(error=problem[0], detail=problem[1])
    valid = [(index, r) for index, r in enumerate(requests) if results[index] is None]
    if not valid:
        return results  # type: ignore[return-value]
    rendered = _render_bodies([r for _, r in valid])
    joined: dict[str, set[int]] = {}
    with transaction.atomic():
        rooms = lock_rooms([r.room for _, r in valid])
        pairs = [(rooms[r.room], r.user_id) for _, r in valid if r.room in rooms]
        # One reading of memberships and bans for both rules: a poster is a reader of a
        # room that is not archived (access.posters), signed in.
        readers = access.readers(pairs)
        archived = {room.id for room, _ in pairs if room.is_archived}
        posters = {(r, u) for r, u in readers if u is not None and r not in archived}
        stored = _stored_client_ids(rooms, [r for _, r in valid])
        uploads = BatchUploads.read([r for _, r in valid])  # attachments, rows locked
        claimed: dict[tuple[int, int, str], int] = {}  # key -> index of its first write
        repeats: list[tuple[int, int]] = []  # (index, index of the first write)
        now = timezone.now()
        rules = WriteRules(rooms, [r for _, r in valid], now)  # moderation (log_rules.py)
        appends: dict[str, RoomAppend] = {}
        for index, request in valid:
            room = rooms.get(request.room)
            if room is None:
                results[index] = SendResult(error=ErrorCode.NOT_FOUND)
                continue
            pair = (room.id, request.user_id)
            may = readers if request.kind == WriteKind.DELETE else posters
            if pair not in may:
                results[index] = SendResult(error=ErrorCode.FORBIDDEN)
                continue
            key = (room.id, request.user_id, request.client_id)
            if request.client_id is not None and key in stored:
                results[index] = SendResult(seq=stored[key])
                continue
            if request.client_id is not None and key in claimed:
                repeats.append((index, claimed[key]))
                continue
            refused = rules.refusal(room, request)  # muted; slow mode
            if refused is not None:
                results[index] = refused
                continue
            append = appends.get(room.slug)
            if append is None:
                append = appends[room.slug] = RoomAppend(room, now, valid_targets(room, valid))
            result = _apply(append, request, rendered.get(id(request)), uploads)
            results[index] = result
            rules.appended(append, request, result)
            if result.created and request.client_id is not None:
                claimed[key] = index
            if result.created and request.kind == WriteKind.SEND and room.is_public:
                joined.setdefault(room.slug, set()).add(request.user_id)
        flush_all(appends.values())
        uploads.link()  # the claimed uploads point at their messages, now written
        rules.flush()
        _join_by_sending(rooms, joined, results, requests)
        # event_appended after the commit (chat/signals.py), for every door's events.
        signals.events_committed([r.event for r in results if r is not None and r.created])

    # A client_id sent twice in one batch: the repeat gets the first write's seq.
    for index, first in repeats:
        results[index] = SendResult(seq=results[first].seq)
    return results  # type: ignore[return-value]


def valid_targets(room: Room, valid: list[tuple[int, SendRequest]]) -> dict[int, Target]:
    """The messages the batch's writes in ``room`` name (targets, replies), read at once."""
    seqs = {
        seq
        for _, r in valid
        if r.room == room.slug
        for seq in (r.target, r.reply_to)
        if seq is not None
    }
    if not seqs:
        return {}
    rows = (
        Message.objects.filter(room_id=room.id, seq__in=seqs)
        .order_by()
        .values_list("id", "seq", "kind", "user_id", "deleted_at")
    )
    return {
        seq: Target(pk, seq, kind, user_id, deleted) for pk, seq, kind, user_id, deleted in rows
    }


def _apply(
    append: RoomAppend, request: SendRequest, rendered: Body | None, uploads: BatchUploads
) -> SendResult:
    """One write, in the transaction, with the room locked."""
    kind = request.kind
    if kind == WriteKind.SEND:
        if request.reply_to is not None and not append.is_message(request.reply_to):
            return SendResult(
                error=ErrorCode.BAD_REQUEST, detail="reply_to is not a message of this room."
            )
        # Attachments: claimed last, so that a send refused for another reason takes none.
        attachments = uploads.claim(request, append.room) if request.attachments else []
        if attachments is None:
            return SendResult(error=ErrorCode.BAD_REQUEST, detail=NOT_YOURS)
        result = append.message(request, rendered, attachments)
        uploads.attached(append.room, result.seq, attachments)
        return result
    target = append.target(request.target)
    if target is None or target.kind != Message.Kind.MESSAGE:
        return SendResult(
            error=ErrorCode.BAD_REQUEST, detail="target is not a message of this room."
        )
    if target.deleted:
        return SendResult(error=ErrorCode.BAD_REQUEST, detail="That message was deleted.")
    if kind == WriteKind.EDIT:
        if target.user_id != request.user_id:
            return SendResult(
                error=ErrorCode.FORBIDDEN, detail="You may only edit your own messages."
            )
        return append.edit(request, target, rendered)
    if kind == WriteKind.DELETE:
        if target.user_id != request.user_id and not access.may_moderate(
            append.room, request.user_id
        ):
            return SendResult(
                error=ErrorCode.FORBIDDEN, detail="You may only delete your own messages."
            )
        return append.delete(request.user_id, request.username, request.client_id, target)
    return append.react(request, target)


# -- rendering, before the lock ----------------------------------------------------------


def _render_bodies(requests: list[SendRequest]) -> dict[int, Body]:
    """``html`` and ``mentions`` of every send and edit, keyed by ``id(request)``."""
    texts = [r for r in requests if r.kind in (WriteKind.SEND, WriteKind.EDIT)]
    if not texts:
        return {}
    rooms = {
        room.slug: room
        for room in Room.objects.filter(slug__in={r.room for r in texts})
        .order_by()
        .only("id", "slug", "is_public", "is_archived")
    }
    out: dict[int, Body] = {}
    for request in texts:
        room = rooms.get(request.room)
        ids: dict[str, int] = {}
        mentionable = partial(_readers_named, room, ids) if room is not None else frozenset()
        out[id(request)] = Body(render(request.body, mentionable), ids)
    return out


def _readers_named(room: Room, ids: dict[str, int], names: list[str]) -> set[str]:
    """Of ``names``, the usernames of active users who may read ``room`` (their ids go
    into ``ids``): one query for the users, one for memberships of a private room."""
    model = get_user_model()
    users = model._default_manager.filter(**{f"{model.USERNAME_FIELD}__in": names})
    if any(f.name == "is_active" for f in model._meta.get_fields()):
        users = users.filter(is_active=True)
    found = dict(users.values_list("pk", model.USERNAME_FIELD))
    allowed = access.readers((room, pk) for pk in found)
    named = {pk: found[pk] for _room_id, pk in allowed if pk in found}
    ids.update({name: pk for pk, name in named.items()})
    return set(named.values())


# -- sending joins a public room -----------------------------------------------------------


def _join_by_sending(rooms, joined: dict[str, set[int]], results, requests) -> None:
    """PROTOCOL.md: sending in a public room joins it. The new members' read positions
    start at their first message of the batch (everything before it was already there).
    One query for the whole batch, whatever the number of rooms."""
    if not joined:
        return
    ids = {rooms[slug].id: slug for slug in joined}
    members = fast_queries.member_pairs(ids, {u for users in joined.values() for u in users})
    new_by_room = {
        room_id: sorted(u for u in joined[slug] if (room_id, u) not in members)
        for room_id, slug in ids.items()
    }
    new_by_room = {room_id: users for room_id, users in new_by_room.items() if users}
    if not new_by_room:
        return
    first: dict[tuple[str, int], int] = {}
    for request, result in zip(requests, results, strict=True):
        if result and result.created and request.room in joined:
            first.setdefault((request.room, request.user_id), result.seq)
    # ON CONFLICT DO NOTHING (SQLite and PostgreSQL alike): a join made at the same
    # moment by another door (the API's join) must not fail this batch's sends.
    with connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO chat_room_members (room_id, user_id) VALUES (%s, %s) "
            "ON CONFLICT DO NOTHING",
            [(room_id, u) for room_id, users in new_by_room.items() for u in users],
        )
        cursor.executemany(
            "INSERT INTO chat_readposition (room_id, user_id, read_seq) "
            "VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
            [
                (room_id, u, first[(ids[room_id], u)])
                for room_id, users in new_by_room.items()
                for u in users
            ],
        )
    for room_id, users in new_by_room.items():
        change = AccessChange.room_changed(ids[room_id], tuple(users))
        transaction.on_commit(partial(announce_access, change), robust=True)


def _stored_client_ids(
    rooms: dict[str, Room], requests: Sequence[SendRequest]
) -> dict[tuple[int, int, str], int]:
    """(room id, user id, client_id) -> seq for the batch's client_ids already stored.

    One query for the batch: the three columns of the idempotency index, each constrained
    to the batch's values (with room and client_id alone the database walks every message
    of the room), then the exact triples kept."""
    wanted: set[tuple[int, int, str]] = set()
    for request in requests:
        room = rooms.get(request.room)
        if room is not None and request.client_id is not None:
            wanted.add((room.id, request.user_id, request.client_id))
    if not wanted:
        return {}
    rows = fast_queries.stored_client_ids(
        {k[0] for k in wanted}, {k[1] for k in wanted}, {k[2] for k in wanted}
    )
    return {(r, u, c): seq for r, u, c, seq in rows if (r, u, c) in wanted}


def delete_message(message_id: int, by_user_id: int | None = None) -> dict | None:
    """Soft-delete a message and append its ``deleted`` event; returns that event.

    The admin's door (staff may delete any message; ``by_user_id`` None is a script).
    Returns None when the message is already deleted or is not a ``message`` event. The
    caller hands the event to the live hub once the transaction has committed.
    """
    with transaction.atomic():
        message = Message.objects.select_related("room").get(pk=message_id)
        room = lock_rooms([message.room.slug])[message.room.slug]
        row = Message.objects.filter(pk=message_id).values_list(
            "id", "seq", "kind", "user_id", "deleted_at"
        )[0]
        target = Target(*row)
        if target.kind != Message.Kind.MESSAGE or target.deleted:
            return None
        username = None
        if by_user_id is not None:
            username = (
                get_user_model()
                ._default_manager.filter(pk=by_user_id)
                .values_list(get_user_model().USERNAME_FIELD, flat=True)
                .first()
            )
        append = RoomAppend(room, timezone.now(), {target.seq: target})
        result = append.delete(by_user_id, username, None, target)
        append.flush()
        if result.created:  # event_appended after the commit (chat/signals.py)
            signals.events_committed([result.event])
        return result.event
