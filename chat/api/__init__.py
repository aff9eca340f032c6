"""The JSON API (PROTOCOL.md "HTTP API"): rooms in room_views, the log in message_views,
what every view shares in http."""

from chat.api.http import DEFAULT_LIMIT, MAX_LIMIT, MAX_SEQ, error, query_int
from chat.api.message_views import message, messages, reactions
from chat.api.moderation_views import moderate
from chat.api.room_views import join, leave, me, read, room, rooms
from chat.api.upload_views import uploads  # attachments

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "MAX_SEQ",
    "error",
    "join",
    "leave",
    "me",
    "message",
    "messages",
    "moderate",
    "query_int",
    "reactions",
    "read",
    "room",
    "rooms",
    "uploads",
]
