"""The admin of chat, one module per part of the data model (Django imports this package,
each module registers its own models)."""

from chat.admin import (
    account_admin,
    message_admin,
    moderation_admin,
    room_admin,
    upload_admin,  # attachments
    webhook_admin,  # webhooks (chat/webhooks)
)

__all__ = [
    "account_admin",
    "message_admin",
    "moderation_admin",
    "room_admin",
    "upload_admin",
    "webhook_admin",
]
