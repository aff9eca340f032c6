"""Stand-ins for the live core's collaborators: a store, a bus, a presence store, a
subscriber. All in memory, all synchronous unless a test holds a read open.
"""

from __future__ import annotations

from twisted.internet import defer

from chat.live.events import OutboundEvent
from chat.live.publish import AccessChange
from chat.live.records import RoomInfo, SendResult, UserInfo
from chat.live.store import Recheck, StoreUnavailable

ALICE = UserInfo(1, "alice")
BOB = UserInfo(2, "bob")


def event(seq: int, room: str = "lobby") -> dict:
    return {"type": "message", "room": room, "seq": seq, "user": "alice", "body": f"m{seq}"}


class FakeStore:
    """The Store interface over a list; ``hold_reads`` parks reads until released.

    Access, for ``recheck``: a room is public unless ``private`` lists its members; an
    account in ``inactive`` may read nothing; ``sessions`` says whom a session signs in.
    """

    def __init__(self) -> None:
        self.private: dict[str, set[int]] = {}
        self.inactive: set[int] = set()
        self.sessions: dict[str, int | None] = {}
        self.rechecks: list[tuple[dict, set]] = []
        self.fail_rechecks = False
        self.log: dict[str, list[dict]] = {"lobby": []}
        self.hold_reads = False
        self.held: list[tuple[defer.Deferred, list[dict]]] = []
        self.appended: list = []
        self.client_ids: dict[tuple[str, int, str], int] = {}  # the idempotency index
        self.reads = 0
        self.fail = False
        self.fail_reads = False

    def commit(self, seq: int, room: str = "lobby") -> dict:
        item = event(seq, room)
        self.log.setdefault(room, []).append(item)
        return item

    def room(self, slug: str):
        if slug not in self.log:
            return defer.succeed(None)
        return defer.succeed(self._info(slug))

    def _info(self, slug: str) -> RoomInfo:
        last = self.log[slug][-1]["seq"] if self.log[slug] else 0
        return RoomInfo(1, slug, slug not in self.private, False, last)

    def recheck(self, rooms, sessions=()):
        self.rechecks.append(({slug: set(ids) for slug, ids in rooms.items()}, set(sessions)))
        if self.fail_rechecks:
            return defer.fail(StoreUnavailable())
        answer = {}
        for slug, ids in rooms.items():
            if slug not in self.log:
                answer[slug] = (None, frozenset())
                continue
            members = self.private.get(slug)
            allowed = {
                u
                for u in ids
                if u not in self.inactive and (members is None or (u is not None and u in members))
            }
            answer[slug] = (self._info(slug), frozenset(allowed))
        return defer.succeed(Recheck(answer, {key: self.sessions.get(key) for key in sessions}))

    def read_since(self, room: RoomInfo, after: int, limit: int = 500):
        self.reads += 1
        if self.fail_reads:
            return defer.fail(StoreUnavailable())
        rows = [e for e in self.log[room.slug] if e["seq"] > after][:limit]
        if self.hold_reads:
            d: defer.Deferred = defer.Deferred()
            self.held.append((d, rows))
            return d
        return defer.succeed(rows)

    def release(self) -> None:
        held, self.held = self.held, []
        for d, rows in held:
            d.callback(rows)

    def last_seqs(self, slugs: list[str]):
        return defer.succeed(
            {slug: (self.log[slug][-1]["seq"] if self.log[slug] else 0) for slug in slugs}
        )

    def append(self, request):
        self.appended.append(request)
        if self.fail:
            return defer.fail(StoreUnavailable())
        key = (request.room, request.user_id, request.client_id)
        if request.client_id is not None and key in self.client_ids:
            return defer.succeed(SendResult(seq=self.client_ids[key]))  # a resend
        seq = len(self.log[request.room]) + 1
        item = self.commit(seq, request.room)
        if request.client_id is not None:
            self.client_ids[key] = seq
        return defer.succeed(SendResult(seq=seq, event=item))


class RecordingBus:
    """An EventBus that keeps what the hub published and followed."""

    def __init__(self) -> None:
        self.published: list[dict] = []
        self.announced: list[AccessChange] = []
        self.followed: set[str] = set()

    def start(self, listener) -> None:
        pass

    def stop(self):
        return defer.succeed(None)

    def publish(self, event: OutboundEvent) -> None:
        self.published.append(event.event)

    def announce(self, change: AccessChange) -> None:
        self.announced.append(change)

    def follow(self, slug: str) -> None:
        self.followed.add(slug)

    def unfollow(self, slug: str) -> None:
        self.followed.discard(slug)


class RecordingPresenceStore:
    """A PresenceStore that keeps what the hub shared, watched and forgot."""

    def __init__(self) -> None:
        self.shared: list[tuple[str, list[str]]] = []
        self.watched: set[str] = set()

    def start(self, listener) -> None:
        pass

    def stop(self):
        return defer.succeed(None)

    def watch(self, slug: str) -> None:
        self.watched.add(slug)

    def forget(self, slug: str) -> None:
        self.watched.discard(slug)

    def share(self, slug: str, users: list[str]) -> None:
        self.shared.append((slug, list(users)))


class Recorder:
    """A subscriber that remembers what it was sent."""

    transport_name = "test"

    def __init__(self, user: UserInfo | None = None, session_key: str | None = None) -> None:
        self.user = user
        self.session_key = session_key
        self.hello: int | None = None
        self.events: list[OutboundEvent] = []
        self.dropped: str | None = None

    def started(self, last_seq: int) -> None:
        self.hello = last_seq

    def deliver(self, event: OutboundEvent) -> None:
        self.events.append(event)

    def drop(self, reason: str) -> None:
        self.dropped = reason

    @property
    def seqs(self) -> list[int]:
        return [e.seq for e in self.events if e.seq is not None]

    def of_type(self, kind: str) -> list[dict]:
        return [e.event for e in self.events if e.type == kind]


def fired(d: defer.Deferred):
    """The result of a Deferred that must have fired already."""
    out: list = []
    d.addBoth(out.append)
    assert out, "the Deferred has not fired"
    return out[0]
