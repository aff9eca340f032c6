"""Refusing connections before the process runs out of file descriptors.

When accept() fails with EMFILE, Twisted logs it and leaves the connection in the
kernel's backlog, and everything else that needs a descriptor fails with it: the
database, a static file, a log file. Long before that, ``DescriptorBudget`` says no,
and the connection (its descriptor is already open) gets a bare 503 and is closed, so
that the clients already connected keep being served.
"""

from __future__ import annotations

import os
import resource

from twisted.internet.protocol import Protocol

# Descriptors kept free for the process's own work (database connections of every
# thread, static files being sent, logs, Redis): a twentieth of the limit, within bounds.
MIN_RESERVE = 64
MAX_RESERVE = 1024
# Counting open descriptors lists /proc/self/fd, which costs in proportion to their
# number (24 ms of CPU at 16,800 open, measured; 4% of a many-room bench run's CPU). So
# it is done at most this often, and accepted connections are added in between: the
# estimate only grows between counts (closures are not taken off). Far from the
# threshold (more than a quarter of the limit below it), where only a surge of
# descriptors opened some other way than accept() could reach it, every FAR_INTERVAL.
SAMPLE_INTERVAL = 1.0
FAR_INTERVAL = 10.0
# Near the limit a refusal re-counts, at most this often, so that it ends soon after
# connections close.
RECHECK_INTERVAL = 0.1
# A refused client may still be sending its request; reading it for a moment before
# closing keeps the kernel from answering with a reset that would destroy the 503.
LINGER = 2.0
_FD_DIRS = ("/proc/self/fd", "/dev/fd")


def open_descriptors() -> int | None:
    """How many descriptors this process has open, or None where that cannot be known."""
    for directory in _FD_DIRS:
        try:
            return len(os.listdir(directory))
        except OSError:
            continue
    return None


def reserve_for(limit: int) -> int:
    return min(max(MIN_RESERVE, limit // 20), MAX_RESERVE)


class DescriptorBudget:
    """Whether one more connection leaves the reserve of descriptors untouched."""

    def __init__(self, clock, count=open_descriptors) -> None:
        self.clock = clock
        self.count = count
        self._sampled_at: float | None = None
        self._estimate = 0

    def can_accept(self) -> bool:
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if limit == resource.RLIM_INFINITY:
            return True
        threshold = limit - reserve_for(limit)
        now = self.clock.seconds()
        age = None if self._sampled_at is None else now - self._sampled_at
        far = self._estimate < threshold - limit // 4
        stale = age is None or age >= (FAR_INTERVAL if far else SAMPLE_INTERVAL)
        if stale or (self._estimate >= threshold and age >= RECHECK_INTERVAL):
            counted = self.count()
            if counted is None:
                return True
            self._sampled_at, self._estimate = now, counted
        if self._estimate >= threshold:
            return False
        self._estimate += 1  # the connection about to be served
        return True


class RefusedConnection(Protocol):
    """Answers 503 at once, reads (and drops) what the client sends, and closes."""

    def __init__(self, clock, response: bytes) -> None:
        self.clock = clock
        self.response = response
        self._linger = None

    def connectionMade(self) -> None:
        self.transport.write(self.response)
        half_close = getattr(self.transport, "loseWriteConnection", None)
        if half_close is None:
            self.transport.loseConnection()
            return
        half_close()
        self._linger = self.clock.callLater(LINGER, self.transport.abortConnection)

    def dataReceived(self, data: bytes) -> None:
        pass

    def connectionLost(self, reason=None) -> None:
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
