"""The live connections of one process, and the bound on how many one user may hold.

Every connection of every transport (chat/live/transport.py) is admitted here after its
access check and given back when it ends; the keep-alive loops (service.py), /healthz and
the connections gauge read it, and so can whatever must find the connections to a room.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chat.live.transport import LiveConnection

# PROTOCOL.md's CHAT_MAX_CONNECTIONS_PER_USER; see OpenConnections for why.
DEFAULT_MAX_CONNECTIONS_PER_USER = 50
# The keep-alive round of a transport is spread over this many slices of its interval
# (service.py ticks one slice at a time). Pinging every connection in one reactor turn
# stalled everything else for as long as 16,000 pings take, about a second, once every
# 20 s: the many-room scenario's p99 was that stall (bench/scenario.py, 8,000 users).
HEARTBEAT_SLICES = 100


def heartbeat_slice(connection: object) -> int:
    """The slice of the round a connection is in, fixed for its life (its identity)."""
    return (id(connection) >> 4) % HEARTBEAT_SLICES


class OpenConnections:
    """Every live connection of this process past its checks, by transport, and how many
    each user (anonymous: each client address) holds.

    The bound, PROTOCOL.md's CHAT_MAX_CONNECTIONS_PER_USER (default 50): one user opened
    2000 WebSockets (issue 9), each a socket, a subscriber written to by every event of its
    room, and up to a megabyte of buffer. Fifty is far more than one person needs (a page
    holds one connection to its room; ten tabs on five devices are fifty) and few enough
    that one account cannot take a process's descriptors. Anonymous readers have no
    account, so their address stands for one, with the same bound: readers behind one NAT
    share it (they can sign in, or the operator raises the setting), and behind a proxy the
    address is the client's only if the proxy is in TRUSTED_PROXIES (see web.client_address),
    otherwise every anonymous reader shares the proxy's, which shows at once.

    A connection's place is given back when it ends, however it ends (closed by the
    client, dropped, cut as a slow consumer, revoked, shut down), in ``LiveConnection.run``.
    """

    def __init__(self, max_per_user: int = DEFAULT_MAX_CONNECTIONS_PER_USER) -> None:
        self.max_per_user = max_per_user
        self._held: dict[tuple[str, object], int] = {}
        self._open: dict[str, set[LiveConnection]] = {}
        # transport -> the connections of each heartbeat slice
        self._slices: dict[str, list[set[LiveConnection]]] = {}

    @classmethod
    def from_settings(cls, django_settings: Any) -> OpenConnections:
        return cls(
            getattr(
                django_settings, "CHAT_MAX_CONNECTIONS_PER_USER", DEFAULT_MAX_CONNECTIONS_PER_USER
            )
        )

    def admit(self, connection: LiveConnection) -> bool:
        """Count ``connection`` against its user's bound; False when the bound is reached."""
        key = connection.limit_key
        held = self._held.get(key, 0)
        if held >= self.max_per_user:
            return False
        self._held[key] = held + 1
        connection.admitted = key
        self._open.setdefault(connection.transport_name, set()).add(connection)
        slices = self._slices.get(connection.transport_name)
        if slices is None:
            slices = self._slices[connection.transport_name] = [
                set() for _ in range(HEARTBEAT_SLICES)
            ]
        slices[heartbeat_slice(connection)].add(connection)
        return True

    def release(self, connection: LiveConnection) -> None:
        key, connection.admitted = connection.admitted, None
        if key is None:
            return
        held = self._held.get(key, 0) - 1
        if held > 0:
            self._held[key] = held
        else:
            self._held.pop(key, None)
        self._open.get(connection.transport_name, set()).discard(connection)
        slices = self._slices.get(connection.transport_name)
        if slices is not None:
            slices[heartbeat_slice(connection)].discard(connection)

    def held(self, key: tuple[str, object]) -> int:
        return self._held.get(key, 0)

    def of(self, transport_name: str) -> tuple[LiveConnection, ...]:
        return tuple(self._open.get(transport_name, ()))

    def __iter__(self) -> Iterator[LiveConnection]:
        for connections in list(self._open.values()):
            yield from tuple(connections)

    def in_room(self, slug: str) -> list[LiveConnection]:
        """The connections to one room (every transport), e.g. to end those that lost access."""
        return [connection for connection in self if connection.slug == slug]

    def counts(self) -> dict[str, int]:
        return {name: len(open_) for name, open_ in self._open.items()}

    def heartbeat(self, transport_name: str, part: int | None = None) -> None:
        """Keep-alive for the connections of one transport: all of them, or those of one
        slice (``part``, 0 .. HEARTBEAT_SLICES - 1)."""
        if part is None:
            connections = self.of(transport_name)
        else:
            slices = self._slices.get(transport_name)
            connections = tuple(slices[part]) if slices else ()
        for connection in connections:
            connection.heartbeat()

    def heartbeat_round(self, transport_name: str) -> Callable[[], None]:
        """A function that heartbeats the next slice each call: called HEARTBEAT_SLICES
        times per interval, it reaches every connection once per interval."""
        ticks = itertools.count()

        def tick() -> None:
            self.heartbeat(transport_name, next(ticks) % HEARTBEAT_SLICES)

        return tick
