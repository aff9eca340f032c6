"""What no notice reported, found for the inbox streams (PROTOCOL.md "Losing access",
DESIGN.md "Losing access": the room check).

Notices (chat/live/publish.py ``AccessChange``, ``ReadNotice``) keep the inbox current
as things happen. Some changes send none: an account deactivated with
``QuerySet.update()``, a membership removed with raw SQL, anything done by a process
without a reactor (``manage.py shell``); and while the bus is away, the notices of the
other processes are lost. So:

- ``check`` (the room check, every CHAT_ROOM_CHECK_SECONDS, as ``AccessWatch.check_all``
  for room connections): ONE store call for every inbox stream of the process, whatever
  their number: whom each stream's session signs in now (a session that signs in nobody,
  or someone else, ends its streams: WebSocket 4403, SSE ended, a held poll 403, a poll
  session dropped), and which rooms each connected user is a member of now (a user whose
  set differs from what their inbox holds has their rooms read again, and gets a
  ``rooms`` frame). The member rooms themselves (names, counts) are not re-read on every
  check: that is a counts statement per user, where a set of slugs is one query for all.
- ``bus_reconnected``: read notices may have been lost, so every position of the process
  is recounted (FollowedRoom's recount, which keeps the room's events meanwhile and
  applies those after its snapshot; the recounts of one reactor turn are ONE statement,
  ``InboxHub.recount``), and a position whose counts changed gets a ``read`` frame with
  its counts now. Then the check above (access notices may have been lost too).
- ``accounts_changed``: a notice of account changes (deactivated, password changed):
  the sessions of those users' streams are checked with the same read.

A stream ended by a check is news for the rest of the process too: its user's answers
cached by the Authorizer are stale and their room connections are re-checked (the room
check alone does not re-check sessions), as an account change would be.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from chat.live.inbox_reads import StreamCheck, check_streams
from chat.live.inbox_state import InboxStream, Position, UserInbox
from chat.live.parts import in_part
from chat.live.publish import AccessChange

if TYPE_CHECKING:
    from chat.live.inbox import InboxHub

logger = logging.getLogger(__name__)

# A re-check of sessions asked by a notice, that the database could not answer, is asked
# again after this long; the streams stay open meanwhile (as connections do while the
# database is down). The room check needs no retry: it runs again in 5 s.
RETRY = 1.0


class InboxChecks:
    """The checks of one process's inbox. ``check(sessions, user_ids)`` runs on a store
    thread and answers a ``StreamCheck`` (default: chat/live/inbox_reads.py)."""

    def __init__(self, inbox: InboxHub, check=None) -> None:
        self.inbox = inbox
        self._check = check or check_streams
        self._checking = False
        self._keep_due = True

    @property
    def checking(self) -> bool:
        """A check is being answered (the next one waits for it)."""
        return self._checking

    def check(self, part: int = 0, parts: int = 1) -> None:
        """Sessions and room sets of every inbox stream of the users of ``part`` here
        (one store call)."""
        if self._checking:
            return  # the last one is still being answered (a slow database): not two
        if part == 0:
            self._keep_due = True  # a round begins
        inbox = self.inbox
        users = [u for u in inbox.users.values() if in_part(u.user.id, part, parts)]
        streams = [(user, s) for user in users for s in user.streams]
        if not streams:
            return
        # Users whose rooms are being read (loading, refreshing) are left to that read.
        reads = {user.user.id: user.reads for user in users if user.loaded and not user.refreshing}
        self._checking = True
        # Once a round (the round's first part with streams), every key still in use: the
        # memo of chat/sessions.py forgets the others.
        keep = None
        if self._keep_due:
            self._keep_due = False
            keep = _keys([(user, s) for user in inbox.users.values() for s in user.streams])
        d = inbox.store.run(self._check, _keys(streams), sorted(reads), keep)

        def checked(answer: StreamCheck) -> None:
            lost = self._end_lost(streams, answer.sessions)
            if lost:
                # Found with no notice: the hub's Authorizer may still hold answers for
                # these users, and their room connections may be open on the same
                # sessions (the room check does not re-check sessions). Told to this
                # process's hub only: every process runs its own check.
                inbox.hub.access_changed(AccessChange.accounts_changed(tuple(sorted(lost))))
            self._compare_rooms(reads, answer.rooms)

        def done(result):
            self._checking = False
            return result

        d.addBoth(done).addCallbacks(
            checked, lambda f: logger.warning("inbox check failed: %s", f.getErrorMessage())
        )
        d.addErrback(lambda f: logger.error("inbox check: %s", f.getTraceback()))

    def accounts_changed(self, user_ids: list[int]) -> None:
        """Those users' accounts changed (a notice): do their streams still sign them in?"""
        inbox = self.inbox
        users = [inbox.users[u] for u in user_ids if u in inbox.users]
        streams = [(user, s) for user in users for s in user.streams]
        if not streams:
            return

        def failed(failure) -> None:
            logger.warning("inbox session re-check failed, retrying: %s", failure.value)
            inbox.reactor.callLater(
                RETRY, self.accounts_changed, [u for u in user_ids if u in inbox.users]
            )

        d = inbox.store.run(self._check, _keys(streams), [])
        d.addCallbacks(lambda answer: self._end_lost(streams, answer.sessions), failed)
        d.addErrback(lambda f: logger.error("inbox session re-check: %s", f.getTraceback()))

    def bus_reconnected(self) -> None:
        """Recount every position here (a changed one gets a ``read`` frame), then check."""
        for followed in list(self.inbox.followed.values()):
            for position in list(followed.positions.values()):
                # One already being recounted reads the database too, and owes its frame.
                if not position.recounting:
                    followed.recount(position, _sent_if_changed(position))
        self.check()

    def _end_lost(
        self, streams: list[tuple[UserInbox, InboxStream]], sessions: dict[str, int | None]
    ) -> set[int]:
        """End the streams whose session no longer signs in their user; their users."""
        lost: set[int] = set()
        for user, stream in streams:
            if stream not in user.streams:
                continue  # closed meanwhile
            key = stream.session_key
            if key is None or sessions.get(key) != stream.user.id:
                lost.add(stream.user.id)
                stream.drop("revoked")
        if lost:
            logger.info("inbox: %d user(s) no longer signed in; their streams ended", len(lost))
        return lost

    def _compare_rooms(self, reads: dict[int, int], rooms: dict[int, frozenset[str]]) -> None:
        inbox = self.inbox
        for user_id, started in reads.items():
            user = inbox.users.get(user_id)
            if user is None or user.reads != started or user.refreshing or not user.loaded:
                continue  # gone, or its rooms were read since: that read is newer
            if rooms.get(user_id, frozenset()) != frozenset(user.positions):
                inbox.refresh(user)  # sends `rooms` if what it reads differs


def _keys(streams: list[tuple[UserInbox, InboxStream]]) -> list[str]:
    return sorted({s.session_key for _u, s in streams if s.session_key is not None})


def _sent_if_changed(position: Position):
    before = (position.read_seq, position.unread, position.mentions)

    def after(recounted: Position) -> None:
        if (recounted.read_seq, recounted.unread, recounted.mentions) != before:
            recounted.read_frame()

    return after
