"""Group commit of the live store: its lanes, and a batch that fails, with no database."""

from __future__ import annotations

import logging

import pytest
from django.db import DataError, IntegrityError, InterfaceError, OperationalError
from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock

from chat import log
from chat.live.records import ErrorCode, SendRequest, SendResult
from chat.live.store import Store


def send(room: str, body: str) -> SendRequest:
    return SendRequest(room=room, user_id=1, username="alice", body=body, client_id=None)


class HeldStore(Store):
    """Each batch waits in ``self.batches`` until the test commits it."""

    def __init__(self, lane_per_room: bool) -> None:
        super().__init__(MemoryReactorClock(), lane_per_room=lane_per_room)
        self.batches: list[tuple[list[SendRequest], defer.Deferred]] = []

    def run(self, fn, *args):
        requests = args[-1]
        d: defer.Deferred = defer.Deferred()
        self.batches.append((requests, d))
        return d

    def commit(self, index: int) -> None:
        requests, d = self.batches[index]
        d.callback([SendResult(seq=n + 1) for n in range(len(requests))])


def bodies(batch) -> list[str]:
    return [request.body for request in batch[0]]


def test_one_lane_commits_one_batch_at_a_time_in_arrival_order():
    store = HeldStore(lane_per_room=False)
    acks = []
    for room, body in [("a", "a1"), ("b", "b1"), ("a", "a2"), ("b", "b2")]:
        store.append(send(room, body)).addCallback(lambda r, body=body: acks.append(body))
    assert [bodies(b) for b in store.batches] == [["a1"]]  # the rest waits for it
    store.commit(0)
    assert [bodies(b) for b in store.batches] == [["a1"], ["b1", "a2", "b2"]]
    store.commit(1)
    assert acks == ["a1", "b1", "a2", "b2"]


def test_a_lane_per_room_commits_rooms_side_by_side_and_each_room_in_order():
    store = HeldStore(lane_per_room=True)
    for room, body in [("a", "a1"), ("b", "b1"), ("a", "a2"), ("a", "a3"), ("b", "b2")]:
        store.append(send(room, body))
    # Both rooms have a batch in flight; each room's later sends wait for its batch.
    assert [bodies(b) for b in store.batches] == [["a1"], ["b1"]]
    store.commit(1)
    assert [bodies(b) for b in store.batches] == [["a1"], ["b1"], ["b2"]]
    store.commit(0)
    assert [bodies(b) for b in store.batches][-1] == ["a2", "a3"]
    store.commit(2)
    store.commit(3)
    assert store._pending == {} and store._committing == set() and store._waiting == 0


# --------------------------------------------------------------------------- a failing batch


class FakeLog:
    """``chat.log.append_events`` over an in-memory log that refuses like a database.

    A batch holding a body that contains ``refuse`` fails whole (as one transaction
    does); ``outage`` makes every call fail like a database that is down.
    """

    def __init__(self, refuse: dict[str, Exception]) -> None:
        self.refuse = refuse
        self.calls: list[list[str]] = []
        self.seqs: dict[str, int] = {}
        self.outage: Exception | None = None

    def append_events(self, requests: list[SendRequest]) -> list[SendResult]:
        self.calls.append([r.body for r in requests])
        if self.outage is not None:
            raise self.outage
        for request in requests:
            for word, error in self.refuse.items():
                if word in request.body:
                    raise error
        results = []
        for request in requests:
            self.seqs[request.room] = self.seqs.get(request.room, 0) + 1
            results.append(SendResult(seq=self.seqs[request.room], event={"body": request.body}))
        return results


class SyncStore(Store):
    """Runs each batch at once on the calling thread, as the thread pool would."""

    def __init__(self, lane_per_room: bool = False) -> None:
        super().__init__(MemoryReactorClock(), lane_per_room=lane_per_room)
        self.held: list[tuple[object, tuple]] = []
        self.hold = False

    def run(self, fn, *args):
        if self.hold:  # the test releases it: batches queue up behind it meanwhile
            d: defer.Deferred = defer.Deferred()
            self.held.append((d, (fn, *args)))
            return d
        return defer.maybeDeferred(fn, *args)

    def release(self) -> None:
        self.hold = False
        d, (fn, *args) = self.held.pop(0)
        defer.maybeDeferred(fn, *args).chainDeferred(d)


def answers(store: Store, sends: list[SendRequest]) -> list:
    """Append ``sends`` so that they form one batch; their answers, in callback order."""
    got: list = []
    store.hold = True
    blocker = store.append(send("z", "warm-up"))  # the lane is busy: the rest queues
    blocker.addErrback(lambda _: None)
    for request in sends:
        d = store.append(request)
        d.addCallbacks(
            lambda r, body=request.body: got.append((body, r.seq, r.error)),
            lambda f, body=request.body: got.append((body, None, type(f.value).__name__)),
        )
    store.release()
    return got


@pytest.mark.parametrize(
    "error",
    [
        DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes"),
        UnicodeEncodeError("utf-8", "my secret \ud800 text", 10, 11, "surrogates not allowed"),
        IntegrityError("NOT NULL constraint failed: chat_message.body"),
    ],
    ids=["DataError", "UnicodeEncodeError", "IntegrityError"],
)
def test_a_refused_send_fails_alone_and_the_others_commit_in_order(monkeypatch, caplog, error):
    caplog.set_level(logging.INFO)
    fake = FakeLog({"BAD": error})
    monkeypatch.setattr(log, "append_events", fake.append_events)
    store = SyncStore()
    sends = [send("a", "a1"), send("b", "b1"), send("a", "BAD"), send("b", "b2"), send("a", "a2")]
    got = answers(store, sends)
    assert got == [
        ("a1", 1, None),
        ("b1", 1, None),
        ("BAD", None, ErrorCode.BAD_REQUEST),
        ("b2", 2, None),
        ("a2", 2, None),
    ]
    # One try of the batch, then one per send, in the order they came.
    assert fake.calls[1:] == [
        ["a1", "b1", "BAD", "b2", "a2"],
        ["a1"],
        ["b1"],
        ["BAD"],
        ["b2"],
        ["a2"],
    ]
    refused = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 1 and refused[0].exc_info is None  # one line, no traceback
    # The message's text is not logged (only its length), not even inside the error.
    assert not [r for r in caplog.records if "secret" in r.getMessage()]
    assert "BAD" not in refused[0].getMessage() and "3 chars" in refused[0].getMessage()
    assert store._pending == {} and store._committing == set() and store._waiting == 0


def test_an_unexpected_error_of_one_send_is_unavailable_for_it_alone(monkeypatch, caplog):
    fake = FakeLog({"BUG": RuntimeError("a bug")})
    monkeypatch.setattr(log, "append_events", fake.append_events)
    got = answers(SyncStore(), [send("a", "a1"), send("a", "BUG"), send("a", "a2")])
    assert got == [("a1", 1, None), ("BUG", None, ErrorCode.UNAVAILABLE), ("a2", 2, None)]
    assert sum(r.exc_info is not None for r in caplog.records) == 1  # a bug: one traceback


@pytest.mark.parametrize(
    "outage", [OperationalError("connection refused"), InterfaceError("connection already closed")]
)
def test_an_outage_fails_the_batch_unavailable_without_retrying_each_send(monkeypatch, outage):
    fake = FakeLog({})
    fake.outage = outage
    monkeypatch.setattr(log, "append_events", fake.append_events)
    store = SyncStore()
    got = answers(store, [send("a", "a1"), send("b", "b1"), send("a", "a2")])
    assert got == [(body, None, "StoreUnavailable") for body in ("a1", "b1", "a2")]
    assert len(fake.calls) == 2  # the warm-up and the batch: no send-by-send retry
    fake.outage = None
    assert answers(store, [send("a", "back")]) == [("back", 1, None)]  # service resumes


def test_an_outage_during_the_retry_ends_it(monkeypatch):
    """The sends appended before the outage keep their seqs; the rest are unavailable."""
    fake = FakeLog({"BAD": DataError("bad")})
    original = fake.append_events

    def append(requests):
        if requests == [sends[2]]:  # the database goes away in the middle of the retry
            fake.outage = OperationalError("server closed the connection")
        return original(requests)

    sends = [send("a", "a1"), send("a", "BAD"), send("a", "a2"), send("a", "a3")]
    monkeypatch.setattr(log, "append_events", append)
    got = answers(SyncStore(), sends)
    assert got == [
        ("a1", 1, None),
        ("BAD", None, ErrorCode.BAD_REQUEST),
        ("a2", None, ErrorCode.UNAVAILABLE),
        ("a3", None, ErrorCode.UNAVAILABLE),
    ]
    assert fake.calls[-1] == ["a2"]  # nothing was tried after the outage


def test_the_next_batch_waits_for_the_retried_one(monkeypatch):
    """Group commit's order holds through a retry: sends that arrive meanwhile form the
    next batch, which starts only after every answer of the retried one was given."""
    fake = FakeLog({"BAD": DataError("bad")})
    monkeypatch.setattr(log, "append_events", fake.append_events)
    store = SyncStore()
    order: list[str] = []

    def arrive_during_answers(result):
        order.append("answered a1")
        if not order.count("queued"):
            order.append("queued")
            store.append(send("a", "late")).addCallback(lambda r: order.append(f"late {r.seq}"))

    store.hold = True
    store.append(send("a", "warm-up"))
    store.append(send("a", "a1")).addCallback(arrive_during_answers)
    store.append(send("a", "BAD")).addCallback(lambda r: order.append(f"BAD {r.error}"))
    store.append(send("a", "a2")).addCallback(lambda r: order.append(f"a2 {r.seq}"))
    store.release()
    assert order == ["answered a1", "queued", "BAD bad_request", "a2 3", "late 4"]
    assert fake.calls[-1] == ["late"]
