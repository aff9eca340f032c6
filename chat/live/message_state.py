"""A message's current state, from its event and the events that act on it.

The ring of a live room (chat/live/room.py) keeps recent events for replays, and a replay
shows each message as the log now has it (PROTOCOL.md "History and replay show each
message in its current state"). The database's answer is chat/history.py's; this is the
same answer for a ring entry, applied event by event as edits, reactions and deletions
arrive in seq order. Plain dicts in, plain dicts out: no Django, no Twisted.
"""

from __future__ import annotations

# The events that act on an earlier message (``target``) and change its current state.
ACTING = frozenset({"edited", "reaction", "deleted"})


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
