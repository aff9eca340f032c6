"""Operations that Django code (admin, views) performs on the room log."""

from __future__ import annotations

from django.db import transaction

from chat import log
from chat.live import publish
from chat.log_rules import deletion
from chat.models import Message


def delete_message(message_id: int, by_user_id: int | None = None) -> dict | None:
    """Soft-delete a message; every connected client removes it once this commits.

    Returns the ``deleted`` event, or None when there was nothing to delete. A deletion
    of someone else's message (staff in the admin, a script) is kept in the moderation
    audit log, in the same transaction.
    """
    with transaction.atomic():
        event = log.delete_message(message_id, by_user_id)
        if event is not None:
            row = Message.objects.filter(pk=message_id).values("room_id", "user_id").first()
            if row is not None and row["user_id"] != by_user_id:
                deletion(row["room_id"], by_user_id, row["user_id"], event["target"]).save()
            transaction.on_commit(lambda: publish.publish_committed(event))
    return event
