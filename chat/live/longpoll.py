"""Long-poll transport: ``/poll/rooms/<slug>/``.

``GET ?since=&timeout=`` is held until the hub has an event for it or the timeout passes
(the open path is chat/live/transport.py's; a client that goes away cancels its wait).
``POST`` is the write of the SSE and long-poll clients: Django's CSRF check, then any
client frame of the WebSocket's (a body without ``type`` is a send): writes go to the hub
and are answered after the commit, ``read`` and ``typing`` with a 204.
"""

from __future__ import annotations

import logging

from django.conf import settings
from twisted.internet import defer
from twisted.web.server import NOT_DONE_YET, Request

from chat.live.auth import csrf_token_valid
from chat.live.events import longpoll_body
from chat.live.records import ErrorCode, UserInfo
from chat.live.room import AccessRevoked
from chat.live.store import StoreUnavailable
from chat.live.transport import (
    LiveConnection,
    Refusal,
    RoomResource,
    notice_departure,
    refuse_bad_token,
)
from chat.live.web import header, session_key, write_error, write_json
from chat.live.wire import FrameError, parse_frame
from chat.tokens import bearer_secret

logger = logging.getLogger(__name__)

# PROTOCOL.md: 25 s by default, well under the 60 s after which proxies and browsers
# commonly give up on a quiet response; 60 s at most for the same reason.
DEFAULT_TIMEOUT = 25
MAX_TIMEOUT = 60


class HeldPoll(LiveConnection):
    """One long-poll GET: a wait in the room, counted as a live connection while held.

    Not a room subscriber (the room holds a waiter for it), but it has what revocation
    needs: ``user``, ``session_key`` and ``drop("revoked")``, answered 403.
    """

    transport_name = "longpoll"

    def parse(self) -> None:
        super().parse()
        timeout = self.query("timeout")
        self.timeout = DEFAULT_TIMEOUT if timeout is None else min(timeout, MAX_TIMEOUT)

    async def serve(self) -> None:
        hub = self.live.hub
        wait = hub.poll(self.room, self.since, self.timeout, self.user, self.session_key)
        try:
            answer = await self.wait(wait)
        except AccessRevoked:  # the user lost access while it waited (PROTOCOL.md)
            raise Refusal(ErrorCode.FORBIDDEN) from None
        write_json(self.request, 200, longpoll_body(answer.events, answer.last_seq))


class LongPollResource(RoomResource):
    connection = HeldPoll
    methods = (b"GET", b"POST")

    def render_POST(self, request: Request):
        defer.Deferred.fromCoroutine(self._send(request)).addErrback(
            lambda failure: logger.error("long-poll send: %s", failure.getTraceback())
        )
        return NOT_DONE_YET

    async def _send(self, request: Request) -> None:
        gone: list[bool] = []
        notice_departure(request, lambda: gone.append(True))
        try:
            slug = self.check(request)
            frame = read_frame(request)
            credential = session_key(request)
            access = await self.live.authorizer.access(credential, slug)
            refuse_bad_token(credential, access)
            if access.room is None:
                raise Refusal(ErrorCode.NOT_FOUND)
            if not access.can_read:
                raise Refusal(ErrorCode.FORBIDDEN)
            kind = frame.get("type", "send")
            if kind == "read":
                answer = await self.live.reads.read(slug, access.user, frame.get("seq"))
                if answer.error is not None:
                    raise Refusal(answer.error, answer.detail)
                result = None
            elif kind == "typing":
                if access.user is None:
                    raise Refusal(ErrorCode.FORBIDDEN)
                try:
                    room = await self.live.hub.room(access.room)
                except KeyError:  # deleted while it loaded
                    raise Refusal(ErrorCode.NOT_FOUND) from None
                self.live.hub.typing(room, PollSender(access.user))
                result = None
            else:
                # The fields go to the hub as they came: it validates them, for every
                # transport (an unknown type included).
                result = await self.live.hub.submit(slug, access.user, frame)
        except Refusal as refusal:
            if not gone:
                refusal.answer(request)
            return
        except StoreUnavailable as error:
            logger.warning("long-poll write in %s: unavailable (%s)", request.path, error)
            if not gone:
                write_error(request, ErrorCode.UNAVAILABLE)
            return
        except Exception:
            logger.exception("long-poll write failed")
            if not gone:
                write_error(request, ErrorCode.UNAVAILABLE)
            return
        if gone:
            return  # committed all the same; the client resends its client_id to learn the seq
        if result is None:  # read, typing: PROTOCOL.md answers 204
            request.setResponseCode(204)
            request.finish()
        elif result.error is not None:
            extra = {} if result.retry_after is None else {"retry_after": result.retry_after}
            write_error(request, result.error, result.detail, **extra)
        else:
            write_json(request, 201 if result.created else 200, {"seq": result.seq})


class PollSender:
    """Who sent a long-poll ``typing``: the room's typing needs only the user (and leaves
    out no connection of theirs: a long-poll client holds none between its polls)."""

    transport_name = "longpoll"

    def __init__(self, user: UserInfo) -> None:
        self.user = user


def read_frame(request: Request) -> dict:
    """The client frame of a POST (its JSON body), after its CSRF check; Refusal otherwise.

    A token request needs no CSRF token (a cross-site page cannot set Authorization);
    whether the token is good is the Authorizer's question, answered 401 after this."""
    cookie = request.getCookie(settings.CSRF_COOKIE_NAME.encode())
    if bearer_secret(header(request, b"authorization")) is None and not csrf_token_valid(
        cookie.decode("latin-1") if cookie else None, header(request, b"x-csrftoken")
    ):
        raise Refusal(ErrorCode.FORBIDDEN, "CSRF token missing or incorrect.")
    limit = settings.CHAT_MAX_FRAME_BYTES
    raw = request.content.read(limit + 1) if request.content is not None else b""
    if len(raw) > limit:
        raise Refusal(ErrorCode.TOO_LARGE, "The request body is too large.")
    try:
        return parse_frame(raw)
    except FrameError as error:
        raise Refusal(ErrorCode.BAD_REQUEST, str(error)) from None
