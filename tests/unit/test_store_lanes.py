"""Group commit lanes of the live store, with the database replaced by held Deferreds."""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock

from chat.live.records import SendRequest, SendResult
from chat.live.store import Store


def send(room: str, body: str) -> SendRequest:
    return SendRequest(room=room, user_id=1, username="alice", body=body, client_id=None)


class HeldStore(Store):
    """Each batch waits in ``self.batches`` until the test commits it."""

    def __init__(self, lane_per_room: bool) -> None:
        super().__init__(MemoryReactorClock(), lane_per_room=lane_per_room)
        self.batches: list[tuple[list[SendRequest], defer.Deferred]] = []

    def run(self, fn, requests):
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
