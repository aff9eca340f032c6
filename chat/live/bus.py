"""Delivery of committed events to every process's hub.

One interface, two implementations picked by settings (the idea of Channels' layers,
smaller): ``LocalBus`` for a single process, ``RedisBus`` when several processes share
rooms (REDIS_URL). The bus only carries events that are already committed; the order
and exactly-once delivery to subscribers are the hub's job, so a bus may deliver late,
twice or out of order without breaking a guarantee.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from chat.live.events import OutboundEvent


class Bus(Protocol):
    def attach(self, deliver: Callable[[OutboundEvent], None]) -> None:
        """Where events for this process go (the hub's ``deliver``)."""

    def publish(self, event: dict, started: float | None = None) -> None:
        """A committed durable event, for every process (this one included)."""

    def follow(self, slug: str) -> None:
        """This process has subscribers in ``slug``: deliver its events here."""

    def unfollow(self, slug: str) -> None:
        """No more subscribers in ``slug`` here."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


class LocalBus:
    """One process: publishing is delivering."""

    def __init__(self) -> None:
        self._deliver: Callable[[OutboundEvent], None] | None = None

    def attach(self, deliver: Callable[[OutboundEvent], None]) -> None:
        self._deliver = deliver

    def publish(self, event: dict, started: float | None = None) -> None:
        if self._deliver is not None:
            self._deliver(OutboundEvent(event, started))

    def follow(self, slug: str) -> None:
        pass

    def unfollow(self, slug: str) -> None:
        pass

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass
