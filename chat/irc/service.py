"""The IRC gateway of one process: the factory of IRCConnection (protocol.py) on the
same reactor, hub and store as the web's live chat (chat/live/service.py's LiveService),
listened on by project/runner.py when ``--irc-port`` is given (PARLEY_IRC_PORT).

Each connection counts under the per-user cap of live connections (OpenConnections,
transport ``irc``) once registered; one loop of the factory PINGs quiet clients and
closes dead ones, instead of a timer per connection.
"""

from __future__ import annotations

from twisted.internet import protocol, task

from chat.dms import participants
from chat.irc.directory import Directory
from chat.irc.protocol import IRCConnection
from chat.live.publish import ROOM

KEEPALIVE_EVERY = 15.0
MAX_CHANNELS = 100  # channels one connection may join (405 beyond)


class IRCFactory(protocol.Factory):
    scheme = "irc"  # how project/listen.py shows its port (irc://, ircs://)

    def __init__(self, live, directory=None, max_channels: int = MAX_CHANNELS) -> None:
        self.live = live
        self.reactor = live.reactor
        self.hub = live.hub
        self.directory = directory if directory is not None else Directory(live.store)
        self.max_channels = max_channels
        self.connections: set[IRCConnection] = set()
        # A direct room made or joined (chat/dms.py: a membership change of a dm- room)
        # is followed at once by its members' IRC connections, not at their next refresh.
        listeners = getattr(live, "access_listeners", None)
        if listeners is not None:
            listeners.append(self.access_changed)
        # The PRIVMSG bytes of the event being fanned out, by capabilities (channels.py).
        self.lines_of: dict | None = None
        self.lines: dict[tuple[bool, bool], bytes] = {}
        self._loop: task.LoopingCall | None = None

    def buildProtocol(self, addr) -> IRCConnection:
        connection = IRCConnection(self)
        connection.factory = self
        connection.address = getattr(addr, "host", str(addr))
        return connection

    def startFactory(self) -> None:
        if self._loop is None:
            self._loop = task.LoopingCall(self.keepalive)
            self._loop.clock = self.reactor
            self._loop.start(KEEPALIVE_EVERY, now=False)

    def stopFactory(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def access_changed(self, change) -> None:
        if change.kind != ROOM or change.room is None or participants(change.room) is None:
            return
        users = None if change.users is None else set(change.users)
        for connection in list(self.connections):
            user = getattr(connection, "user", None)
            if user is not None and (users is None or user.id in users):
                connection.follow_direct_rooms()

    def keepalive(self) -> None:
        now = self.reactor.seconds()
        for connection in list(self.connections):
            connection.keepalive(now)

    # -- the per-user cap (chat/live/connections.py) -------------------------------------

    def admit(self, connection: IRCConnection) -> bool:
        opened = getattr(self.live, "open_connections", None)
        return opened is None or opened.admit(connection)

    def release(self, connection: IRCConnection) -> None:
        opened = getattr(self.live, "open_connections", None)
        if opened is not None:
            opened.release(connection)

    def drain(self) -> None:
        """Shutdown: every client told, then disconnected."""
        for connection in list(self.connections):
            connection.close("server shutting down")
