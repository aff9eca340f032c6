"""The one door of the REST API's writes: sends, edits, deletions, reactions.

PROTOCOL.md guarantee 5: the REST API acts on the same log as the live transports, with
the same semantics. So a write here is the client frame a WebSocket would send
(``{"type": "send"|"edit"|"delete"|"react", ...}``), and it takes the live side's path
whenever there is one (DESIGN.md rule 7, "every write is one path"):

- in a server process, ``chat.live.publish.submit`` hands it to the hub of this process
  (validation, rate limit, group commit with the live sends, delivery) and blocks this
  WSGI thread until the hub answers;
- where no hub runs (Django's test client, ``manage.py``), the frame is checked by the
  same ``chat.live.validation.request_from_frame``, appended by ``chat.log.append_events``
  (permissions, idempotency, targets, all inside the transaction) and the new event handed
  to ``chat.live.publish.publish_committed`` after the commit (the servers' bus, or their
  cursor check, chat/live/publish.py). No rate limit applies there: it is the hub's.

The Python API (chat/parley.py) writes through here; inside a caller's atomic block it
takes ``append``, the second way, in a server process too.
"""

from __future__ import annotations

import logging
from functools import partial

from django.conf import settings
from django.db import DatabaseError, transaction

from chat import log
from chat.live import publish
from chat.live.records import ErrorCode, SendRequest, SendResult, UserInfo
from chat.live.validation import request_from_frame

logger = logging.getLogger(__name__)


def submit(slug: str, user, frame: dict) -> SendResult:
    """Write ``frame`` into room ``slug`` as the signed-in ``user``; the result as the hub
    gives it (``seq`` and the new ``event``, the original ``seq`` for a repeated
    client_id, ``seq`` None for a no-op reaction, or an ``error``)."""
    sender = UserInfo(user.pk, user.get_username())
    result = publish.submit(slug, sender, frame)
    if result is not None:
        return result
    return append(slug, user, frame)


def append(slug: str, user, frame: dict) -> SendResult:
    """The write through chat.log in this thread's transaction, not the hub's (the way
    without a hub; the Python API's inside a caller's atomic block): published after the
    commit."""
    sender = UserInfo(user.pk, user.get_username())
    request = request_from_frame(slug, sender, frame, settings.CHAT_MAX_MESSAGE_CHARS)
    if not isinstance(request, SendRequest):
        code, detail = request
        return SendResult(error=code, detail=detail)
    try:
        [result] = log.append_events([request])
    except DatabaseError:
        # Rule 6, "fail loud, lose nothing": the client is told to retry, never a 500.
        logger.exception("write to %s not appended: the database is unavailable", slug)
        return SendResult(error=ErrorCode.UNAVAILABLE)
    if result.created:
        # After the commit (at once outside a transaction): a rolled-back event must not
        # reach anyone.
        transaction.on_commit(partial(publish.publish_committed, result.event), robust=True)
    return result
