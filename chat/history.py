"""Reading the room log: replay, long-poll, the history API and the room page.

Every ``message`` comes out in its current state (PROTOCOL.md "History ... show each
message in its current state"): the latest ``body``, ``html`` and ``mentions`` (kept on
its row, which an edit updates), ``edited_at``, and ``reactions`` as
``[{"emoji", "users"}]`` in order of first reaction. The ``edited``, ``reaction`` and
``deleted`` events are returned too, at their own seqs, as they were appended.

A page costs four queries, whatever its size: the events, their users (a join), the
reactions of the page's messages, and their attachments (chat/log_uploads.py).
"""

from __future__ import annotations

from collections.abc import Iterable

from chat.log_uploads import with_attachments
from chat.models import Message, Reaction


def with_reactions(room_id: int, events: list[dict]) -> list[dict]:
    """Fill in ``reactions`` of the page's live messages from the Reaction rows."""
    seqs = [e["seq"] for e in events if e["type"] == "message" and not e.get("deleted")]
    if not seqs:
        return events
    rows = (
        Reaction.objects.filter(message__room_id=room_id, message__seq__in=seqs)
        .order_by("seq")
        .values_list("message__seq", "emoji", "user__username")
    )
    by_message: dict[int, dict[str, list[str]]] = {}
    for seq, emoji, username in rows:
        # dicts keep insertion order: emoji in order of first reaction, users in order.
        by_message.setdefault(seq, {}).setdefault(emoji, []).append(username)
    for event in events:
        found = by_message.get(event["seq"]) if event["type"] == "message" else None
        if found:
            event["reactions"] = [{"emoji": e, "users": users} for e, users in found.items()]
    return events


def current_events(room_id: int, room_slug: str, rows: Iterable[Message]) -> list[dict]:
    """The wire events of ``rows`` (of one room), each message in its current state: its
    reactions and attachments (history, replay, the IRC gateway's JOIN)."""
    events = with_reactions(room_id, [row.to_event(room_slug=room_slug) for row in rows])
    return with_attachments(room_id, events)


def read_events(room_id: int, room_slug: str, after: int, limit: int) -> list[dict]:
    """Events with ``seq > after`` in seq order, at most ``limit`` (replay, long-poll)."""
    rows = (
        Message.objects.filter(room_id=room_id, seq__gt=after)
        .select_related("user")
        .order_by("seq")[:limit]
    )
    return current_events(room_id, room_slug, rows)


def read_page(
    room_id: int, room_slug: str, before: int | None, limit: int, after: int | None = None
) -> list[dict]:
    """One history page, in seq order: without ``after``, the newest ``limit`` events
    below ``before`` (or of all); with ``after``, the oldest ``limit`` above it (both:
    the events strictly between)."""
    rows = Message.objects.filter(room_id=room_id).select_related("user")
    if before is not None:
        rows = rows.filter(seq__lt=before)
    if after is not None:
        return current_events(
            room_id, room_slug, rows.filter(seq__gt=after).order_by("seq")[:limit]
        )
    page = list(rows.order_by("-seq")[:limit])
    page.reverse()
    return current_events(room_id, room_slug, page)


def read_message(room_id: int, room_slug: str, seq: int) -> dict | None:
    """The event at ``seq`` (a message in its current state), or None."""
    row = Message.objects.filter(room_id=room_id, seq=seq).select_related("user").first()
    return None if row is None else current_events(room_id, room_slug, [row])[0]
