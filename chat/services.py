"""Operations that Django code (admin, views) performs on the room log."""

from __future__ import annotations

from django.db import transaction

from chat import log
from chat.live import publish


def delete_message(message_id: int, by_user_id: int | None = None) -> dict | None:
    """Soft-delete a message; every connected client removes it once this commits.

    Returns the ``deleted`` event, or None when there was nothing to delete.
    """
    event = log.delete_message(message_id, by_user_id)
    if event is not None:
        transaction.on_commit(lambda: publish.publish_committed(event))
    return event
