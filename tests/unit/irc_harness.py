"""The IRC gateway on StringTransport: a real IRCConnection and a real RoomHub (over the
in-memory store of live_fakes.py, on a fake clock), with a directory of users, tokens and
rooms in memory in place of the database readers (which the integration test runs)."""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.testing import StringTransport

from chat.irc.directory import Channel, Login
from chat.irc.service import IRCFactory
from chat.live.connections import OpenConnections
from chat.live.records import RoomInfo, UserInfo

ALICE = UserInfo(1, "alice")
BOB = UserInfo(2, "bob")


class FakeDirectory:
    def __init__(self, store) -> None:
        self.store = store
        self.tokens = {"prl_alice": ALICE, "prl_bob": BOB}
        self.passwords = {("alice", "pw-alice"): ALICE, ("bob", "pw-bob"): BOB}
        self.private: dict[str, set[int]] = {}  # slug -> members
        self.banned: set[tuple[str, int]] = set()
        self.topics: dict[str, str] = {"lobby": "The lobby"}
        self.history: dict[str, list[dict]] = {}
        self.users = {"alice": ALICE, "bob": BOB}
        self.dm_rooms: dict[str, str] = {}  # dm slug -> created

    def token_login(self, secret):
        user = self.tokens.get(secret)
        return defer.succeed(Login(user, f"token:{secret}" if user else None))

    def signs_in(self, credential):
        return defer.succeed(self.tokens.get(credential.removeprefix("token:")))

    def password_login(self, username, password, address=""):
        return defer.succeed(Login(self.passwords.get((username, password))))

    def _info(self, slug: str) -> RoomInfo:
        log = self.store.log[slug]
        return RoomInfo(1, slug, slug not in self.private, False, log[-1]["seq"] if log else 0)

    def channel(self, user_id, slug, history):
        if slug not in self.store.log or slug.startswith("dm-"):
            return defer.succeed(Channel(None, "403"))
        info = self._info(slug)
        if (slug, user_id) in self.banned:
            return defer.succeed(Channel(info, "474"))
        if slug in self.private and user_id not in self.private[slug]:
            return defer.succeed(Channel(info, "473"))
        events = tuple(self.history.get(slug, ())) if history else ()
        topic = self.topics.get(slug, "")
        return defer.succeed(Channel(info, None, slug, topic, events, info.last_seq))

    def rooms(self, user_id):
        return defer.succeed(
            [(slug, 2, self.topics.get(slug, "")) for slug in sorted(self.store.log)]
        )

    def direct_room(self, user_id, nick):
        other = self.users.get(nick.lower())
        if other is None:
            return defer.succeed(None)
        low, high = sorted((user_id, other.id))
        slug = f"dm-{low}-{high}"
        self.store.log.setdefault(slug, [])
        self.private[slug] = {low, high}
        return defer.succeed((self._info(slug), other.username))

    def direct_rooms(self, user_id):
        return defer.succeed([])


class FakeLive:
    def __init__(self, clock, hub, store) -> None:
        self.reactor = clock
        self.hub = hub
        self.store = store
        self.open_connections = OpenConnections(3)


def gateway(clock, hub, store) -> tuple[IRCFactory, FakeDirectory]:
    directory = FakeDirectory(store)
    return IRCFactory(FakeLive(clock, hub, store), directory=directory), directory


class Client:
    """One IRC client on a StringTransport: ``send`` lines, read ``lines()``."""

    def __init__(self, factory: IRCFactory) -> None:
        self.protocol = factory.buildProtocol(None)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)
        self._read = 0

    def send(self, *lines: str | bytes) -> None:
        for line in lines:
            data = line if isinstance(line, bytes) else line.encode()
            self.protocol.dataReceived(data + b"\r\n")

    def lines(self) -> list[str]:
        """The lines written since the last call."""
        data = self.transport.value()
        new, self._read = data[self._read :], len(data)
        return [line.decode() for line in new.split(b"\r\n") if line]

    def all(self) -> list[str]:
        return [line.decode() for line in self.transport.value().split(b"\r\n") if line]

    def login(self, token: str = "prl_alice", nick: str = "alice", caps: str = "") -> list[str]:
        if caps:
            self.send("CAP LS 302", f"CAP REQ :{caps}", "CAP END")
        self.send(f"PASS {token}", f"NICK {nick}", f"USER {nick} 0 * :{nick}")
        return self.lines()

    @property
    def closed(self) -> bool:
        return self.transport.disconnecting or self.protocol.closed


def codes(lines: list[str]) -> list[str]:
    """The command or numeric of each line (after tags and prefix)."""
    found = []
    for line in lines:
        parts = line.split(" ")
        if parts[0].startswith("@"):
            parts = parts[1:]
        if parts[0].startswith(":"):
            parts = parts[1:]
        found.append(parts[0])
    return found
