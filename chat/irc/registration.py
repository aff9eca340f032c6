"""Registration of an IRC client: CAP LS 302 / REQ / END (``server-time``,
``message-tags``, ``echo-message``, ``batch``, ``sasl``), then a login: SASL PLAIN
(username and password, or a token as the password) or ``PASS <token>`` with NICK and
USER. The nick is the username (PROTOCOL.md): another one, at registration or later, is
432 (registration waits for a NICK of the username). Logins are checked
on the store's threads (directory.py); three failures end the link.
"""

from __future__ import annotations

import base64
import binascii
import logging

from twisted.words.protocols import irc

from chat.irc.channels import mask

logger = logging.getLogger(__name__)

SERVER = "parley"
CAPS = ("server-time", "message-tags", "echo-message", "batch", "sasl")
CAP_VALUES = {"sasl": "PLAIN"}
MAX_LOGIN_FAILURES = 3
MAX_SASL_BYTES = 1200  # PLAIN's three fields fit; a client may not make us buffer more
# The nick is the username, and Django's usernames take up to 150 characters: a nick cut
# shorter never matched a longer username, and that user could not register at all.
NICKLEN = 150


class Registration:
    """A mixin of IRCConnection (protocol.py), which has the state it uses."""

    def irc_CAP(self, prefix, params) -> None:
        if not self.need("CAP", params, 1):
            return
        sub = params[0].upper()
        if sub == "LS":
            if not self.registered:
                self._cap_negotiating = True
            version_302 = len(params) > 1 and params[1].isdigit() and int(params[1]) >= 302
            offered = " ".join(
                f"{cap}={CAP_VALUES[cap]}" if version_302 and cap in CAP_VALUES else cap
                for cap in CAPS
            )
            self.send_line("CAP", [self.nick, "LS", offered])
        elif sub == "LIST":
            self.send_line("CAP", [self.nick, "LIST", " ".join(sorted(self.caps))])
        elif sub == "REQ":
            if not self.registered:
                self._cap_negotiating = True
            wanted = params[1].split() if len(params) > 1 else []
            names = [w.lstrip("-") for w in wanted]
            if wanted and all(name in CAPS for name in names):
                for want, name in zip(wanted, names, strict=True):
                    if want.startswith("-"):
                        self.caps.discard(name)
                    else:
                        self.caps.add(name)
                self.send_line("CAP", [self.nick, "ACK", " ".join(wanted)])
            else:
                self.send_line("CAP", [self.nick, "NAK", " ".join(wanted)])
        elif sub == "END":
            self._cap_negotiating = False
            self._maybe_register()
        else:
            self.numeric("410", sub, "Invalid CAP command")

    def irc_PASS(self, prefix, params) -> None:
        if self.registered:
            self.numeric(irc.ERR_ALREADYREGISTRED, "You may not reregister")
        elif self.need("PASS", params, 1):
            self._pass = params[0]

    def irc_NICK(self, prefix, params) -> None:
        if not self.need("NICK", params, 1):
            return
        if self.registered:
            if params[0] != self.nick:
                self.numeric(irc.ERR_ERRONEUSNICKNAME, params[0], "Your nick is your username")
            return
        self.nick = params[0][:NICKLEN]
        self._maybe_register()

    def irc_USER(self, prefix, params) -> None:
        if self.registered:
            self.numeric(irc.ERR_ALREADYREGISTRED, "You may not reregister")
        elif self.need("USER", params, 1):
            self._got_user = True
            self._maybe_register()

    def irc_AUTHENTICATE(self, prefix, params) -> None:
        if self.registered or self.user is not None:
            self.numeric("907", "You have already authenticated")
            return
        if "sasl" not in self.caps or not self.need("AUTHENTICATE", params, 1):
            if "sasl" not in self.caps:
                self.numeric("904", "SASL authentication failed: sasl not negotiated")
            return
        value = params[0]
        if value == "*":
            self._sasl, self._sasl_started = None, False
            self.numeric("906", "SASL authentication aborted")
            return
        if not self._sasl_started:
            if value.upper() != "PLAIN":
                self.numeric("908", "PLAIN", "are available SASL mechanisms")
                self.numeric("904", "SASL authentication failed")
                return
            self._sasl_started, self._sasl = True, ""
            self.send_line("AUTHENTICATE", ["+"], prefix=None)
            return
        chunk = "" if value == "+" else value
        self._sasl = (self._sasl or "") + chunk
        if len(self._sasl) > MAX_SASL_BYTES:
            self._sasl, self._sasl_started = None, False
            self.numeric("905", "SASL message too long")
            return
        if len(chunk) == 400:
            return  # more follows
        encoded, self._sasl, self._sasl_started = self._sasl, None, False
        try:
            fields = base64.b64decode(encoded, validate=True).decode("utf-8").split("\x00")
        except (binascii.Error, UnicodeDecodeError):
            fields = []
        if len(fields) != 3 or not fields[1] or not fields[2]:
            self._login_failed("904", "SASL authentication failed: malformed PLAIN")
            return
        self._login(
            self.factory.directory.password_login(fields[1], fields[2], self.address), sasl=True
        )

    def _login(self, d, sasl: bool) -> None:
        self._logging_in = True

        def answered(login) -> None:
            self._logging_in = False
            if self.closed:
                return
            if login.user is None:
                if sasl:
                    self._login_failed("904", "SASL authentication failed")
                else:
                    self.numeric(irc.ERR_PASSWDMISMATCH, "Password incorrect (PASS <token>)")
                    self.close("bad token")
                return
            self.user, self.credential = login.user, login.credential
            if sasl:
                who = mask(login.user.username)
                self.numeric(
                    "900",
                    who,
                    login.user.username,
                    f"You are now logged in as {login.user.username}",
                )
                self.numeric("903", "SASL authentication successful")
            self._maybe_register()

        def failed(failure) -> None:
            self._logging_in = False
            logger.warning("IRC login failed: %s", failure.getErrorMessage())
            self.close("the service is unavailable; retry later")

        d.addCallbacks(answered, failed)

    def _login_failed(self, code: str, text: str) -> None:
        self._failures += 1
        self.numeric(code, text)
        if self._failures >= MAX_LOGIN_FAILURES:
            self.close("too many failed logins")

    def _maybe_register(self) -> None:
        if self.registered or self._cap_negotiating or self._logging_in or self.closed:
            return
        if self.nick == "*" or not self._got_user:
            return
        if self.user is None:
            if self._pass is None:
                self.numeric(irc.ERR_PASSWDMISMATCH, "Log in with PASS <token> or SASL PLAIN")
                self.close("no credentials")
                return
            secret, self._pass = self._pass, None
            self._login(self.factory.directory.token_login(secret), sasl=False)
            return
        username = self.user.username
        if self.nick != username:
            # PROTOCOL.md: the nick is the username; NICK to another name is refused. The
            # registration waits (its deadline still runs) for a NICK of the username.
            self.numeric(
                irc.ERR_ERRONEUSNICKNAME, self.nick, f"Your nick is your username: {username}"
            )
            self.nick = "*"
            return
        if not self.factory.admit(self):
            self.close("too many connections for this user")
            return
        self.registered = True
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self.welcome()

    def welcome(self) -> None:
        name = self.nick
        self.numeric(irc.RPL_WELCOME, f"Welcome to Parley, {name}")
        self.numeric(irc.RPL_YOURHOST, f"Your host is {SERVER}, running Parley")
        self.numeric(irc.RPL_CREATED, "This server speaks the Parley room log")
        self.numeric(irc.RPL_MYINFO, SERVER, "parley", "i", "nt")
        self.numeric(
            irc.RPL_ISUPPORT,
            "CHANTYPES=#",
            "NETWORK=Parley",
            "CASEMAPPING=ascii",
            f"NICKLEN={NICKLEN}",
            "CHANNELLEN=51",
            f"CHANLIMIT=#:{self.factory.max_channels}",
            "are supported by this server",
        )
        self.numeric(irc.ERR_NOMOTD, "MOTD File is missing")
        self.follow_direct_rooms()
        self.registered_now()
