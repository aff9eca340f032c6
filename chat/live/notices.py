"""The servers' side of chat/access_notices.py: access changes that a process with no hub
and no Redis could only write down, read at the cursor check and applied here.

Each server process reads the table itself (so nothing is re-sent on the bus): from the
newest id it found at its first check, oldest first, and hands every well-formed change
to the hub's AccessWatch as a change from another process. One read at a time; a failed
read (the database away) is tried again at the next check, from the same id, so nothing
is skipped. Once a minute the same store call deletes the notices old enough to be of no
use to anyone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from twisted.internet import defer

from chat.live.publish import AccessChange

logger = logging.getLogger(__name__)

CLEANUP_SECONDS = 60.0


class AccessNotices:
    def __init__(self, reactor, store, apply: Callable[[AccessChange], None]) -> None:
        self.reactor = reactor
        self.store = store
        self.apply = apply
        self.last_id: int | None = None  # None: not read yet (start from the newest)
        self._reading = False
        self._cleaned_at = float("-inf")

    def check(self) -> defer.Deferred | None:
        if self._reading:
            return None
        self._reading = True
        now = self.reactor.seconds()
        cleanup = now - self._cleaned_at >= CLEANUP_SECONDS
        if cleanup:
            self._cleaned_at = now
        d = self.store.run(_read, self.last_id, cleanup)
        d.addCallbacks(self._got, self._failed)
        d.addBoth(self._done)
        return d

    def _got(self, answer: tuple[int, list[tuple[int, dict]]]) -> None:
        last_id, rows = answer
        self.last_id = last_id
        for _id, data in rows:
            change = AccessChange.from_json(data)
            if change is None:
                logger.warning("access notice %s is not a change: %r", _id, data)
                continue
            self.apply(change)

    def _failed(self, failure) -> None:
        logger.warning("access notices not read: %s", failure.value)

    def _done(self, _result) -> None:
        self._reading = False


def _read(last_id: int | None, cleanup: bool) -> tuple[int, list[tuple[int, dict]]]:
    """On a store thread: the notices after ``last_id`` (none at the first read, which
    only finds where to start), and the id to read after next time."""
    from chat import access_notices

    if cleanup:
        access_notices.forget_old()
    if last_id is None:
        return access_notices.newest_id(), []
    rows = access_notices.after(last_id)
    return (rows[-1][0] if rows else last_id), rows
