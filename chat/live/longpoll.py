"""Long-poll transport: ``/poll/rooms/<slug>/``.

``GET ?since=&timeout=`` is held (NOT_DONE_YET) until the hub has an event for it or the
timeout passes; a client that goes away cancels its wait. ``POST`` is the send of the SSE
and long-poll clients: Django's CSRF check, then the hub, answered after the commit.
"""

from __future__ import annotations

import logging

from django.conf import settings
from twisted.internet import defer
from twisted.web.server import NOT_DONE_YET, Request

from chat.live.auth import csrf_token_valid
from chat.live.records import ErrorCode, error_body
from chat.live.web import RoomResource, header, write_error, write_json
from chat.live.wire import FrameError, parse_frame

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 25
MAX_TIMEOUT = 60


class LongPollResource(RoomResource):
    def render_GET(self, request: Request):
        prepared = self.prepare(request, "since", "timeout")
        if prepared is None:
            return NOT_DONE_YET
        slug, (since, timeout) = prepared
        timeout = DEFAULT_TIMEOUT if timeout is None else min(timeout, MAX_TIMEOUT)
        waiting: list[defer.Deferred] = []

        def gone(_failure) -> None:
            for d in waiting:
                d.cancel()

        request.notifyFinish().addErrback(gone)

        def authorized(access):
            refusal = self.refusal(access)
            if refusal is not None:
                return write_error(request, refusal)
            return self.live.hub.room(access.room).addCallback(wait, access)

        def wait(room, access):
            if request._disconnected:
                return None
            d = self.live.hub.poll(room, since, timeout, access.user)
            waiting.append(d)
            d.addCallback(answer)
            d.addErrback(lambda failure: failure.trap(defer.CancelledError))
            return d

        def answer(result) -> None:
            body = (
                b'{"events":['
                + b",".join(event.data for event in result.events)
                + b'],"last_seq":%d}' % result.last_seq
            )
            write_json(request, 200, body)

        d = self.access(request, slug)
        d.addCallback(authorized)
        d.addErrback(self._failed, request)
        return NOT_DONE_YET

    def render_POST(self, request: Request):
        slug, refusal = self.check(request)
        if refusal is not None:
            write_error(request, refusal)
            return NOT_DONE_YET
        cookie = request.getCookie(settings.CSRF_COOKIE_NAME.encode())
        if not csrf_token_valid(
            cookie.decode("latin-1") if cookie else None, header(request, b"x-csrftoken")
        ):
            write_error(request, ErrorCode.FORBIDDEN, "CSRF token missing or incorrect.")
            return NOT_DONE_YET
        limit = settings.CHAT_MAX_FRAME_BYTES
        raw = request.content.read(limit + 1) if request.content is not None else b""
        if len(raw) > limit:
            write_error(request, ErrorCode.TOO_LARGE, "The request body is too large.")
            return NOT_DONE_YET
        try:
            frame = parse_frame(raw)
        except FrameError as error:
            write_error(request, ErrorCode.BAD_REQUEST, str(error))
            return NOT_DONE_YET
        if frame.get("type", "send") != "send":
            write_error(request, ErrorCode.BAD_REQUEST, "Only sends are accepted here.")
            return NOT_DONE_YET
        # The fields go to the hub as they came: it validates them, for every transport.
        body, client_id = frame.get("body"), frame.get("client_id")

        def authorized(access):
            refusal = self.refusal(access)
            if refusal is not None:
                return write_error(request, refusal)
            return self.live.hub.send(slug, access.user, body, client_id).addCallback(answer)

        def answer(result) -> None:
            if result.error is not None:
                extra = {} if result.retry_after is None else {"retry_after": result.retry_after}
                payload = error_body(result.error, result.detail, **extra)
                write_json(request, ErrorCode(result.error).status, payload)
            else:
                write_json(request, 201 if result.created else 200, {"seq": result.seq})

        d = self.access(request, slug)
        d.addCallback(authorized)
        d.addErrback(self._failed, request)
        return NOT_DONE_YET

    def _failed(self, failure, request: Request) -> None:
        logger.warning("long-poll request failed: %s", failure.getErrorMessage())
        write_error(request, ErrorCode.UNAVAILABLE)
