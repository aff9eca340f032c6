"""A live room's ring: its newest events, for replays that need no database read.

A replay shows each message as the log now has it (PROTOCOL.md "History and replay show
each message in its current state"). The database's answer is chat/history.py's; the
ring gives the same answer by applying edits, reactions and deletions to the message's
entry as they arrive in seq order (``current_state``: plain dicts in, plain dicts out).
"""

from __future__ import annotations

from collections import deque

from chat.live.events import OutboundEvent

# The events that act on an earlier message (``target``) and change its current state.
ACTING = frozenset({"edited", "reaction", "deleted"})
# The newest events of a ring stay as they were fanned out (dict and frames at hand): a
# reconnect storm replays those. Older ones are kept compact (``OutboundEvent.compact``).
KEEP_FULL = 64


def current_state(message: dict, acting: dict) -> dict:
    """``message`` (a ``message`` event) after ``acting`` (an edit, reaction or deletion
    of it): what chat/history.py would read from the database after that event."""
    kind = acting["type"]
    if message.get("deleted"):
        return message
    if kind == "deleted":
        blank = {"body": "", "html": "", "mentions": [], "attachments": [], "reactions": []}
        return {**message, **blank, "deleted": True}
    if kind == "edited":
        fields = {k: acting.get(k) for k in ("body", "html", "mentions")}
        return {**message, **fields, "edited_at": acting.get("ts")}
    emoji, user = acting.get("emoji"), acting.get("user")
    reactions = [dict(r, users=list(r["users"])) for r in message.get("reactions") or ()]
    entry = next((r for r in reactions if r["emoji"] == emoji), None)
    if acting.get("op") == "remove":
        if entry is not None and user in entry["users"]:
            entry["users"].remove(user)
            if not entry["users"]:
                reactions.remove(entry)
    elif entry is None:
        reactions.append({"emoji": emoji, "users": [user]})
    elif user not in entry["users"]:
        entry["users"].append(user)
    return {**message, "reactions": reactions}


class Ring:
    """The last ``size`` durable events of a room, in seq order, with no gap."""

    def __init__(self, size: int) -> None:
        self._events: deque[OutboundEvent] = deque(maxlen=size)

    def __iter__(self):
        return iter(self._events)

    def __len__(self) -> int:
        return len(self._events)

    def __getitem__(self, index: int) -> OutboundEvent:
        return self._events[index]

    def append(self, event: OutboundEvent) -> None:
        """The room's next event; one that acts on a message in the ring updates it."""
        events = self._events
        events.append(event)
        if len(events) > KEEP_FULL:
            events[-KEEP_FULL - 1].compact()
        if event.type not in ACTING:
            return
        target = event.event.get("target")
        if not isinstance(target, int) or target < events[0].seq:
            return
        index = target - events[0].seq
        if index < len(events) and events[index].type == "message":
            updated = OutboundEvent(current_state(events[index].event, event.event))
            if index < len(events) - KEEP_FULL:
                updated.compact()
            events[index] = updated

    def after(self, since: int, last_seq: int) -> list[OutboundEvent] | None:
        """The events after ``since`` (the room is at ``last_seq``), or None when the ring
        starts later (the replay must read the database)."""
        first = self._events[0].seq if self._events else last_seq + 1
        if since + 1 < first:
            return None
        return list(self._events)[since + 1 - first :]
