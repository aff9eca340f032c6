"""One IRC client connection: Twisted's ``irc.IRC`` server protocol (its numerics, its
``sendCommand`` with tags, its ``irc_<COMMAND>`` dispatch), with Parley's own framing in
front, because a chat server's door must be bounded and hostile-proof:

    bytes      split on LF; an unterminated line past 8191+512 bytes is thrown away
    a line     over 512 bytes (8191 more for tags)          -> 417 ERR_INPUTTOOLONG
               not UTF-8                                     -> NOTICE, the line dropped
               a flood: past a burst of 40, over 10 lines/s  -> lines dropped with a
               NOTICE; 20 more dropped                       -> ERROR, disconnected
               no command / unknown command                  -> dropped / 421
    writes     more than 1 MiB the client has not taken      -> disconnected
    idle       unregistered after 30 s, or silent after PING -> ERROR, disconnected

Registration (CAP, PASS + NICK + USER, SASL PLAIN) is here; what a registered client asks
(channels, messages, direct messages) is in commands.py.
"""

from __future__ import annotations

import logging
import uuid
from collections import OrderedDict

from twisted.internet.interfaces import IPushProducer
from twisted.words.protocols import irc
from zope.interface import implementer

from chat.irc.commands import ChannelCommands
from chat.irc.registration import SERVER, Registration
from chat.irc.tags import (
    MAX_LINE,
    MAX_TAGS,
    LineTooLong,
    check_length,
    format_line,
    parse_line,
)

logger = logging.getLogger(__name__)

# Flood control: a token bucket of lines. A client may paste a burst, then 10 lines a
# second (far above what a person types, below what hurts a server).
FLOOD_BURST = 40.0
FLOOD_RATE = 10.0
FLOOD_DROPS_BEFORE_CUT = 20
MAX_UNSENT_BYTES = 1024 * 1024  # as the other transports (chat/live/transport.py)
REGISTRATION_TIMEOUT = 30.0
PING_AFTER = 90.0  # a PING after this long silence...
DEAD_AFTER = 180.0  # ...and the link is dead with nothing heard for this long
OWN_SENDS = 1000  # client_ids of this connection's recent sends (echo, labels)
ERR_INPUTTOOLONG = "417"  # IRCv3 (modern.ircdocs.horse); not among Twisted's numerics
MAX_HELD = 20  # commands held behind a login being checked; more are 451
# Commands an unregistered client may send; anything else is 451.
_BEFORE_REGISTRATION = {"CAP", "PASS", "NICK", "USER", "AUTHENTICATE", "PING", "PONG", "QUIT"}


@implementer(IPushProducer)
class IRCConnection(Registration, ChannelCommands, irc.IRC):
    """``factory`` is the IRCFactory (service.py): the hub, the directory, the limits."""

    hostname = SERVER
    # As a live connection for OpenConnections (the per-user cap, the health counts).
    transport_name = "irc"
    slug = ""

    def __init__(self, factory) -> None:
        self.factory = factory
        self.clock = factory.reactor
        self.user = None
        self.credential: str | None = None  # the token's key, re-checked on revocation
        self.nick = "*"
        self.caps: set[str] = set()
        self.closed = False
        self.registered = False
        self._buffer = b""
        self._discarding = False
        self._pass: str | None = None
        self._got_user = False
        self._cap_negotiating = False
        self._sasl: str | None = None  # the AUTHENTICATE chunks so far
        self._sasl_started = False
        self._logging_in = False
        self._failures = 0
        self._tokens = FLOOD_BURST
        self._filled_at = self.clock.seconds()
        self._dropped = 0
        self._flood_noticed = False
        self._paused = False
        self._unsent = 0
        self.last_heard = self.clock.seconds()
        self._pinged = False
        self._own: OrderedDict[str, str | None] = OrderedDict()
        self.tags: dict[str, str] = {}  # the tags of the line being handled
        self._held: list[tuple] = []  # commands sent while the login was being checked
        self.admitted = None  # its key in OpenConnections, once registered
        self.address = ""
        self._deadline = None
        ChannelCommands.__init__(self)

    @property
    def limit_key(self) -> tuple[str, object]:
        return ("user", self.user.id) if self.user is not None else ("address", self.address)

    def heartbeat(self) -> None:
        """OpenConnections.heartbeat: the factory's keepalive loop does this work."""

    # -- connection ------------------------------------------------------------------

    def connectionMade(self) -> None:
        self.channels = []  # irc.IRC's; unused
        self.transport.registerProducer(self, True)
        self.factory.connections.add(self)
        self._deadline = self.clock.callLater(REGISTRATION_TIMEOUT, self._registration_timeout)

    def connectionLost(self, reason=None) -> None:
        self.closed = True
        self.factory.connections.discard(self)
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self.leave_everything()
        if self.registered:
            self.factory.release(self)

    def close(self, reason: str) -> None:
        """ERROR and the end of the link; aborted if the client does not take it."""
        if self.closed:
            return
        self.send_line("ERROR", [f"Closing link: {reason}"], prefix=None)
        self.closed = True
        self.leave_everything()
        self.transport.loseConnection()
        self.clock.callLater(5.0, self._abort)

    def _abort(self) -> None:
        if getattr(self.transport, "connected", False):
            self.transport.abortConnection()

    def _registration_timeout(self) -> None:
        if not self.registered:
            self.close("registration timed out")

    def keepalive(self, now: float) -> None:
        """From the factory's loop: PING a quiet client; close a dead one."""
        if not self.registered or self.closed:
            return
        silent = now - self.last_heard
        if silent > DEAD_AFTER:
            self.close("ping timeout")
        elif silent > PING_AFTER and not self._pinged:
            self._pinged = True
            self.send_line("PING", [SERVER], prefix=None)

    # -- writing (the producer: a client that never reads is cut) -------------------

    def send_line(self, command: str, params, prefix: str | None = SERVER, tags=None) -> None:
        if self.closed and command != "ERROR":
            return
        self.write(format_line(command, params, prefix, tags))

    def sendLine(self, line) -> None:
        """irc.IRC's own writes (none of Parley's code calls it), through the bound."""
        self.write((line + "\r\n").encode("utf-8", "replace"))

    def write(self, data: bytes) -> None:
        """Every write: what is written while the transport is paused counts toward the
        1 MiB bound; past it the client is cut (it stopped reading)."""
        if self._paused:
            self._unsent += len(data)
            if self._unsent > MAX_UNSENT_BYTES:
                logger.info("IRC client %s is too slow; cutting it", self.nick)
                self.closed = True
                self.leave_everything()
                self.transport.abortConnection()
                return
        self.transport.write(data)

    def numeric(self, code: str, *params: str) -> None:
        self.send_line(code, [self.nick, *params])

    def pauseProducing(self) -> None:
        if not self._paused:
            self._paused = True
            self._unsent = 0

    def resumeProducing(self) -> None:
        self._paused = False

    def stopProducing(self) -> None:
        pass

    # -- reading ---------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self.closed:
            return
        self.last_heard = self.clock.seconds()
        self._pinged = False
        buffer = self._buffer + data
        lines = buffer.split(b"\n")
        self._buffer = lines.pop()
        if len(self._buffer) > MAX_TAGS + MAX_LINE:
            self._buffer = b""
            if not self._discarding:
                self._discarding = True
                self.numeric(ERR_INPUTTOOLONG, "Input line was too long")
        for raw in lines:
            if self.closed:
                return
            if self._discarding:  # the end of a line already refused
                self._discarding = False
                continue
            self.line_received(raw.rstrip(b"\r"))

    def line_received(self, raw: bytes) -> None:
        if not raw.strip():
            return
        if not self._take_token():
            return
        try:
            check_length(raw)
        except LineTooLong:
            self.numeric(ERR_INPUTTOOLONG, "Input line was too long")
            return
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            self.send_line("NOTICE", [self.nick, "Line dropped: it is not valid UTF-8"])
            return
        if "\x00" in line:
            self.send_line("NOTICE", [self.nick, "Line dropped: it holds a NUL"])
            return
        try:
            tags, prefix, command, params = parse_line(line)
        except ValueError:
            return
        self.tags = tags
        self.handleCommand(command, prefix, params)

    def _take_token(self) -> bool:
        now = self.clock.seconds()
        self._tokens = min(FLOOD_BURST, self._tokens + (now - self._filled_at) * FLOOD_RATE)
        self._filled_at = now
        if self._tokens >= 1:
            self._tokens -= 1
            self._dropped = 0
            self._flood_noticed = False
            return True
        self._dropped += 1
        if self._dropped > FLOOD_DROPS_BEFORE_CUT:
            self.close("Excess Flood")
        elif not self._flood_noticed:
            self._flood_noticed = True
            self.send_line("NOTICE", [self.nick, "Flood: slow down, lines are being dropped"])
        return False

    def handleCommand(self, command: str, prefix: str, params: list[str]) -> None:
        if not self.registered and command not in _BEFORE_REGISTRATION:
            if self._logging_in and len(self._held) < MAX_HELD:
                # Pipelined behind PASS/NICK/USER while the login is read: kept for
                # after the welcome, as a client that sent them in one go expects.
                self._held.append((self.tags, command, prefix, params))
                return
            self.numeric(irc.ERR_NOTREGISTERED, "You have not registered")
            return
        method = getattr(self, f"irc_{command}", None)
        try:
            if method is None:
                self.numeric(irc.ERR_UNKNOWNCOMMAND, command, "Unknown command")
            else:
                method(prefix, params)
        except Exception:
            # A bug must not become a traceback to the client, nor end other clients.
            logger.exception("IRC %s from %s failed", command, self.nick)
            self.send_line("NOTICE", [self.nick, f"{command} failed on the server"])

    def need(self, command: str, params: list[str], count: int) -> bool:
        if len(params) < count or any(not p for p in params[:count]):
            self.numeric(irc.ERR_NEEDMOREPARAMS, command, "Not enough parameters")
            return False
        return True

    # -- own sends: client ids, for echo-message and labels ------------------------------

    def new_client_id(self) -> tuple[str, str | None]:
        label = self.tags.get("label") or self.tags.get("+draft/label")
        wanted = self.tags.get("+parley/client-id") or self.tags.get("+client-id")
        client_id = (wanted or f"irc-{uuid.uuid4().hex}")[:64]
        self._own[client_id] = label
        self._own.move_to_end(client_id)
        while len(self._own) > OWN_SENDS:
            self._own.popitem(last=False)
        return client_id, label

    def sent_here(self, client_id: str) -> bool:
        return client_id in self._own

    def label_of(self, client_id: str) -> str | None:
        return self._own.get(client_id)

    # -- keepalive and the end -------------------------------------------------------------

    def irc_PING(self, prefix, params) -> None:
        self.send_line("PONG", [SERVER, params[0] if params else SERVER])

    def irc_PONG(self, prefix, params) -> None:
        pass  # dataReceived noted that the client is alive

    def irc_QUIT(self, prefix, params) -> None:
        self.close("Quit")

    def registered_now(self) -> None:
        """After the welcome: the commands held while the login was checked."""
        held, self._held = self._held, []
        for tags, command, prefix, params in held:
            if self.closed:
                return
            self.tags = tags
            self.handleCommand(command, prefix, params)
        self.tags = {}
