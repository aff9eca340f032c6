"""Canaries: one test per private name of a dependency that Parley relies on
(chat/live/compat.py). Each exercises the name the way Parley uses it and, when an upgrade
removed or changed it, fails with one message naming the dependency, its version and the
name, so the fix starts in the right place.
"""

from __future__ import annotations

import inspect
import pathlib
import re
import threading
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
from twisted.internet.testing import StringTransport
from twisted.python.threadpool import ThreadPool
from twisted.web.http import HTTPChannel
from wsproto import ConnectionType
from wsproto.connection import Connection
from wsproto.events import CloseConnection, Ping, TextMessage

from chat.live import compat

REPO = pathlib.Path(__file__).resolve().parents[2]


@contextmanager
def canary(distribution: str, name: str):
    """Any failure inside becomes one that names the dependency and the private name."""
    try:
        yield
    except Exception as error:  # an AssertionError too: the name behaves differently
        pytest.fail(
            f"{distribution} {compat.dependency_version(distribution)} changed {name}, "
            f"which Parley relies on (chat/live/compat.py): {type(error).__name__}: {error}",
            pytrace=False,
        )


class Protocol:
    """A WebSocketProtocol that records what the wire protocol hands it."""

    def __init__(self) -> None:
        self.started = None
        self.texts: list[str] = []

    def negotiationStarted(self, transport) -> None:
        self.started = transport

    def negotiationFinished(self) -> None:
        pass

    def textMessageReceived(self, text: str) -> None:
        self.texts.append(text)

    def bytesMessageReceived(self, data: bytes) -> None:
        pass

    def pongReceived(self, payload: bytes) -> None:
        pass

    def connectionLost(self, reason) -> None:
        pass


def server_wire():
    protocol = Protocol()
    connection = Connection(ConnectionType.SERVER)
    wire = compat.server_wire(compat.WireProtocol, connection, protocol)
    transport = StringTransport()
    wire.makeConnection(transport)
    return wire, connection, protocol, transport


# -- Twisted: twisted.web._websocket_impl ---------------------------------------------


def test_twisted_websocket_wire_protocol_and_server_bootstrap():
    with canary("twisted", "twisted.web._websocket_impl._WebSocketWireProtocol, serverBootstrap"):
        wire, _connection, protocol, transport = server_wire()
        assert isinstance(wire, compat.WireProtocol)
        assert protocol.started is wire  # negotiationStarted on makeConnection
        assert transport.value() == b""  # the server bootstrap writes nothing
        wire.sendTextMessage("hi")
        client = Connection(ConnectionType.CLIENT)
        client.receive_data(transport.value())
        assert [e.data for e in client.events()] == ["hi"]


def test_twisted_websocket_wire_connection():
    with canary("twisted", "twisted.web._websocket_impl._WebSocketWireProtocol._wsconn"):
        wire, connection, _protocol, _transport = server_wire()
        assert compat.wire_connection(wire) is connection


def test_twisted_websocket_handle_event():
    with canary("twisted", "twisted.web._websocket_impl._handleEvent"):
        wire, _connection, protocol, transport = server_wire()
        compat.dispatch_event(TextMessage("whole", message_finished=True), wire)
        assert protocol.texts == ["whole"]
        compat.dispatch_event(TextMessage("half ", message_finished=False), wire)
        compat.dispatch_event(TextMessage("and half", message_finished=True), wire)
        assert protocol.texts == ["whole", "half and half"]  # fragments reassembled
        compat.dispatch_event(Ping(b"p"), wire)
        client = Connection(ConnectionType.CLIENT)
        client.receive_data(transport.value())
        assert [type(e).__name__ for e in client.events()] == ["Pong"]
        compat.dispatch_event(CloseConnection(1000), wire)
        assert transport.disconnecting  # a close from the peer is answered and closes TCP


def test_twisted_http_channel_protocol_upgrade_for_websockets():
    with canary("twisted", "twisted.web.http.HTTPChannel._protocolUpgradeForWebsockets"):
        channel = HTTPChannel()
        transport = StringTransport()
        channel.makeConnection(transport)
        protocol = Protocol()
        wire = compat.server_wire(compat.WireProtocol, Connection(ConnectionType.SERVER), protocol)
        compat.upgrade_channel(SimpleNamespace(channel=channel), wire)
        assert wire.transport is transport
        client = Connection(ConnectionType.CLIENT)
        channel.dataReceived(client.send(TextMessage("after the upgrade")))
        assert protocol.texts == ["after the upgrade"]  # the channel's bytes go to the wire


def test_twisted_http_channel_bad_request_hook():
    name = compat.HTTP_CHANNEL_BAD_REQUEST_HOOK
    with canary("twisted", f"twisted.web.http.HTTPChannel.{name}"):
        called = []

        class Channel(HTTPChannel):
            pass

        setattr(Channel, name, lambda self: called.append(True))
        channel = Channel()
        channel.makeConnection(StringTransport())
        channel.dataReceived(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
        )
        assert called  # Twisted's own refusal of a malformed chunk goes through the hook


# -- Twisted: ThreadPool ------------------------------------------------------------


def test_twisted_thread_pool_backlog():
    with canary("twisted", "twisted.python.threadpool.ThreadPool._queue"):
        pool = ThreadPool(minthreads=0, maxthreads=1)  # not started: nothing is taken
        for _ in range(3):
            pool.callInThread(lambda: None)
        assert compat.thread_pool_backlog(pool) == 3


def test_twisted_thread_pool_quit_without_joining():
    with canary("twisted", "twisted.python.threadpool.ThreadPool._team"):
        pool = ThreadPool(minthreads=1, maxthreads=2)
        pool.start()
        busy, release = threading.Event(), threading.Event()

        def stuck() -> None:
            busy.set()
            release.wait(10)

        pool.callInThread(stuck)
        assert busy.wait(5)
        compat.thread_pool_quit(pool)  # returns with a thread still busy
        assert any(t.is_alive() for t in pool.threads)
        release.set()
        for thread in pool.threads:
            thread.join(5)
        assert not any(t.is_alive() for t in pool.threads)  # and then they all quit


def _tcp_pair(send_buffer: int | None = None):
    """A Twisted TCP transport on one end of a socket pair (a MemoryReactor's, so a
    buffered write registers with it instead of running), and the other end."""
    import socket

    from twisted.internet import tcp
    from twisted.internet.testing import MemoryReactor

    ours, theirs = socket.socketpair()
    if send_buffer is not None:
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    ours.setblocking(False)
    reactor = MemoryReactor()
    transport = tcp.Connection(ours, SimpleNamespace(), reactor)
    transport.connected = True  # as Server and Client set it once the connection is made
    theirs.settimeout(5)
    return transport, reactor, theirs


def test_twisted_tcp_send_now_sends_at_once_when_nothing_is_buffered():
    with canary("twisted", "twisted.internet.tcp.Connection's write buffer and writeSomeData"):
        transport, reactor, theirs = _tcp_pair()
        compat.send_now(transport, b"frame one")
        compat.send_now(transport, b"frame two")
        assert theirs.recv(100) == b"frame oneframe two"
        assert (
            transport not in reactor.getWriters()
        )  # never registered for writing: nothing buffered


def test_twisted_tcp_send_now_buffers_what_the_kernel_did_not_take_and_keeps_the_order():
    with canary("twisted", "twisted.internet.tcp.Connection's write buffer and writeSomeData"):
        transport, reactor, theirs = _tcp_pair(send_buffer=4096)
        big = bytes(range(256)) * 4096  # 1 MiB: more than the socket takes at once
        compat.send_now(transport, big)
        compat.send_now(transport, b"after")  # queued behind the rest, not sent first
        assert transport in reactor.getWriters()
        received = bytearray()
        theirs.setblocking(False)
        while len(received) < len(big) + 5:
            try:
                received += theirs.recv(1 << 20)
            except BlockingIOError:
                transport.doWrite()  # what the reactor does once the socket is writable
        assert bytes(received) == big + b"after"


def test_inside_coalescing_frames_wait_in_the_buffer_and_later_ones_queue_behind():
    with canary("twisted", "twisted.internet.tcp.Connection's write buffer and writeSomeData"):
        transport, reactor, theirs = _tcp_pair()
        with compat.coalescing():
            compat.send_now(transport, b"one ")
            compat.send_now(transport, b"two ")
        compat.send_now(transport, b"three")  # something is buffered: it queues
        assert transport in reactor.getWriters()
        transport.doWrite()
        assert theirs.recv(100) == b"one two three"


def test_send_now_leaves_other_transports_to_their_write():
    transport = StringTransport()
    compat.send_now(transport, b"frame")
    assert transport.value() == b"frame"


# -- Django: the CSRF helpers ---------------------------------------------------------


def test_django_csrf_token_helpers():
    names = "django.middleware.csrf._check_token_format, _does_token_match, InvalidTokenFormat"
    with canary("django", names):
        from django.http import HttpRequest
        from django.middleware.csrf import get_token

        request = HttpRequest()
        masked = get_token(request)  # what a page puts in X-CSRFToken
        secret = request.META["CSRF_COOKIE"]  # what the csrftoken cookie holds
        for token in (masked, secret):
            compat.csrf_check_format(token)
        assert compat.csrf_token_matches(masked, secret)
        assert compat.csrf_token_matches(secret, secret)
        assert not compat.csrf_token_matches("b" * 32, secret)
        for bad in ("short", "!" * 32, "a" * 63):
            with pytest.raises(compat.CsrfTokenFormatError):
                compat.csrf_check_format(bad)


# -- whitenoise -----------------------------------------------------------------------

HOOKS = {
    ("WhiteNoise", "__init__"): ["self", "application", "autorefresh", "max_age"],
    ("WhiteNoise", "add_file_to_dictionary"): ["self", "url", "path", "stat_cache"],
    ("WhiteNoise", "get_static_file"): ["self", "path", "url", "stat_cache"],
    ("WhiteNoise", "update_files_dictionary"): ["self", "root", "prefix"],
    ("WhiteNoise", "add_mime_headers"): ["self", "headers", "path", "url"],
    ("WhiteNoise", "add_cache_headers"): ["self", "headers", "path", "url"],
    ("WhiteNoise", "add_files"): ["self", "root", "prefix"],
    ("WhiteNoiseMiddleware", "find_file"): ["self", "url"],
    ("StaticFile", "__init__"): ["self", "path", "headers", "encodings", "stat_cache"],
    ("StaticFile", "get_response"): ["self", "method", "request_headers"],
    ("StaticFile", "is_not_modified"): ["self", "request_headers"],
    ("StaticFile", "get_byte_range"): ["self", "range_header", "size"],
    ("StaticFile", "get_range_response"): ["self", "range_header", "base_headers", "file_handle"],
    ("StaticFile", "get_range_not_satisfiable_response"): ["file_handle", "size"],
    ("StaticFile", "get_alternatives"): ["base_headers", "files"],
    ("SlicedFile", "__init__"): ["self", "fileobj", "start", "end"],
}


@pytest.mark.parametrize(("owner", "method"), list(HOOKS), ids=lambda v: str(v))
def test_whitenoise_hooks_parley_overrides_or_calls(owner, method):
    with canary("whitenoise", f"{compat._WHITENOISE[owner]}.{owner}.{method}"):
        function = getattr(compat.whitenoise_part(owner), method)
        parameters = list(inspect.signature(function).parameters)
        missing = [p for p in HOOKS[owner, method] if p not in parameters]
        assert not missing, f"no parameter {missing} in {parameters}"


def test_whitenoise_static_file_and_responses(tmp_path):
    with canary("whitenoise", "whitenoise.responders (StaticFile, Response, constants)"):
        path = tmp_path / "app.css"
        path.write_bytes(b"body{}")
        static_file = compat.StaticFile(
            str(path), [("Content-Type", "text/css")], stat_cache={str(path): path.stat()}
        )
        assert static_file.etag and static_file.last_modified and static_file.alternatives
        response = static_file.get_response("GET", {})
        assert isinstance(response, compat.Response) and int(response.status) == 200
        response.file.close()
        assert int(compat.NOT_ALLOWED_RESPONSE.status) == 405
        assert "ETag" in compat.NOT_MODIFIED_HEADERS
        assert compat.ensure_leading_trailing_slash("static") == "/static/"


# -- the seam itself ------------------------------------------------------------------


def test_a_vanished_private_name_fails_when_used_naming_dependency_version_and_name():
    missing = compat._private("twisted", "twisted.web._websocket_impl", "_Gone")
    with pytest.raises(compat.CompatError, match=r"twisted \d.*_websocket_impl\._Gone is gone"):
        missing()
    missing_class = compat._private("django", "django.middleware.csrf", "Gone", is_class=True)
    with pytest.raises(compat.CompatError, match=r"django \d.*csrf\.Gone"):
        missing_class()
    with pytest.raises(compat.CompatError, match="wsconn"):
        compat.wire_connection(object())


# Private names now reached only through compat.py (or replaced by public APIs): none of
# them may come back anywhere else in chat/.
BEHIND_THE_SEAM = [
    "_websocket_impl",
    "_protocolUpgradeForWebsockets",
    "_wsconn",
    "_handleEvent",
    "dataBuffer",
    "_tempDataLen",
    "_disconnected",
]


def test_the_private_names_behind_the_seam_are_used_nowhere_else_in_chat():
    found = []
    for path in (REPO / "chat").rglob("*.py"):
        if path.name == "compat.py" or "migrations" in path.parts:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for name in BEHIND_THE_SEAM:
                if re.search(rf"\b{re.escape(name)}\b", line):
                    found.append(f"{path.relative_to(REPO)}:{number}: {name}")
    assert found == []
