"""The inbox stream's transports: ``/ws/me/``, ``/events/me/`` (and ``/poll/me/``, in
chat/live/inbox_poll.py), and the routing that puts them next to the room paths.

Each is the room transport of the same name with another open path: the session is
resolved to a user (anonymous: 403), Origin is checked as for every live transport, the
connection counts under the per-user cap (chat/live/connections.py) like the others, and
it attaches to the process's ``InboxHub`` (chat/live/inbox.py) instead of a room. The
wire format is the room stream's: WebSocket text frames (ping and close as there: 4403 is
a lost session or account), SSE chunks with ``event:`` the frame's type and no ``id:``
(the inbox is ephemeral: a reconnect gets a fresh hello, so there is nothing to resume).
"""

from __future__ import annotations

import logging

from django.conf import settings
from twisted.internet import defer
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from chat.live.auth import origin_allowed
from chat.live.events import websocket_text_frame
from chat.live.inbox import NO_ROOM
from chat.live.records import ErrorCode
from chat.live.sse import RETRY_MS, EventStream
from chat.live.store import StoreUnavailable
from chat.live.transport import LiveConnection, Refusal, RoomResource, refuse_bad_token
from chat.live.web import header, own_origin, write_error
from chat.live.websocket import ChatWebSocket

logger = logging.getLogger(__name__)

INBOX = "me"  # the path segment, and the "slug" the connections are logged under


class InboxConnection(LiveConnection):
    """The open path of an inbox connection: a signed-in user, the cap, the inbox."""

    ready = False  # had its hello (InboxStream)

    async def run(self) -> None:
        live = self.live
        try:
            access = await self.wait(live.authorizer.access(self.session_key, NO_ROOM))
            refuse_bad_token(self.session_key, access)
            if access.user is None:
                raise Refusal(ErrorCode.FORBIDDEN, "Sign in to open your inbox.")
            self.user = access.user
            if not live.open_connections.admit(self):
                raise Refusal(
                    ErrorCode.RATE_LIMITED,
                    f"Too many live connections (at most {live.open_connections.max_per_user}"
                    " per user); close one and retry.",
                )
            await self.serve()
        except Refusal as refusal:
            self.refuse(refusal)
        except defer.CancelledError:
            pass  # the client left, or the server ended the connection while it waited
        except StoreUnavailable:
            logger.warning("inbox %s: the database is unavailable", self.transport_name)
            self.fail()
        except Exception:
            logger.exception("inbox %s failed", self.transport_name)
            self.fail()
        finally:
            self.closed = True
            live.inbox.detach(self)
            live.open_connections.release(self)

    def end(self, reason: str) -> None:
        self.live.inbox.detach(self)  # nothing more is pushed to it from now on
        super().end(reason)


class InboxWebSocket(InboxConnection, ChatWebSocket):
    """``/ws/me/``: the inbox's frames; the client sends none (each is `bad_request`)."""

    async def serve(self) -> None:
        inbox = self.live.inbox
        await self.wait(inbox.attach(self))  # the rooms and counts, before the 101
        self.upgrade()
        inbox.start(self)
        await self.over

    def hello(self, payload: bytes) -> None:
        self._write_frame(websocket_text_frame(payload))

    def push(self, kind: bytes, payload: bytes) -> None:
        self._write_frame(websocket_text_frame(payload))

    def textMessageReceived(self, message: str) -> None:
        if not self.closed:
            # Answered, and counted toward the 1008 close for floods, as on a room stream.
            self.bad_frame(None, "The inbox stream takes no frames; reads go to the room.")


class InboxEventStream(InboxConnection, EventStream):
    """``/events/me/``: ``event: <type>`` and ``data:``, no ``id:``."""

    def parse(self) -> None:
        pass  # no since, no Last-Event-ID: the inbox has nothing to resume

    async def serve(self) -> None:
        inbox = self.live.inbox
        await self.wait(inbox.attach(self))
        request = self.request
        request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"x-accel-buffering", b"no")
        request.registerProducer(self, True)
        self.streaming = self._producing = True
        self._write(b"retry: %d\n\n" % RETRY_MS)
        inbox.start(self)
        await self.over

    def hello(self, payload: bytes) -> None:
        self.push(b"hello", payload)

    def push(self, kind: bytes, payload: bytes) -> None:
        self._write(b"event: " + kind + b"\ndata: " + payload + b"\n\n")


class InboxResource(RoomResource):
    """Base of the inbox resources: the method and Origin checks of the room ones."""

    def check(self, request: Request) -> str:
        trusted = getattr(settings, "CSRF_TRUSTED_ORIGINS", [])
        if not origin_allowed(header(request, b"origin"), own_origin(request), trusted):
            raise Refusal(ErrorCode.FORBIDDEN)
        return INBOX


class InboxWebSocketResource(InboxResource):
    connection = InboxWebSocket


class InboxEventStreamResource(InboxResource):
    connection = InboxEventStream


class LiveRoutes(Resource):
    """``/<transport>/rooms/<slug>/`` to the room resource, ``/<transport>/me/`` to the
    inbox's: both are leaves that read ``request.postpath`` whole, so the choice is made
    here, by its first segment, and the path is left as they expect it."""

    isLeaf = True

    def __init__(self, rooms: Resource, inbox: Resource) -> None:
        super().__init__()
        self.rooms = rooms
        self.inbox = inbox

    def render(self, request: Request):
        parts = request.postpath
        if not parts or parts[0] != INBOX.encode():
            return self.rooms.render(request)
        if parts[1:] in ([], [b""]):
            return self.inbox.render(request)
        request.setHeader(b"cache-control", b"no-store")
        write_error(request, ErrorCode.NOT_FOUND, "No such stream.")
        return NOT_DONE_YET
