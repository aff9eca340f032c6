"""All ORM work of live chat, on the store's own thread pool.

The reactor thread never waits for the database: every call here returns a Deferred and
runs its query in a thread of ``Store.pool``, a pool separate from Django's WSGI pool so
that slow pages cannot starve chat and chat cannot starve pages.

Appends are group-committed: sends that arrive while a batch is committing wait in
``_pending`` and go together in the next transaction. A single appender at a time also
keeps each process's commits, and so its deliveries, in seq order.

A batch is one transaction, so one send the database refuses would fail everyone's.
The hub and ``chat.log`` refuse unstorable fields before they get here; should a batch
fail anyway for any reason but an outage, ``append_batch`` appends its sends one by one,
so that only the bad one fails. An outage (the database is down, unreachable, locked)
fails the whole batch `unavailable` at once: retrying it send by send would only repeat
the failure as many times.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from django.db import (
    DatabaseError,
    DataError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    close_old_connections,
)
from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from chat import log
from chat.live import compat, metrics
from chat.live.records import ErrorCode, RoomInfo, SendRequest, SendResult

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Sends in one transaction. Large enough to amortize a commit (an fsync on SQLite) over
# many messages, small enough that one transaction holds the room locks only briefly.
MAX_BATCH = 500
# Sends waiting for a batch. Past this the database is not keeping up: new sends are
# answered `unavailable` at once rather than queued without end.
MAX_PENDING = 20_000
# Events one replay read returns; a longer replay is read page by page.
READ_PAGE = 500
# The database cannot be used now: every send of the batch gets `unavailable`.
OUTAGES = (OperationalError, InterfaceError)
# What one send can make the database (or its driver) refuse: a value it cannot store
# (a lone surrogate cannot be encoded, PostgreSQL refuses NUL in text, a client_id over
# its column) or a constraint. The sender's fault: `bad_request`. Anything else from
# one send is ours: `unavailable`, and a traceback in the log, once.
REFUSALS = (DataError, IntegrityError, UnicodeError, ValueError)


class StoreUnavailable(Exception):
    """The database could not be reached or failed; the caller answers `unavailable`."""


class Store:
    """The store of one process.

    Appends go in "lanes", each committing one batch at a time in arrival order: one
    lane for everything on SQLite (one writer at a time anyway, so fewer, larger
    commits win), one lane per room on PostgreSQL, where batches of different rooms
    commit side by side and hold only their own room's row lock, so the workers of
    several processes interleave instead of queueing on each other's locks.
    """

    def __init__(self, reactor, threads: int = 4, lane_per_room: bool = False) -> None:
        self.reactor = reactor
        self.pool = ThreadPool(minthreads=1, maxthreads=threads, name="chat-store")
        self.lane_per_room = lane_per_room
        self._pending: dict[str, list[tuple[SendRequest, defer.Deferred, float]]] = {}
        self._waiting = 0  # sends in every lane, for MAX_PENDING
        self._committing: set[str] = set()

    def start(self) -> None:
        self.pool.start()

    def stop(self) -> None:
        self.pool.stop()

    # -- generic -----------------------------------------------------------------

    def run(self, fn: Callable[..., T], *args: Any) -> defer.Deferred[T]:
        """Run ``fn(*args)`` in a store thread; database errors become StoreUnavailable."""
        return deferToThreadPool(self.reactor, self.pool, _guarded, fn, *args)

    # -- appends -----------------------------------------------------------------

    def append(self, request: SendRequest) -> defer.Deferred[SendResult]:
        """Commit one send (with whatever else is waiting); fires after the commit."""
        if self._waiting >= MAX_PENDING:
            metrics.SENDS_SHED.inc()
            return defer.fail(StoreUnavailable("too many sends waiting for the database"))
        d: defer.Deferred[SendResult] = defer.Deferred()
        lane = request.room if self.lane_per_room else ""
        self._pending.setdefault(lane, []).append((request, d, time.monotonic()))
        self._waiting += 1
        if lane not in self._committing:
            self._commit_next(lane)
        return d

    def _commit_next(self, lane: str) -> None:
        pending = self._pending.get(lane)
        if not pending:
            self._pending.pop(lane, None)
            self._committing.discard(lane)
            return
        batch, self._pending[lane] = pending[:MAX_BATCH], pending[MAX_BATCH:]
        self._waiting -= len(batch)
        self._committing.add(lane)
        metrics.BATCH_SIZE.observe(len(batch))
        requests = [request for request, _d, _t in batch]
        done = self.run(append_batch, log.append_events, requests)
        done.addCallbacks(
            self._committed, self._failed, callbackArgs=(batch,), errbackArgs=(batch,)
        )
        # A lane's next batch starts only after this one's callbacks ran, so each
        # room's deliveries leave this process in commit order.
        done.addBoth(lambda _: self._commit_next(lane))

    def _committed(self, results: list[SendResult], batch) -> None:
        # A batch's events fan out to the same sockets: each socket's frames of the batch
        # leave in one send() (compat.coalescing); a lone event's are sent at once.
        with compat.coalescing() if len(batch) > 1 else contextlib.nullcontext():
            for (_request, d, _t), result in zip(batch, results, strict=True):
                if result.created:
                    metrics.EVENTS_APPENDED.inc()
                d.callback(result)

    def _failed(self, failure: Failure, batch) -> None:
        logger.error("append of %d send(s) failed: %s", len(batch), failure.getErrorMessage())
        error = failure if failure.check(StoreUnavailable) else Failure(StoreUnavailable())
        for _request, d, _t in batch:
            d.errback(error)

    # -- reads -------------------------------------------------------------------

    def room(self, slug: str) -> defer.Deferred[RoomInfo | None]:
        return self.run(_room_info, slug)

    def read_since(self, room: RoomInfo, after: int, limit: int = READ_PAGE):
        """Durable events of ``room`` with seq > ``after``, oldest first, at most ``limit``."""
        return self.run(log.read_events, room.id, room.slug, after, limit)

    def last_seqs(self, slugs: list[str]) -> defer.Deferred[dict[str, int]]:
        return self.run(_last_seqs, slugs)

    def recheck(
        self, rooms: Mapping[str, Collection[int | None]], sessions: Collection[str] = ()
    ) -> defer.Deferred[Recheck]:
        """Who among these users may read these rooms now, and whom these sessions sign
        in now: the hub's re-authorization of connections already open."""
        return self.run(_recheck, {slug: list(ids) for slug, ids in rooms.items()}, list(sessions))


@dataclass(frozen=True, slots=True)
class Recheck:
    # slug -> (the room now, or None when it is gone; the user ids that may read it)
    rooms: dict[str, tuple[RoomInfo | None, frozenset[int | None]]]
    sessions: dict[str, int | None]  # session key -> the user id it signs in now


def _guarded(fn: Callable[..., T], *args: Any) -> T:
    close_old_connections()
    try:
        return fn(*args)
    except DatabaseError as error:
        _close_connection()
        raise StoreUnavailable(str(error)) from error


def _close_connection() -> None:
    # A connection broken by an outage is closed, so the next call reconnects and
    # service resumes by itself when the database is back.
    from django.db import connection

    with contextlib.suppress(DatabaseError):
        connection.close()


Append = Callable[[list[SendRequest]], list[SendResult]]


def append_batch(append: Append, requests: list[SendRequest]) -> list[SendResult]:
    """``append(requests)`` in a store thread; if it fails, each send on its own.

    An outage raises StoreUnavailable (every send of the batch is `unavailable`). Any
    other failure of the batch (some send's value was refused, or something unexpected)
    is followed by one transaction per send, in order, so the sends that can be stored
    are, with their seqs in the same order, and only the failing ones get an error. An
    outage during those ends the retry: the sends not yet appended are `unavailable`.
    """
    try:
        return append(requests)
    except OUTAGES as error:
        _close_connection()
        raise StoreUnavailable(str(error)) from error
    except Exception as error:
        if len(requests) == 1:
            return [_failed_send(requests[0], error)]
        logger.info(
            "a batch of %d sends failed (%s); appending them one by one",
            len(requests),
            _describe(error),
        )
    results: list[SendResult] = []
    for index, request in enumerate(requests):
        try:
            (result,) = append([request])
        except OUTAGES as error:
            _close_connection()
            logger.error("append failed, the database is unavailable: %s", _describe(error))
            unavailable = SendResult(error=ErrorCode.UNAVAILABLE)
            return results + [unavailable] * (len(requests) - index)
        except Exception as error:
            result = _failed_send(request, error)
        results.append(result)
    return results


def _failed_send(request: SendRequest, error: Exception) -> SendResult:
    """The answer to one send that the database refused, logged once with its context.

    The context is logged with %r (a value that could not be stored, a lone surrogate,
    could not be written to a UTF-8 log either), and the message text not at all: it
    may be a private room's.
    """
    chars = len(request.body) if isinstance(request.body, str) else -1
    context = (request.room, request.username, request.client_id, chars)
    if isinstance(error, REFUSALS):
        logger.warning(
            "send refused by the database (room %r, user %r, client_id %r, %d chars): %s",
            *context,
            _describe(error),
        )
        return SendResult(error=ErrorCode.BAD_REQUEST, detail="The message cannot be stored.")
    logger.error(
        "send failed (room %r, user %r, client_id %r, %d chars)", *context, exc_info=error
    )
    return SendResult(error=ErrorCode.UNAVAILABLE)


def _describe(error: Exception) -> str:
    """The error's kind and reason, without the value it was about (a UnicodeError's
    message quotes the whole text it could not encode)."""
    reason = error.reason if isinstance(error, UnicodeError) else str(error)
    return f"{type(error).__name__}: {reason[:200]!r}"


def _room_info(slug: str) -> RoomInfo | None:
    from chat.fast_queries import room_row

    row = room_row(slug)  # plain SQL: every connect asks it (0.6 of its 1.1 ms in the ORM)
    return RoomInfo(*row) if row else None


def _recheck(rooms: dict[str, list[int | None]], sessions: list[str]) -> Recheck:
    from chat import access
    from chat.models import Room
    from chat.sessions import signed_in

    rows = Room.objects.filter(slug__in=list(rooms)).values(
        "id", "slug", "is_public", "is_archived", "last_seq"
    )
    infos = {row["slug"]: RoomInfo(**row) for row in rows}
    allowed = access.current_readers(
        (infos[slug], user_id) for slug, ids in rooms.items() if slug in infos for user_id in ids
    )
    by_room: dict[int, set[int | None]] = {}
    for room_id, user_id in allowed:
        by_room.setdefault(room_id, set()).add(user_id)
    answer: dict[str, tuple[RoomInfo | None, frozenset[int | None]]] = {}
    for slug in rooms:
        info = infos.get(slug)
        answer[slug] = (info, frozenset(by_room.get(info.id, ()) if info else ()))
    # A query per 5,000 sessions or tokens, not one or two per credential (the room
    # check re-checks every live token every 5 s).
    return Recheck(answer, signed_in(list(sessions)))


# Slugs per statement of the cursor read: well under SQLite's bound on parameters.
_SLUGS_PER_READ = 5000


def _last_seqs(slugs: list[str]) -> dict[str, int]:
    """The rooms' ``last_seq``. Plain SQL, not the ORM: it is the cursor check's read,
    four times a second (chat/live/service.py): for 1000 rooms on SQLite the ORM's
    version took 3.1 ms a read, this one 1.0 ms (the unique index on slug finds them)."""
    from django.db import connection

    from chat.models import Room

    table = connection.ops.quote_name(Room._meta.db_table)
    found: dict[str, int] = {}
    with connection.cursor() as cursor:
        for start in range(0, len(slugs), _SLUGS_PER_READ):
            part = slugs[start : start + _SLUGS_PER_READ]
            marks = ",".join(["%s"] * len(part))
            cursor.execute(f"SELECT slug, last_seq FROM {table} WHERE slug IN ({marks})", part)
            found.update(cursor.fetchall())
    return found
