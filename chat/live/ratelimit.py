"""Per-user send limits (CHAT_RATE_LIMIT): the one home of rate limiting.

``RateLimiter`` is a token bucket per user in this process; ``SharedRateLimiter`` adds a
count of the user's sends in every process, kept by a send counter (Redis), so that
``--workers N`` does not multiply a user's allowance by N.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

from chat.live.records import RateLimit

if TYPE_CHECKING:
    from chat.live.bus import SendCounter


def rate_limiter(limit: RateLimit, counter: SendCounter | None) -> RateLimiter:
    """The limiter for a process: shared through ``counter`` when there is one (Redis)."""
    return RateLimiter(limit) if counter is None else SharedRateLimiter(limit, counter)


class RateLimiter:
    """Token bucket per user: ``count`` sends per ``seconds``, bursts up to ``count``.

    Buckets of users who stopped sending are swept once they are full again, so the map
    holds only users who sent within the last window.
    """

    def __init__(self, limit: RateLimit, clock=time.monotonic) -> None:
        self.limit = limit
        self.clock = clock
        self.rate = limit.count / limit.seconds if limit.enabled else 0.0
        self._buckets: dict[int, list[float]] = {}  # user id -> [tokens, updated]
        self._swept = clock()

    def _bucket(self, user_id: int, now: float) -> list[float]:
        bucket = self._buckets.get(user_id)
        if bucket is None:
            bucket = self._buckets[user_id] = [float(self.limit.count), now]
        else:
            bucket[0] = min(self.limit.count, bucket[0] + (now - bucket[1]) * self.rate)
            bucket[1] = now
        return bucket

    def allow(self, user_id: int) -> bool:
        if not self.limit.enabled:
            return True
        now = self.clock()
        if now - self._swept > self.limit.seconds:
            self._sweep(now)
        bucket = self._bucket(user_id, now)
        if bucket[0] >= 1.0:
            bucket[0] -= 1.0
            return True
        return False

    def retry_after(self, user_id: int) -> float:
        """Seconds until ``user_id`` may send again, once ``allow`` said no (PROTOCOL.md
        ``retry_after``). Rounded up to a tenth: a client that waits exactly that long
        is not refused again for a rounding error."""
        bucket = self._buckets.get(user_id)
        if not self.limit.enabled or bucket is None:
            return 0.0
        tokens = min(self.limit.count, bucket[0] + (self.clock() - bucket[1]) * self.rate)
        return _tenths((1.0 - tokens) / self.rate)

    def refund(self, user_id: int) -> None:
        bucket = self._buckets.get(user_id)
        if bucket is not None:
            bucket[0] = min(self.limit.count, bucket[0] + 1.0)

    def _sweep(self, now: float) -> None:
        self._swept = now
        full = [
            user_id
            for user_id, (tokens, updated) in self._buckets.items()
            if tokens + (now - updated) * self.rate >= self.limit.count
        ]
        for user_id in full:
            del self._buckets[user_id]


class SharedRateLimiter(RateLimiter):
    """The local bucket, plus a per-user count of sends in every process (fixed windows).

    The count lives in Redis; each process knows it as of its last answer from Redis and
    decides at once from what it knows, so a send never waits on Redis and sends stay in
    order. Across processes the limit can be passed by the sends in flight at one moment.
    """

    def __init__(
        self, limit: RateLimit, counter: SendCounter, clock=time.monotonic, wall=time.time
    ) -> None:
        super().__init__(limit, clock)
        self.counter = counter
        self.wall = wall
        # (user, window) -> sends in all processes; swept with the buckets, so it holds
        # only the windows of users who sent lately.
        self.known: dict[tuple[int, int], int] = {}

    def _window(self) -> int:
        return int(self.wall() // self.limit.seconds)

    def allow(self, user_id: int) -> bool:
        if not super().allow(user_id):
            return False
        if not self.limit.enabled:
            return True
        key = (user_id, self._window())
        if self.known.get(key, 0) >= self.limit.count:
            super().refund(user_id)
            return False
        self._count(key, 1)
        return True

    def retry_after(self, user_id: int) -> float:
        local = super().retry_after(user_id)
        window = self._window()
        if self.known.get((user_id, window), 0) < self.limit.count:
            return local
        return max(local, _tenths((window + 1) * self.limit.seconds - self.wall()))

    def refund(self, user_id: int) -> None:
        super().refund(user_id)
        key = (user_id, self._window())
        if key in self.known:
            self._count(key, -1)

    def _count(self, key: tuple[int, int], amount: int) -> None:
        self.known[key] = self.known.get(key, 0) + amount
        d = self.counter.count(key[0], key[1], self.limit.seconds, amount)
        if d is not None:

            def learned(total: int) -> None:
                if key in self.known:
                    self.known[key] = max(self.known[key], int(total))

            d.addCallbacks(learned, lambda _f: None)

    def _sweep(self, now: float) -> None:
        super()._sweep(now)
        current = self._window()
        for key in [k for k in self.known if k[1] < current]:
            del self.known[key]


def _tenths(seconds: float) -> float:
    return max(0.1, math.ceil(seconds * 10) / 10)


class RecentAcks:
    """(room, user id, client_id) -> seq of the sends this process acked lately (LRU).

    A resend of a stored client_id is answered with its original seq and does not count
    against the rate limit (PROTOCOL.md), but only the database knows every stored
    client_id. Asking it for each write over the limit made a flood of refused writes
    cost a database read each, which slowed everyone's sends to 0.5 s (issue 9). Over
    the limit the hub asks this map instead, and nothing else: the trade-off is that a
    resend of a send this process did not ack lately (acked by another process, before a
    restart, or evicted) is refused as `rate_limited` with `retry_after` while its user
    is over the limit; once under it, the resend reaches the store and gets its seq.
    Nothing is lost or stored twice either way, and a hit only tells a user the seq of
    their own earlier send. Bounded by ``LiveLimits.recent_acks``.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._seqs: OrderedDict[tuple[str, int, str], int] = OrderedDict()

    def get(self, room: str, user_id: int, client_id: str) -> int | None:
        return self._seqs.get((room, user_id, client_id))

    def remember(self, room: str, user_id: int, client_id: str, seq: int) -> None:
        key = (room, user_id, client_id)
        self._seqs[key] = seq
        self._seqs.move_to_end(key)
        while len(self._seqs) > self.size:
            self._seqs.popitem(last=False)

    def __len__(self) -> int:
        return len(self._seqs)
