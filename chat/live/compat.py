"""Every private API of a dependency that Parley relies on, each behind one small name here.

Some things Parley needs have no public API in Twisted, Django or whitenoise. Each is
reached only through this module, with a comment on why the private name is needed, and
each has a canary in tests/unit/test_compat.py, so that an upgrade that removes or changes
one fails one clear test naming the dependency and the name instead of breaking a running
server in some corner.

Nothing private is touched at import: a name that is gone resolves to a stand-in that
raises ``CompatError`` (dependency, version, name) when it is used, so the rest of the
server still imports and the failure says what to fix.

Replaced by public APIs, and no longer used:

- the TCP transport's write buffer (``dataBuffer``, ``offset``, ``_tempDataLen``), read
  after every write for the 1 MiB slow-consumer bound: each live connection is now an
  ``IPushProducer`` of its transport and counts what it writes while paused
  (chat/live/transport.py). Measured not slower: bench/micro_write_path.py.
- ``Request._disconnected``: ``Request.notifyFinish()`` (chat/live/transport.py).
- prometheus_client's ``REGISTRY._collector_to_names``, walked to find an earlier pool
  collector of the same name: the collectors Parley registers are remembered by name
  where they are registered.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from typing import Any


class CompatError(RuntimeError):
    """A private name Parley relies on is gone or changed in the installed dependency."""


def dependency_version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "(not installed)"


def broken(distribution: str, name: str, problem: str) -> CompatError:
    """The error of a private name that no longer works, naming all a reader needs."""
    return CompatError(
        f"{distribution} {dependency_version(distribution)}: {name} {problem}; "
        "Parley relies on it (see chat/live/compat.py and tests/unit/test_compat.py)"
    )


def _private(distribution: str, module: str, name: str, *, is_class: bool = False) -> Any:
    """``module.name``, or a stand-in that raises CompatError when it is used."""
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as error:
        failure = broken(distribution, f"{module}.{name}", f"is gone ({error})")
    if is_class:

        def refuse(self, *args, **kwargs):
            raise failure

        return type(f"Missing_{name}", (), {"__init__": refuse, "compat_error": failure})

    def missing(*args, **kwargs):
        raise failure

    missing.compat_error = failure
    return missing


# --- Twisted: the WebSocket wire protocol (twisted.web._websocket_impl) -------------------
#
# twisted.web.websocket's public WebSocketResource runs the handshake itself: it parses the
# request again with h11 (two fifths of the CPU of a connect), and its render_GET asserts
# that a protocol is built, so a refusal (Origin, unknown room, no access, too many
# connections) cannot be answered as plain HTTP through it. Parley checks first, writes
# the 101 itself and then needs the wire protocol the resource would have built. It also
# counts an incoming message's bytes as wsproto parses them (the 1009 limit), which needs
# the wire protocol's wsproto connection and its event dispatch.

WireProtocol: type = _private(
    "twisted", "twisted.web._websocket_impl", "_WebSocketWireProtocol", is_class=True
)
# One call per incoming WebSocket event; the function itself, not a wrapper around it.
dispatch_event = _private("twisted", "twisted.web._websocket_impl", "_handleEvent")
_server_bootstrap = _private("twisted", "twisted.web._websocket_impl", "serverBootstrap")


def server_wire(cls: type, connection: Any, protocol: Any) -> Any:
    """A server-side wire protocol (``cls``, a WireProtocol) over a wsproto ``connection``
    whose handshake is done, delivering to ``protocol`` (a WebSocketProtocol)."""
    return cls(connection, _server_bootstrap, protocol)


def wire_connection(wire: Any) -> Any:
    """The wsproto connection of a wire protocol (its ``_wsconn``): fed the bytes that
    arrive, and asked for the close frame Parley sends."""
    try:
        return wire._wsconn
    except AttributeError:
        raise broken(
            "twisted", "twisted.web._websocket_impl._WebSocketWireProtocol._wsconn", "is gone"
        ) from None


def upgrade_channel(request: Any, wire: Any) -> None:
    """Hand the request's connection to ``wire``: Twisted's own WebSocketResource does it
    with ``HTTPChannel._protocolUpgradeForWebsockets``, which Twisted keeps private."""
    try:
        upgrade = request.channel._protocolUpgradeForWebsockets
    except AttributeError:
        raise broken(
            "twisted", "twisted.web.http.HTTPChannel._protocolUpgradeForWebsockets", "is gone"
        ) from None
    upgrade(wire)


# --- Twisted: a frame sent at once when nothing waits to be sent (chat/live/websocket.py) --
#
# FileDescriptor.write never sends: it buffers, registers the socket with epoll for
# writing, and the reactor's next turn sends and unregisters it, two epoll_ctl calls per
# frame. With 16,800 sockets in the many-room scenario those calls were 30% of the
# reactor's py-spy samples (EPollReactor._add 26.4%, _remove 3.7%;
# bench/scenario.py --users 8000 --rooms 800 --rate 20 --profile, 2026-12-07). When the
# transport holds nothing unsent, the frame goes out now through the transport's own
# writeSomeData (what its doWrite calls), and only what the kernel did not take is
# buffered, behind which later writes queue as before: the order is the same. Knowing
# that nothing is buffered needs the buffer's state, which Twisted keeps private.
# Measured (--users 4000 --rooms 400 --rate 30, alternated): 117 and 126 us of server CPU
# per delivered event against 149 us buffered; delivery p50 6.8 and 9.1 ms against 15.5.
_tcp_connection = _private("twisted", "twisted.internet.tcp", "Connection", is_class=True)


# Inside ``coalescing()`` frames are buffered as Twisted does, so that the frames one
# socket gets in one reactor turn leave in one send(): sending each at once costs a
# system call per frame, which on a burst (a commit batch of 20 sends, a replay) is more
# than the two epoll calls it saves (bench/quick_guard.py, one room, 500 receivers: 8.3
# us per delivery sending each at once, 5.5 us buffered).
_coalescing = 0


@contextlib.contextmanager
def coalescing() -> Iterator[None]:
    """Writes made inside go through the transport's buffer (one send per socket)."""
    global _coalescing
    _coalescing += 1
    try:
        yield
    finally:
        _coalescing -= 1


def send_now(transport: Any, data: bytes) -> None:
    """``transport.write(data)``, sent at once when the transport (plain TCP, no TLS)
    has nothing buffered; any other transport, or state, is left to ``write``."""
    if _coalescing:
        return transport.write(data)
    if isinstance(transport, _tcp_connection):
        try:
            idle = (
                transport.connected
                and not transport.disconnecting
                and not transport._writeDisconnected
                and not transport.TLS
                and not transport._tempDataLen
                and transport.offset == len(transport.dataBuffer)
            )
        except AttributeError:
            raise broken(
                "twisted", "twisted.internet.tcp.Connection's write buffer", "has changed"
            ) from None
        if idle:
            sent = transport.writeSomeData(data)
            if not isinstance(sent, int):
                # Lost: write() buffers it, and the reactor's next doWrite finds the loss
                # and ends the connection as it always does.
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
    transport.write(data)


# --- Twisted: HTTPChannel's refusal hook and ThreadPool's internals (project/) ------------
#
# project/http.py answers Twisted's own refusals (a malformed chunk, say) with the same
# whole response as its own, which means overriding the private hook Twisted calls for them.
HTTP_CHANNEL_BAD_REQUEST_HOOK = "_respondToBadRequestAndDisconnect"


def thread_pool_backlog(pool: Any) -> int:
    """Jobs a Twisted ThreadPool has not handed to a thread yet (the /healthz and /metrics
    "queued" figure). ThreadPool has no public count; ``_queue`` is what it keeps "for
    legacy compatibility", an object with only ``qsize()``."""
    try:
        return pool._queue.qsize()
    except AttributeError:
        raise broken("twisted", "twisted.python.threadpool.ThreadPool._queue", "is gone") from None


def thread_pool_quit(pool: Any) -> None:
    """Tell a ThreadPool's idle threads to quit without joining the busy ones.

    ``ThreadPool.stop()`` joins every thread with no timeout, so a view stuck past the
    shutdown grace would hang the process for good (project/server.py, WSGIThreadPool);
    the only other way to stop it is its private ``_team``.
    """
    try:
        team = pool._team
    except AttributeError:
        raise broken("twisted", "twisted.python.threadpool.ThreadPool._team", "is gone") from None
    team.quit()


# --- Django: the CSRF token check of the long-poll POST (chat/live/auth.py) ---------------
#
# The long-poll POST is answered by Twisted, not by a Django view, so Django's middleware
# never sees it; its rule (the X-CSRFToken header matches the csrftoken cookie, masked or
# not) is only available as these private helpers of django.middleware.csrf.

CsrfTokenFormatError: type = _private(
    "django", "django.middleware.csrf", "InvalidTokenFormat", is_class=True
)
_check_token_format = _private("django", "django.middleware.csrf", "_check_token_format")
_does_token_match = _private("django", "django.middleware.csrf", "_does_token_match")


def csrf_check_format(token: str) -> None:
    """Raise CsrfTokenFormatError when ``token`` is no CSRF secret or masked token."""
    _check_token_format(token)


def csrf_token_matches(request_token: str, secret: str) -> bool:
    """Whether ``request_token`` (a secret or a masked token) is for ``secret``."""
    return _does_token_match(request_token, secret)


# --- whitenoise: the file table and responders project/static.py builds on ---------------
#
# whitenoise documents its middleware and WSGI wrapper, not the pieces under them; Parley
# serves static files from Twisted without blocking the reactor, with a stricter file
# policy and corrected validators, by subclassing its file table (WhiteNoise,
# WhiteNoiseMiddleware: add_file_to_dictionary, get_static_file, update_files_dictionary,
# add_mime_headers, add_cache_headers, files) and its responders (StaticFile and its
# alternatives, etag, last_modified, byte-range helpers; Response, SlicedFile, and the
# precomputed NOT_ALLOWED_RESPONSE and NOT_MODIFIED_HEADERS). Imported on first use, so
# that the live side does not load whitenoise.

_WHITENOISE = {
    "WhiteNoise": "whitenoise.base",
    "WhiteNoiseMiddleware": "whitenoise.middleware",
    "StaticFile": "whitenoise.responders",
    "Response": "whitenoise.responders",
    "SlicedFile": "whitenoise.responders",
    "NOT_ALLOWED_RESPONSE": "whitenoise.responders",
    "NOT_MODIFIED_HEADERS": "whitenoise.responders",
    "ensure_leading_trailing_slash": "whitenoise.string_utils",
}


def whitenoise_part(name: str) -> Any:
    """One of the whitenoise internals above, or CompatError naming it when it is gone."""
    module = _WHITENOISE[name]
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as error:
        raise broken("whitenoise", f"{module}.{name}", f"is gone ({error})") from None


def __getattr__(name: str) -> Any:
    # ``from chat.live.compat import StaticFile``: whitenoise is imported only then.
    if name in _WHITENOISE:
        return whitenoise_part(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
