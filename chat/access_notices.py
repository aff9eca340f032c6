"""Access changes from a process with no live hub and no Redis (PROTOCOL.md "Losing
access": within 1 s, from every door).

``manage.py shell``, a management command or a worker that removes a member, bans a user
or revokes a token commits the change and then calls ``chat.live.publish.announce_access``.
With no hub in the process and no Redis to publish on (chat/live/redis_publish.py), the
change is written here as an ``AccessNotice`` row, and every server reads the rows newer
than the last it saw at its cursor check (chat/live/notices.py, every 0.25 s), as it
reads ``last_seq`` for the events such a process appends. Without this, such a change
reached live connections at the 5 s room check.

Plain Django: called in the writing process after its commit, and on the servers' store
threads.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import DatabaseError
from django.utils import timezone

from chat.models import AccessNotice

logger = logging.getLogger(__name__)

# Notices are read within a second by every running server; older ones are of no use
# (a server that starts reads from the newest id, and re-checks everything at its room
# check anyway).
KEEP_SECONDS = 600
# Rows read in one cursor check: a burst beyond it is read at the next checks.
READ_LIMIT = 1000


def record(change_json: dict) -> bool:
    """Keep one change for the servers to read; False when the database refused it (the
    servers' room check then re-authorizes every connection within 5 s anyway)."""
    try:
        AccessNotice.objects.create(change=change_json)
    except DatabaseError:
        logger.exception("access change not recorded for the servers: %s", change_json)
        return False
    return True


def newest_id() -> int:
    """The id a server starts reading after: notices from before it started are old."""
    return AccessNotice.objects.order_by("-id").values_list("id", flat=True).first() or 0


def after(last_id: int) -> list[tuple[int, dict]]:
    """``(id, change)`` of the notices newer than ``last_id``, oldest first (at most
    READ_LIMIT: the rest at the next check)."""
    return list(
        AccessNotice.objects.filter(id__gt=last_id)
        .order_by("id")
        .values_list("id", "change")[:READ_LIMIT]
    )


def forget_old() -> int:
    """Delete the notices older than KEEP_SECONDS (the room check, any server)."""
    cutoff = timezone.now() - timedelta(seconds=KEEP_SECONDS)
    deleted, _ = AccessNotice.objects.filter(created_at__lt=cutoff).delete()
    return deleted
