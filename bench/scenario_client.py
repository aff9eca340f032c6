"""Load clients of the many-room scenario: receivers that keep, per connection, which
message numbers arrived (the ``#<counter>:<ns>#`` marker of bench/loadclient.py, one
counter space over all rooms), and senders that time their acks.

Each receiver is loadclient's ``WSReceiver`` (frame walking, pings, close codes) with its
per-message accounting replaced: loss is judged per connection against the messages sent
to its room while it was open, so a connection keeps the set of numbers it saw.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from loadclient import WSReceiver, upgrade_request


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
    tally: Tally, host: str, port: int, path: str, cookie: str, room: int, counts: bool
) -> RoomReceiver:
    loop = tally.loop
    request = upgrade_request(host, port, path, cookie)
    _t, receiver = await asyncio.wait_for(
        loop.create_connection(lambda: RoomReceiver(tally, request, room, counts), host, port),
        30,
    )
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
