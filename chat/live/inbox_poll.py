"""The inbox over long-poll: ``GET /poll/me/?session=<token>&timeout=<seconds>``.

A long-poll client has no connection to keep state on, so the inbox keeps a *poll
session* for it: an inbox stream (chat/live/inbox.py) whose frames wait in a queue until
the next GET takes them. Without a session token (or with one this process does not hold
for this user: expired, reset, from another process, from another user) a GET opens a new
session and is answered at once with ``{"events": [hello], "session": "<token>"}``; with
one it is answered at once if frames are queued, else held until one is or its timeout
(default 25 s, at most 60, as the room long-poll) passes: ``{"events": [...], "session"}``.
A token that is not one in form (not 22 URL-safe characters) is a 400.

Bounds, and why:

- frames queued per session: ``MAX_QUEUED``. A client that stopped polling must not make
  the server's memory grow with every message of its rooms. Past it the queue is thrown
  away and the session is reset: its next GET gets a fresh hello, which says all the
  queue would have (the inbox is counts, not a log).
- a session not polled for ``SESSION_IDLE`` (twice the longest timeout) is gone: its
  client has left (a closed tab sends nothing). Its next GET, if any, opens a new one.
- sessions per user: ``MAX_SESSIONS_PER_USER``; a new one past it ends the oldest. Ten
  tabs is more than one person polls with; a script making sessions in a loop cannot
  make the process follow its rooms ever more times.
- the held GET counts under the per-user connection cap while held, as a room long-poll.
"""

from __future__ import annotations

import re
import secrets

from twisted.internet import defer

from chat.live.inbox_web import InboxConnection, InboxResource
from chat.live.longpoll import DEFAULT_TIMEOUT, MAX_TIMEOUT
from chat.live.records import ErrorCode, UserInfo
from chat.live.transport import Refusal
from chat.live.web import write_json

MAX_QUEUED = 1000
SESSION_IDLE = 2 * MAX_TIMEOUT
MAX_SESSIONS_PER_USER = 10
_TOKEN = re.compile(rb"[A-Za-z0-9_-]{22}")


class SessionEnded(Exception):
    """The poll session was ended by the server while a GET waited on it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PollSession:
    """One long-poll client's inbox: an InboxStream whose frames wait for its next GET."""

    def __init__(self, sessions: PollSessions, user: UserInfo, session_key: str | None):
        self.sessions = sessions
        self.user = user
        self.session_key = session_key
        self.token = secrets.token_urlsafe(16)  # 22 characters, 128 random bits
        self.ready = False
        self.queue: list[bytes] = []
        self.reset = False  # overflowed: the next GET gets a fresh hello instead
        self.waiter: defer.Deferred | None = None  # the held GET's wait
        self.idle = None  # the timer that ends an unpolled session

    def hello(self, payload: bytes) -> None:
        self.queue = [payload]
        self.reset = False
        self._wake()

    def push(self, kind: bytes, payload: bytes) -> None:
        if self.reset:
            return
        if len(self.queue) >= MAX_QUEUED:
            self.queue = []
            self.reset = True
        else:
            self.queue.append(payload)
        self._wake()

    def drop(self, reason: str) -> None:
        self.sessions.end(self, reason)

    def take(self) -> list[bytes]:
        if self.reset:
            self.reset = False
            return [self.sessions.inbox.hello_payload(self.sessions.inbox.users[self.user.id])]
        taken, self.queue = self.queue, []
        return taken

    def _wake(self) -> None:
        # At the end of the reactor turn, so that the frames of one burst go in one answer.
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.called:
            self.sessions.reactor.callLater(0, _fire, waiter)


class PollSessions:
    """This process's poll sessions, by token and by user."""

    def __init__(self, reactor, inbox) -> None:
        self.reactor = reactor
        self.inbox = inbox
        self.by_token: dict[str, PollSession] = {}
        self.by_user: dict[int, list[PollSession]] = {}

    def find(self, token: str | None, user: UserInfo) -> PollSession | None:
        session = self.by_token.get(token) if token else None
        if session is None or session.user.id != user.id:
            return None  # another user's token is as good as none: nothing is revealed
        return session

    def open(self, user: UserInfo, session_key: str | None) -> PollSession:
        mine = self.by_user.setdefault(user.id, [])
        while len(mine) >= MAX_SESSIONS_PER_USER:
            self.end(mine[0], "replaced")
        session = PollSession(self, user, session_key)
        self.by_token[session.token] = session
        mine.append(session)
        self.arm(session)
        return session

    def arm(self, session: PollSession) -> None:
        """The session is not polled now: it ends if it is not polled again in time."""
        self.disarm(session)
        if self.by_token.get(session.token) is session:
            session.idle = self.reactor.callLater(SESSION_IDLE, self.end, session, "expired")

    def disarm(self, session: PollSession) -> None:
        if session.idle is not None and session.idle.active():
            session.idle.cancel()
        session.idle = None

    def end(self, session: PollSession, reason: str) -> None:
        if self.by_token.get(session.token) is not session:
            return
        del self.by_token[session.token]
        mine = self.by_user.get(session.user.id, [])
        if session in mine:
            mine.remove(session)
        if not mine:
            self.by_user.pop(session.user.id, None)
        self.disarm(session)
        self.inbox.detach(session)
        waiter, session.waiter = session.waiter, None
        if waiter is not None and not waiter.called:
            waiter.errback(SessionEnded(reason))

    def end_all(self, reason: str) -> None:
        for session in list(self.by_token.values()):
            self.end(session, reason)


class InboxPoll(InboxConnection):
    """One ``GET /poll/me/``."""

    transport_name = "longpoll"

    def parse(self) -> None:
        timeout = self.query("timeout")
        self.timeout = DEFAULT_TIMEOUT if timeout is None else min(timeout, MAX_TIMEOUT)
        raw = self.request.args.get(b"session")
        self.token: str | None = None
        if raw and raw[-1]:
            if not _TOKEN.fullmatch(raw[-1]):
                raise Refusal(ErrorCode.BAD_REQUEST, "session must be a token this server gave.")
            self.token = raw[-1].decode("ascii")

    async def serve(self) -> None:
        sessions: PollSessions = self.live.inbox_polls
        session = sessions.find(self.token, self.user)
        if session is None:
            session = sessions.open(self.user, self.session_key)
            try:
                await self.wait(self.live.inbox.attach(session))
            except BaseException:
                sessions.end(session, "failed")
                raise
            self.live.inbox.start(session)
            self.answer(session, session.take())
            return
        events = session.take()
        if not events:
            events = await self.hold(sessions, session)
        self.answer(session, events)

    async def hold(self, sessions: PollSessions, session: PollSession) -> list[bytes]:
        if session.waiter is not None and not session.waiter.called:
            session.waiter.callback(None)  # a newer GET of the session: the older one ends
        wait: defer.Deferred = defer.Deferred()
        session.waiter = wait
        sessions.disarm(session)
        timer = self.live.reactor.callLater(self.timeout, _fire, wait)
        try:
            await self.wait(wait)
        except SessionEnded as ended:
            if ended.reason == "revoked":
                raise Refusal(ErrorCode.FORBIDDEN) from None
            return []  # shutdown, replaced: answered; the client polls again
        finally:
            if timer.active():
                timer.cancel()
            if session.waiter is wait:
                session.waiter = None
            sessions.arm(session)
        return session.take()

    def answer(self, session: PollSession, events: list[bytes]) -> None:
        body = b'{"events":[%s],"session":"%s"}' % (b",".join(events), session.token.encode())
        write_json(self.request, 200, body)


def _fire(wait: defer.Deferred) -> None:
    if not wait.called:
        wait.callback(None)


class InboxPollResource(InboxResource):
    connection = InboxPoll
