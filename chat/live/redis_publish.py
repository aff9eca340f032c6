"""The Redis bus from a process with no reactor (``manage.py``, a Celery worker, a script).

A server process hands its committed events, access changes and read notices to its hub
(chat/live/publish.py), which publishes them on the bus from the reactor with txredisapi.
A process with no reactor has no hub; with ``REDIS_URL`` set it publishes the same notes
on the same channels itself, with redis-py's blocking client, after the commit
(publish.py calls it from ``transaction.on_commit`` callbacks), so every server process
delivers them as it delivers another server's (PROTOCOL.md "Python API for Django
code": live clients within 1 s, from any process).

The channels and notes are chat/live/redis_bus.py's and redis_link.py's, written again
here because those modules import Twisted and this one is on the Django side (which
imports none); tests/unit/test_parley_api.py holds the two to the same bytes.

A failed publish (Redis down) is logged and given up after one second: the caller's
write is committed all the same, and the servers find it by themselves: an event at
their next cursor check (chat/live/service.py, ``CHAT_CURSOR_CHECK_SECONDS``), an
access change at their room check (``CHAT_ROOM_CHECK_SECONDS``). A read notice is
ephemeral everywhere: the user's next hello has the position.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading

import redis

from chat.live.events import encode
from chat.live.records import ReadNotice

logger = logging.getLogger(__name__)

ACCESS_CHANGE = "access_change"  # chat/live/redis_bus.py ACCESS_CHANGE
READ_MOVED = "read_moved"  # chat/live/redis_bus.py READ_MOVED
_NOTICE_INTS = ("user_id", "read_seq", "unread", "mentions", "through")
# A blocked caller (a Celery task) waits at most this long for Redis, per attempt.
TIMEOUT_SECONDS = 1.0

_lock = threading.Lock()
_client = None
_client_key: tuple | None = None
_node: tuple[int, str] | None = None


def room_channel(prefix: str, slug: str) -> str:
    return f"{prefix}:room:{slug}"


def access_channel(prefix: str) -> str:
    return f"{prefix}:access"


def reads_channel(prefix: str) -> str:
    return f"{prefix}:reads"


def node() -> str:
    """This process's name on the bus (never a server's: the servers apply its notes)."""
    global _node
    pid = os.getpid()
    if _node is None or _node[0] != pid:  # a forked worker names itself again
        _node = (pid, f"{socket.gethostname()}:{pid}:{secrets.token_hex(3)}:no-reactor")
    return _node[1]


def access_note(change) -> bytes:
    return json.dumps({"type": ACCESS_CHANGE, "node": node(), "change": change.as_json()}).encode()


def read_note(notice: ReadNotice) -> bytes:
    data = {"room": notice.room, **{name: getattr(notice, name) for name in _NOTICE_INTS}}
    return json.dumps({"type": READ_MOVED, "node": node(), "notice": data}).encode()


def _redis():
    """The process's client (redis-py pools connections and is thread-safe; a forked
    child opens its own), or None without ``REDIS_URL``."""
    global _client, _client_key
    from django.conf import settings

    url = getattr(settings, "REDIS_URL", None)
    if not url:
        return None
    prefix = getattr(settings, "CHAT_REDIS_PREFIX", "parley")
    with _lock:
        if _client is None or _client_key != (url, prefix):
            _client = redis.Redis.from_url(
                url, socket_timeout=TIMEOUT_SECONDS, socket_connect_timeout=TIMEOUT_SECONDS
            )
            _client_key = (url, prefix)
        return _client, prefix


def _publish(channel_of, data: bytes, what: object) -> bool:
    found = _redis()
    if found is None:
        return False
    client, prefix = found
    try:
        client.publish(channel_of(prefix), data)
    except (redis.RedisError, OSError) as error:
        logger.warning("redis publish of %s failed (%s); the servers' checks find it", what, error)
        return False
    return True


def publish_event(event: dict) -> bool:
    """A committed durable event on its room's channel; False when not published."""
    return _publish(lambda prefix: room_channel(prefix, event["room"]), encode(event), event)


def publish_access(change) -> bool:
    """A committed access change on the access channel; False when not published."""
    return _publish(access_channel, access_note(change), change)


def publish_read(notice: ReadNotice) -> bool:
    """A read position that moved, on the reads channel; False when not published."""
    return _publish(reads_channel, read_note(notice), notice)


def reset() -> None:
    """Close and forget the client (tests that change REDIS_URL, or that count Redis's
    connections: the next publish connects again)."""
    global _client, _client_key
    with _lock:
        client, _client, _client_key = _client, None, None
    if client is not None:
        client.close()
