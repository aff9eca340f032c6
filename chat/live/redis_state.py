"""What the processes share in Redis keys (chat/live/bus.py's ``PresenceStore`` and
``SendCounter``), on the process's ``RedisLink`` (chat/live/redis_link.py).

Presence: each process keeps its users of a room in one field of the hash
``<prefix>:presence:<slug>``, stamped with the time; a change is announced on the room's
channel (a ``PRESENCE_SYNC`` note, which the event bus hands back to ``note``) and the
others re-read the hash. Fields are rewritten every ``PRESENCE_REFRESH`` seconds and
ignored once older than ``PRESENCE_TTL``, so the users of a process that died disappear
within that time.

Send counts: a per-user count in fixed windows, ``<prefix>:rate:<user>:<window>``, that
the shared rate limiter (chat/live/ratelimit.py) adds to its local bucket.
"""

from __future__ import annotations

import json
import logging
import time

from twisted.internet import defer, task

from chat.live.bus import PresenceListener
from chat.live.redis_link import RedisLink

logger = logging.getLogger(__name__)

# Presence fields are rewritten this often and trusted this long: a field is rewritten
# three times within its TTL, so one lost write does not make a live process's users
# vanish, and a dead process's users are gone within 30 s.
PRESENCE_REFRESH = 10.0
PRESENCE_TTL = 30.0
PRESENCE_SYNC = "presence_sync"  # a note on a room channel; never sent to clients


class RedisPresenceStore:
    """Each process's users of a room in one timestamped field of the room's hash."""

    def __init__(self, link: RedisLink, clock=time.time) -> None:
        self.link = link
        self.clock = clock  # wall time: fields are compared across machines
        self.listener: PresenceListener | None = None
        # Both as bounded as the hub's registry, which forgets every room it watched.
        self.watched: set[str] = set()
        self.local: dict[str, list[str]] = {}  # slug -> this process's users there
        self._heartbeat = task.LoopingCall(self.refresh)
        self._heartbeat.clock = link.reactor

    def key(self, slug: str) -> str:
        return f"{self.link.prefix}:presence:{slug}"

    def start(self, listener: PresenceListener) -> None:
        self.listener = listener
        self._heartbeat.start(PRESENCE_REFRESH, now=False)

    def stop(self) -> defer.Deferred:
        if self._heartbeat.running:
            self._heartbeat.stop()
        redis = self.link.commands
        gone = []
        if redis is not None:  # leave the rooms at once, not after the TTL
            gone = [redis.hdel(self.key(slug), self.link.node) for slug in self.local]
        self.local.clear()
        return defer.gatherResults(gone, consumeErrors=True)

    def watch(self, slug: str) -> None:
        self.watched.add(slug)
        self._read(slug)  # who is here through the other processes, at once

    def forget(self, slug: str) -> None:
        self.watched.discard(slug)
        if self.local.pop(slug, None) is not None:
            self._write(slug, announce=True)

    def share(self, slug: str, users: list[str]) -> None:
        if users:
            self.local[slug] = users
        else:
            self.local.pop(slug, None)
        self._write(slug, announce=True)

    def note(self, slug: str, node: str) -> None:
        """Another process announced a change in ``slug``."""
        if node != self.link.node and slug in self.watched:
            self._read(slug)

    def refresh(self) -> None:
        """Rewrite this process's fields before they expire, and re-read the others'."""
        for slug in list(self.local):
            self._write(slug, announce=False)
        for slug in list(self.watched):
            self._read(slug)

    def _write(self, slug: str, announce: bool) -> None:
        redis = self.link.commands
        if redis is None:
            return  # rewritten by refresh() once Redis is back
        key = self.key(slug)
        users = self.local.get(slug)
        if users:
            value = json.dumps({"users": users, "at": self.clock()})
            d = redis.hset(key, self.link.node, value)
            d.addCallback(lambda _: redis.expire(key, int(PRESENCE_TTL * 4)))
        else:
            d = redis.hdel(key, self.link.node)
        if announce:
            note = json.dumps({"type": PRESENCE_SYNC, "room": slug, "node": self.link.node})
            d.addCallback(lambda _: redis.publish(self.link.room_channel(slug), note))
        d.addErrback(lambda f: logger.warning("presence write failed: %s", f.getErrorMessage()))

    def _read(self, slug: str) -> None:
        redis = self.link.commands
        if redis is None:
            return

        def got(fields: dict) -> None:
            users: set[str] = set()
            oldest = self.clock() - PRESENCE_TTL
            for node, value in (fields or {}).items():
                if node == self.link.node:
                    continue
                try:
                    entry = json.loads(value)
                    if entry["at"] >= oldest:
                        users.update(u for u in entry["users"] if isinstance(u, str))
                except (ValueError, TypeError, KeyError):
                    continue
            if self.listener is not None and slug in self.watched:
                self.listener.set_remote_presence(slug, frozenset(users))

        redis.hgetall(self.key(slug)).addCallbacks(
            got, lambda f: logger.warning("presence read failed: %s", f.getErrorMessage())
        )


class RedisSendCounter:
    """Per-user sends in fixed windows, ``<prefix>:rate:<user>:<window>``, all processes."""

    def __init__(self, link: RedisLink) -> None:
        self.link = link

    def count(
        self, user_id: int, window: int, seconds: float, amount: int
    ) -> defer.Deferred[int] | None:
        redis = self.link.commands
        if redis is None:
            return None
        key = f"{self.link.prefix}:rate:{user_id}:{window}"
        d = redis.incr(key, amount)

        def expire(total: int) -> int:
            if total == amount:  # first of the window: it must not outlive it
                redis.expire(key, int(seconds) + 1)
            return total

        return d.addCallback(expire)
