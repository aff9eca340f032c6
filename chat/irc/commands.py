"""What a registered IRC client asks: rooms as channels (LIST, JOIN, PART, NAMES, TOPIC,
WHO), messages (PRIVMSG, NOTICE to ``#slug`` or to a nick: a direct message), and the
feeds (channels.py) that bring the room's events back.

JOIN: the channel's access (directory, store threads: 403/473/474 as the web decides),
the live room (hub.room), the JOIN line and the topic, the last 50 messages as a
``chathistory`` batch (with ``server-time``), then the feed subscribed with ``since`` the
seq the history was read at, so nothing falls between the batch and live events. A send
is ``hub.submit``, the write path of every transport: the same seq, rate limit, slow
mode, mutes, bans and idempotency (a ``label`` or ``+parley/client-id`` tag names it).
"""

from __future__ import annotations

import logging

from twisted.words.protocols import irc

from chat.irc.channels import RoomFeed, mask
from chat.irc.tags import MAX_LINE
from chat.live.records import ErrorCode

logger = logging.getLogger(__name__)

DIRECT_REFRESH = 30.0  # direct rooms another user opened with us are found this often


class ChannelCommands:
    def __init__(self) -> None:
        self.feeds: dict[str, RoomFeed] = {}  # "#slug" -> its feed
        self.direct: dict[str, RoomFeed] = {}  # slug -> the feed of a direct room
        self.peers: dict[str, str] = {}  # lowercased nick -> direct room slug
        self._joining: set[str] = set()
        self._direct_timer = None
        self._directs_read = False  # the login's list of direct rooms has been read
        self._batches = 0

    # -- feeds ---------------------------------------------------------------------------

    def attach(self, feed: RoomFeed, room, since: int | None) -> None:
        feed.room = room
        feed.subscribed = True
        self.factory.hub.subscribe(room, feed, since)

    def detach(self, feed: RoomFeed) -> None:
        if feed.subscribed and feed.room is not None:
            feed.subscribed = False
            self.factory.hub.unsubscribe(feed.room, feed)

    def leave_everything(self) -> None:
        for feed in [*self.feeds.values(), *self.direct.values()]:
            self.detach(feed)
        self.feeds.clear()
        self.direct.clear()
        if self._direct_timer is not None and self._direct_timer.active():
            self._direct_timer.cancel()

    def feed_dropped(self, feed: RoomFeed, reason: str) -> None:
        """The room ended a feed (chat/live/access_watch.py for kicks and bans). Lost
        access may be the token's own revocation: then the whole link ends."""
        self._feed_ended(feed, reason)
        if reason == "revoked" and self.credential is not None and not self.closed:
            self.factory.directory.signs_in(self.credential).addCallbacks(
                self._token_checked, lambda f: None
            )

    def _feed_ended(self, feed: RoomFeed, reason: str) -> None:
        if feed.direct:
            self.direct.pop(feed.slug, None)
            self.peers.pop((feed.peer or "").lower(), None)
            return
        if self.feeds.get(feed.channel) is not feed:
            return
        del self.feeds[feed.channel]
        if reason == "revoked":
            text = "You may no longer read this room"
            self.send_line("KICK", [feed.channel, self.nick, text])
        elif reason in ("shutdown", "slow"):
            self.close("server shutting down" if reason == "shutdown" else "too slow")
        else:
            self.send_line(
                "PART",
                [feed.channel, "the room is unavailable; join again"],
                prefix=mask(self.nick),
            )

    def _token_checked(self, user) -> None:
        if user is None or user != self.user:
            self.close("the token was revoked")

    def names(self, feed: RoomFeed) -> None:
        names = feed.names()
        # Packed by bytes, not by count: usernames take up to 150 characters, and a line
        # over 512 bytes would be cut (names lost) on its way out.
        head = f":parley {irc.RPL_NAMREPLY} {self.nick} = {feed.channel} :"
        room = MAX_LINE - 2 - len(head.encode())
        line: list[str] = []
        size = 0
        for name in names:
            width = len(name.encode()) + (1 if line else 0)
            if line and size + width > room:
                self.numeric(irc.RPL_NAMREPLY, "=", feed.channel, " ".join(line))
                line, size, width = [], 0, len(name.encode())
            line.append(name)
            size += width
        if line or not names:
            self.numeric(irc.RPL_NAMREPLY, "=", feed.channel, " ".join(line))
        self.numeric(irc.RPL_ENDOFNAMES, feed.channel, "End of /NAMES list")

    # -- JOIN / PART -----------------------------------------------------------------------

    def irc_JOIN(self, prefix, params) -> None:
        if not self.need("JOIN", params, 1):
            return
        if params[0] == "0":
            for channel in list(self.feeds):
                self.irc_PART(prefix, [channel])
            return
        for channel in params[0].split(",")[:10]:
            self.join(channel)

    def join(self, channel: str) -> None:
        slug = channel[1:] if channel.startswith("#") else ""
        if not slug or len(slug) > 50:
            self.numeric(irc.ERR_NOSUCHCHANNEL, channel or "*", "No such channel")
            return
        channel = f"#{slug}"
        if channel in self.feeds or channel in self._joining:
            return
        if len(self.feeds) + len(self._joining) >= self.factory.max_channels:
            self.numeric(irc.ERR_TOOMANYCHANNELS, channel, "You have joined too many channels")
            return
        self._joining.add(channel)
        d = self.factory.directory.channel(self.user.id, slug, True)
        d.addCallback(self._join_checked, channel)
        d.addErrback(self._join_failed, channel)

    def _join_checked(self, found, channel: str):
        if self.closed:
            self._joining.discard(channel)
            return None
        if found.refusal is not None:
            self._joining.discard(channel)
            why = {
                "403": "No such channel",
                "473": "Cannot join channel (+i): a private room",
                "474": "Cannot join channel (+b): you are banned",
            }[found.refusal]
            self.numeric(found.refusal, channel, why)
            return None
        d = self.factory.hub.room(found.room)
        d.addCallback(self._joined, channel, found)
        return d

    def _joined(self, room, channel: str, found) -> None:
        self._joining.discard(channel)
        if self.closed or channel in self.feeds:
            return
        feed = RoomFeed(self, found.room)
        self.feeds[channel] = feed
        self.send_line("JOIN", [channel], prefix=mask(self.nick))
        if found.topic:
            self.numeric(irc.RPL_TOPIC, channel, found.topic)
        else:
            self.numeric(irc.RPL_NOTOPIC, channel, "No topic is set")
        self.history(feed, found.history)
        self.attach(feed, room, found.last_seq)

    def _join_failed(self, failure, channel: str) -> None:
        self._joining.discard(channel)
        if failure.check(KeyError):
            self.numeric(irc.ERR_NOSUCHCHANNEL, channel, "No such channel")
            return
        logger.warning("IRC JOIN %s failed: %s", channel, failure.getErrorMessage())
        self.send_line("NOTICE", [self.nick, f"Cannot join {channel} now; retry later"])

    def history(self, feed: RoomFeed, events) -> None:
        if not events:
            return
        batch = None
        if "batch" in self.caps:
            self._batches += 1
            batch = f"h{self._batches}"
            self.send_line("BATCH", [f"+{batch}", "chathistory", feed.channel])
        for event in events:
            feed.message(event, batch=batch, replay=True)
        if batch:
            self.send_line("BATCH", [f"-{batch}"])

    def irc_PART(self, prefix, params) -> None:
        if not self.need("PART", params, 1):
            return
        for channel in params[0].split(","):
            feed = self.feeds.pop(channel, None)
            if feed is None:
                self.numeric(irc.ERR_NOTONCHANNEL, channel, "You're not on that channel")
                continue
            self.detach(feed)
            reason = params[1] if len(params) > 1 else "left"
            self.send_line("PART", [channel, reason], prefix=mask(self.nick))

    # -- questions -------------------------------------------------------------------------

    def irc_NAMES(self, prefix, params) -> None:
        for channel in params[0].split(",") if params else list(self.feeds):
            feed = self.feeds.get(channel)
            if feed is not None:
                self.names(feed)
            else:
                self.numeric(irc.RPL_ENDOFNAMES, channel, "End of /NAMES list")

    def irc_WHO(self, prefix, params) -> None:
        target = params[0] if params else "*"
        feed = self.feeds.get(target)
        for name in feed.names() if feed is not None else ():
            self.numeric(
                irc.RPL_WHOREPLY, target, name, "parley", "parley", name, "H", f"0 {name}"
            )
        self.numeric(irc.RPL_ENDOFWHO, target, "End of /WHO list")

    def irc_TOPIC(self, prefix, params) -> None:
        if not self.need("TOPIC", params, 1):
            return
        channel = params[0]
        if len(params) > 1:
            self.numeric(
                irc.ERR_CHANOPRIVSNEEDED,
                channel,
                "The topic is the room's description, set on the web",
            )
            return
        d = self.factory.directory.channel(self.user.id, channel.lstrip("#"), False)

        def answer(found) -> None:
            if found.refusal is not None:
                self.numeric(irc.ERR_NOSUCHCHANNEL, channel, "No such channel")
            elif found.topic:
                self.numeric(irc.RPL_TOPIC, channel, found.topic)
            else:
                self.numeric(irc.RPL_NOTOPIC, channel, "No topic is set")

        d.addCallbacks(
            answer, lambda f: self.numeric(irc.ERR_NOSUCHCHANNEL, channel, "Unavailable")
        )

    def irc_LIST(self, prefix, params) -> None:
        d = self.factory.directory.rooms(self.user.id)

        def answer(rooms) -> None:
            self.numeric(irc.RPL_LISTSTART, "Channel", "Users  Name")
            for slug, members, description in rooms:
                self.numeric(irc.RPL_LIST, f"#{slug}", str(members), description or "")
            self.numeric(irc.RPL_LISTEND, "End of /LIST")

        d.addCallbacks(
            answer, lambda f: self.numeric(irc.RPL_LISTEND, "End of /LIST (unavailable)")
        )

    def irc_MODE(self, prefix, params) -> None:
        # Clients ask for their own and channels' modes after joining; Parley has none.
        if params and params[0].startswith("#"):
            self.numeric(irc.RPL_CHANNELMODEIS, params[0], "+nt")
        elif params:
            self.numeric(irc.RPL_UMODEIS, "+i")

    def irc_USERHOST(self, prefix, params) -> None:
        self.numeric(irc.RPL_USERHOST, " ".join(f"{p}=+{p}@parley" for p in params[:5]))

    # -- messages ---------------------------------------------------------------------------

    def irc_PRIVMSG(self, prefix, params) -> None:
        self.message("PRIVMSG", params)

    def irc_NOTICE(self, prefix, params) -> None:
        self.message("NOTICE", params)

    def irc_TAGMSG(self, prefix, params) -> None:
        pass  # typing notifications and reactions of other clients: nothing to store

    def message(self, command: str, params: list[str]) -> None:
        if len(params) < 1 or not params[0]:
            self.numeric(irc.ERR_NORECIPIENT, f"No recipient given ({command})")
            return
        if len(params) < 2 or not params[1]:
            self.numeric(irc.ERR_NOTEXTTOSEND, "No text to send")
            return
        target, text = params[0], params[1]
        if text.startswith("\x01ACTION ") and text.endswith("\x01"):
            text = f"_{text[8:-1]}_"  # PROTOCOL.md: /me is sent as _text_
        elif text.startswith("\x01"):
            return  # other CTCP (VERSION, PING): not chat
        client_id, _label = self.new_client_id()
        if target.startswith("#"):
            feed = self.feeds.get(target)
            if feed is None:
                self.numeric(
                    irc.ERR_CANNOTSENDTOCHAN, target, "Cannot send to channel (join it first)"
                )
                return
            self.submit(feed.slug, target, text, client_id)
        else:
            self.direct_message(target, text, client_id)

    def submit(self, slug: str, target: str, text: str, client_id: str) -> None:
        frame = {"type": "send", "body": text, "client_id": client_id}
        d = self.factory.hub.submit(slug, self.user, frame)

        def answered(result) -> None:
            if result.error is None or self.closed:
                return
            detail = result.detail or ErrorCode(result.error).detail
            if result.retry_after is not None:
                detail = f"{detail} (retry in {result.retry_after:.0f} s)"
            self.numeric(irc.ERR_CANNOTSENDTOCHAN, target, f"Not sent: {result.error}: {detail}")

        def failed(failure) -> None:
            logger.warning("IRC send failed: %s", failure.getErrorMessage())
            self.numeric(irc.ERR_CANNOTSENDTOCHAN, target, "Not sent: unavailable")

        d.addCallbacks(answered, failed)

    # -- direct messages ------------------------------------------------------------------------

    def direct_message(self, nick: str, text: str, client_id: str) -> None:
        slug = self.peers.get(nick.lower())
        if slug is not None and slug in self.direct:
            self.submit(slug, nick, text, client_id)
            return
        d = self.factory.directory.direct_room(self.user.id, nick)

        def found(answer) -> None:
            if self.closed:
                return
            if answer is None:
                self.numeric(irc.ERR_NOSUCHNICK, nick, "No such nick")
                return
            info, peer = answer
            self.follow_direct(info, peer).addCallback(
                lambda _: self.submit(info.slug, nick, text, client_id)
            )

        d.addCallbacks(
            found, lambda f: self.numeric(irc.ERR_NOSUCHNICK, nick, "Unavailable; retry")
        )

    def follow_direct(self, info, peer: str, since: int | None = None):
        """Subscribe to a direct room from ``since`` (None: its last seq, live only: the
        history of a conversation held before this login stays on the web)."""
        from twisted.internet import defer

        self.peers[peer.lower()] = info.slug
        if info.slug in self.direct:
            return defer.succeed(None)
        feed = self.direct[info.slug] = RoomFeed(self, info, peer=peer)

        def loaded(room) -> None:
            if self.closed or self.direct.get(info.slug) is not feed:
                return
            self.attach(feed, room, info.last_seq if since is None else since)

        def failed(failure) -> None:
            self.direct.pop(info.slug, None)

        return self.factory.hub.room(info).addCallbacks(loaded, failed)

    def follow_direct_rooms(self) -> None:
        """Follow the user's direct rooms not followed yet: at login, every DIRECT_REFRESH,
        and at once when one of them changes (service.py ``access_changed``)."""
        if self.closed:
            return
        if self._direct_timer is not None and self._direct_timer.active():
            self._direct_timer.cancel()  # one timer at a time, from this read on
        d = self.factory.directory.direct_rooms(self.user.id)

        def found(rooms) -> None:
            # A direct room found after the login's list is one opened since (by the other
            # user, say): all of it is new to this connection, its first message included,
            # however long after it was written the room was found.
            since = 0 if self._directs_read else None
            self._directs_read = True
            for info, peer in rooms:
                if info.slug not in self.direct:
                    self.follow_direct(info, peer, since)

        d.addCallbacks(
            found, lambda f: logger.warning("IRC direct rooms: %s", f.getErrorMessage())
        )
        self._direct_timer = self.clock.callLater(DIRECT_REFRESH, self.follow_direct_rooms)
