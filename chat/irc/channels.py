"""A room as the IRC client sees it: one ``RoomFeed`` per JOINed channel (and one per
direct room followed), the live room's subscriber, as a WebSocket connection is
(chat/live/subscriber.py): it is given the presence list first, then events in seq order,
and ``drop(reason)`` when the room ends it (revoked: a kick, a ban, a lost membership).

Events become lines: a ``message`` a PRIVMSG with ``time`` and ``msgid`` tags (when the
client asked for server-time / message-tags), edits and deletions NOTICEs that say so,
presence changes JOIN/PART of the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chat.irc.tags import format_line, split_text, text_limit
from chat.live.events import OutboundEvent
from chat.live.records import RoomInfo

if TYPE_CHECKING:
    from chat.irc.protocol import IRCConnection


def mask(username: str) -> str:
    """PROTOCOL.md: others speak as ``<user>!<user>@parley``."""
    return f"{username}!{username}@parley"


def irc_time(ts: str | None) -> str | None:
    """``2026-11-21T22:00:00.123456+00:00`` -> ``2026-11-21T22:00:00.123Z`` (server-time
    wants UTC with milliseconds)."""
    if not ts or len(ts) < 19:
        return None
    base, _, rest = ts[:19], ts[19:20], ts[20:]
    millis = (rest[:3] if _ == "." else "").ljust(3, "0")
    return f"{base}.{millis}Z"


def message_text(event: dict) -> str:
    """A message's text for IRC: its body, and the URL of each attachment."""
    text = event.get("body") or ""
    for attachment in event.get("attachments") or ():
        url = attachment.get("url")
        if url:
            text = f"{text}\n{attachment.get('name', 'file')}: {url}" if text else url
    return text


class RoomFeed:
    """The subscriber of one room for one IRC connection. ``target`` is where its lines
    go: ``#slug`` for a channel, the other user's nick for a direct room."""

    transport_name = "irc"

    def __init__(self, connection: IRCConnection, info: RoomInfo, peer: str | None = None):
        self.connection = connection
        self.user = connection.user
        self.session_key = connection.credential
        self.info = info
        self.slug = info.slug
        self.peer = peer  # a direct room's other user; None for a channel
        self.channel = f"#{info.slug}"
        self.room = None  # the LiveRoom, once loaded
        self.subscribed = False
        self.present: set[str] | None = None  # None until the first presence list
        self.last_seq = 0

    @property
    def direct(self) -> bool:
        return self.peer is not None

    # -- the room's subscriber -----------------------------------------------------------

    def started(self, last_seq: int) -> None:
        self.last_seq = last_seq

    def deliver(self, event: OutboundEvent) -> None:
        if self.connection.closed:
            return
        kind = event.type
        data = event.event
        if event.seq is not None:
            self.last_seq = max(self.last_seq, event.seq)
        if kind == "message":
            self.message(data)
        elif kind == "presence":
            if not self.direct:
                self.presence(data.get("users") or [])
        elif kind == "edited":
            self.notice(data, f"edited message {data.get('target')}: {data.get('body', '')}")
        elif kind == "deleted":
            self.notice(data, f"deleted message {data.get('target')}")
        elif kind == "reaction":
            verb = "reacted" if data.get("op") == "add" else "took back"
            self.notice(data, f"{verb} {data.get('emoji')} on message {data.get('target')}")
        # typing and read are not IRC's

    def drop(self, reason: str) -> None:
        """The room ended the subscription: kicked/banned/no longer a member (revoked),
        the database (unavailable), a slow client, shutdown."""
        self.subscribed = False
        self.connection.feed_dropped(self, reason)

    # -- lines -----------------------------------------------------------------------

    def tags(self, data: dict) -> dict[str, str]:
        connection = self.connection
        tags: dict[str, str] = {}
        if "server-time" in connection.caps:
            stamp = irc_time(data.get("ts"))
            if stamp:
                tags["time"] = stamp
        if "message-tags" in connection.caps and data.get("seq") is not None:
            tags["msgid"] = f"{data['room']}:{data['seq']}"
        return tags

    def message(self, data: dict, batch: str | None = None, replay: bool = False) -> None:
        """A ``message`` event; ``replay``: from JOIN's history (``batch`` its id when the
        client has the batch capability), where the user's own lines are shown too."""
        connection = self.connection
        author = data.get("user") or "?"
        own = self.user is not None and author == self.user.username
        client_id = data.get("client_id")
        label = None
        if own and client_id is not None and connection.sent_here(client_id):
            if "echo-message" not in connection.caps and not replay:
                return  # the client shows its own line itself
            label = connection.label_of(client_id)
        tags = self.tags(data)
        if batch:
            tags["batch"] = batch
        if label and "message-tags" in connection.caps:
            tags["label"] = label
        # In a direct room someone else's line comes to me; my own (echoed, or from
        # another client of mine) goes to the peer, as a client shows what it sent.
        target = (self.peer if own else connection.nick) if self.direct else self.channel
        # A long username and channel leave less than 400 bytes of the 512 to the text.
        limit = text_limit("PRIVMSG", target, mask(author))
        if not own and not replay and not self.direct:
            # The same bytes for every client of the room with the same capabilities:
            # made once per event (the fan-out calls each feed in turn), as events.py
            # makes one WebSocket frame for all.
            factory = connection.factory
            if factory.lines_of is not data:
                factory.lines_of, factory.lines = data, {}
            key = ("time" in tags, "msgid" in tags)
            wire = factory.lines.get(key)
            if wire is None:
                wire = factory.lines[key] = b"".join(
                    format_line("PRIVMSG", [target, line], mask(author), tags)
                    for line in split_text(message_text(data), limit)
                )
            connection.write(wire)
            return
        for line in split_text(message_text(data), limit):
            connection.send_line("PRIVMSG", [target, line], prefix=mask(author), tags=tags)

    def notice(self, data: dict, text: str) -> None:
        target = self.connection.nick if self.direct else self.channel
        author = data.get("user") or "parley"
        for line in split_text(text, text_limit("NOTICE", target, mask(author))):
            self.connection.send_line(
                "NOTICE", [target, line], prefix=mask(author), tags=self.tags(data)
            )

    def presence(self, users: list[str]) -> None:
        now = set(users)
        me = self.user.username if self.user is not None else None
        if self.present is None:
            self.present = now
            self.connection.names(self)
            return
        joined = sorted(now - self.present - {me})
        left = sorted(self.present - now - {me})
        self.present = now
        for username in joined:
            self.connection.send_line("JOIN", [self.channel], prefix=mask(username))
        for username in left:
            self.connection.send_line("PART", [self.channel, "left"], prefix=mask(username))

    def names(self) -> list[str]:
        present = set(self.present or ())
        if self.user is not None:
            present.add(self.user.username)
        return sorted(present)

    def __repr__(self) -> str:
        return f"<RoomFeed {self.slug} {self.user.username if self.user else None}>"
