"""The admin of chat, one module per part of the data model (Django imports this package,
each module registers its own models)."""

from chat.admin import message_admin, room_admin

__all__ = ["message_admin", "room_admin"]
