"""Load clients of the many-room scenario: receivers that keep, per connection, which
message numbers arrived (the ``#<counter>:<ns>#`` marker of bench/loadclient.py, one
counter space over all rooms), and senders that time their acks.

Each receiver is loadclient's ``WSReceiver`` (frame walking, pings, close codes) with its
per-message accounting replaced: loss is judged per connection against the messages sent
to its room while it was open, so a connection keeps the set of numbers it saw.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter

from loadclient import WSReceiver, upgrade_request

# A room log event as the server writes it (compact JSON, ``type`` then ``room`` then
# ``seq``): its seq is where a resume starts. Typing, presence and read frames carry no
# log seq (a read frame's ``seq`` is someone's read position, not a delivery).
LOG_SEQ = re.compile(rb'\{"type":"(?:message|edited|reaction|deleted)","room":"[^"]*","seq":(\d+)')


class Tally:
    """What loadclient's Worker offers its receivers, for one client process."""

    def __init__(self, loop) -> None:
        self.loop = loop
        self.capacity = 0
        self.latency: list[int] = []  # microseconds, room deliveries only
        self.progress = [0]
        self.slot = 0
        self.last_ns = 0
        self.dropped = 0
        self.closing = False
        self.close_codes: Counter = Counter()
        self.floor = 0  # counters below it belong to an earlier step


class RoomReceiver(WSReceiver):
    """A room (or inbox) socket; ``counts`` False for the inbox, whose frames may quote a
    body too but are not room deliveries."""

    def __init__(self, tally: Tally, request: bytes, room: int, counts: bool) -> None:
        super().__init__(tally, request)
        self.room = room
        self.counts = counts
        self.got: dict[int, int] = {}  # counter -> times seen
        self.order_errors = 0
        self.opened_ns = 0
        self.last_seq = 0  # the highest log seq delivered: a resume's ``since``

    def frames(self, buf: bytes, end: int) -> None:
        if self.counts:
            seqs = LOG_SEQ.findall(buf, 0, end)
            if seqs:
                self.last_seq = max(self.last_seq, int(seqs[-1]))
        super().frames(buf, end)

    def take_over(self, old: RoomReceiver) -> None:
        """Continue ``old``'s accounting: a reconnect with ``since`` is the same reader, so
        what it saw before and after must together be each message once, in order."""
        self.got, self.last, self.order_errors = old.got, old.last, old.order_errors
        self.last_seq = old.last_seq

    def count(self, found: list) -> None:
        if not self.counts:
            return
        now = time.time_ns()
        latency = self.worker.latency.append
        got = self.got
        for raw_counter, raw_sent in found:
            counter = int(raw_counter)
            if counter < self.worker.floor:
                continue
            seen = got.get(counter, 0)
            got[counter] = seen + 1
            if seen:
                continue
            if counter < self.last:
                self.order_errors += 1
            else:
                self.last = counter
            latency((now - int(raw_sent)) // 1000)


async def open_receiver(
    tally: Tally, host: str, port: int, path: str, cookie: str, room: int, counts: bool,
    previous: RoomReceiver | None = None,
) -> RoomReceiver:  # fmt: skip
    """A receiver on ``path``; with ``previous``, its accounting continues from the start
    (a replay can come in the same read as the handshake's answer)."""
    loop = tally.loop
    request = upgrade_request(host, port, path, cookie)

    def make() -> RoomReceiver:
        receiver = RoomReceiver(tally, request, room, counts)
        if previous is not None:
            receiver.take_over(previous)
        return receiver

    _t, receiver = await asyncio.wait_for(loop.create_connection(make, host, port), 30)
    receiver.path, receiver.cookie = path.split("?")[0], cookie  # for a reconnect
    await asyncio.wait_for(receiver.ready, 30)
    receiver.opened_ns = time.time_ns()
    return receiver


async def open_many(factories: list, concurrency: int = 50) -> list:
    """Run connection coroutines with at most ``concurrency`` handshakes at once."""
    gate = asyncio.Semaphore(concurrency)

    async def one(make):
        async with gate:
            return await make()

    return await asyncio.gather(*(one(m) for m in factories))


class Churn:
    """``share`` of the room readers per second drop their socket (no close handshake, as
    a phone leaving Wi-Fi does) and reconnect with ``since`` = the last log seq they saw;
    the new socket takes over the old one's accounting, so a replay that loses, repeats
    or reorders a message shows as loss, duplicates or disorder."""

    def __init__(self, receivers: list, rng, share: float, reopen) -> None:
        self.receivers, self.rng, self.share, self.reopen = receivers, rng, share, reopen
        self.room_slots = [i for i, r in enumerate(receivers) if r.counts]
        self.done = self.failed = self.resumed_with_seq = 0
        self.handshake_ms: list[float] = []

    async def run(self, stop_at: float) -> None:
        per_second = max(1, round(self.share * len(self.room_slots)))
        while time.monotonic() < stop_at:
            tick = time.monotonic()
            picks = self.rng.sample(self.room_slots, min(per_second, len(self.room_slots)))
            await asyncio.gather(*(self._one(i) for i in picks))
            await asyncio.sleep(max(0.0, tick + 1.0 - time.monotonic()))

    async def _one(self, index: int) -> None:
        old = self.receivers[index]
        since = old.last_seq
        old.transport.abort()  # nothing more reaches ``old`` after this
        t0 = time.monotonic()
        try:
            new = await self.reopen(old, since)
        except (OSError, TimeoutError, ConnectionError):
            self.failed += 1
            return
        self.handshake_ms.append((time.monotonic() - t0) * 1000)
        self.receivers[index] = new
        self.done += 1
        self.resumed_with_seq += since > 0


def account(receivers: list[RoomReceiver], sent_to: dict[int, list[int]]) -> dict:
    """Loss / duplicates / order per connection: every message sent to a receiver's room
    must have reached it exactly once, in order."""
    lost = dup = ooo = expected = 0
    worst_lost = 0
    for receiver in receivers:
        if not receiver.counts:
            continue
        want = sent_to.get(receiver.room, [])
        expected += len(want)
        missing = sum(1 for counter in want if counter not in receiver.got)
        lost += missing
        worst_lost = max(worst_lost, missing)
        dup += sum(times - 1 for times in receiver.got.values())
        ooo += receiver.order_errors
    return {
        "expected": expected,
        "lost": lost,
        "duplicated": dup,
        "out_of_order": ooo,
        "worst_connection_lost": worst_lost,
    }
