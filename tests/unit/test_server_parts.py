"""project/server.py and project/runner.py, driven without sockets or sleeping.

A real ``ParleySite`` builds a real ``ParleyChannel`` on a ``StringTransport``; raw HTTP
bytes go in through ``dataReceived`` and the response is read back from the transport.
``WSGIResource`` runs on a synchronous "thread pool" and "reactor" (as in Twisted's own
test_wsgi.py), so a WSGI application runs inside the call that delivered the request.
Timeouts run on a ``MemoryReactorClock`` that the test advances.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import queue
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from twisted.web.wsgi import WSGIResource

from project.env import parse_networks
from project.runner import GracefulShutdown
from project.server import (
    HEAD_TIMEOUT,
    IDLE_TIMEOUT,
    DjangoFallback,
    HealthResource,
    ParleySite,
    RootResource,
    build_site,
    guard_wsgi_close,
)

REPO = Path(__file__).resolve().parents[2]
CLF = re.compile(
    r"^(?P<host>\S+) - - \[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} \+0000\] "
    r'"(?P<method>\S+) (?P<uri>\S+) (?P<proto>HTTP/1\.[01])" (?P<status>\d{3}) (?P<size>\d+|-)$'
)


# --- synchronous stand-ins for the reactor's threads and the WSGI pool -----------------


class SyncReactor(MemoryReactorClock):
    """A clock that also runs ``callFromThread`` at once (the "thread" is this one)."""

    def callFromThread(self, f, *args, **kwargs):
        f(*args, **kwargs)


class SyncPool:
    """Runs each job inside ``callInThread``; looks like a ThreadPool to health/metrics."""

    max = 3
    working: list = []

    def __init__(self) -> None:
        self._queue: queue.Queue = queue.Queue()

    def callInThread(self, f, *args, **kwargs):
        f(*args, **kwargs)


class HeldPool(SyncPool):
    """Keeps jobs until the test runs them: a request "still being rendered"."""

    def __init__(self) -> None:
        super().__init__()
        self.jobs: list = []

    def callInThread(self, f, *args, **kwargs):
        self.jobs.append((f, args, kwargs))

    def run_all(self) -> None:
        jobs, self.jobs = self.jobs, []
        for f, args, kwargs in jobs:
            f(*args, **kwargs)


class Recorder:
    """A WSGI application that records the environ (and body) of every call."""

    def __init__(self, body: bytes = b"ok") -> None:
        self.calls: list[dict] = []
        self.body = body

    def __call__(self, environ, start_response):
        environ = dict(environ)
        environ["body"] = environ["wsgi.input"].read()
        self.calls.append(environ)
        start_response(
            "200 OK",
            [("Content-Type", "text/plain"), ("Content-Length", str(len(self.body)))],
        )
        return [self.body]


class Tracked:
    """A WSGI response body that counts ``close()`` calls and may raise mid-way."""

    def __init__(self, chunks: list[bytes], fail_after: int | None = None) -> None:
        self.chunks = chunks
        self.fail_after = fail_after
        self.closes = 0

    def __iter__(self):
        for index, chunk in enumerate(self.chunks):
            if self.fail_after is not None and index == self.fail_after:
                raise RuntimeError("the response body broke")
            yield chunk
        if self.fail_after is not None and self.fail_after >= len(self.chunks):
            raise RuntimeError("the response body broke")

    def close(self) -> None:
        self.closes += 1


def app_returning(result: Tracked):
    def application(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return result

    return application


# --- driving a site over a StringTransport ----------------------------------------------


def make_site(application, reactor=None, pool=None) -> ParleySite:
    reactor = reactor or SyncReactor()
    django = DjangoFallback(reactor, pool or SyncPool(), application)
    root = RootResource(django)
    root.putChild(b"native", Leaf(b"native answer"))
    return ParleySite(root, django=django, reactor=reactor)


def connect(site: ParleySite, host: str = "127.0.0.1", port: int = 40001):
    address = IPv6Address("TCP", host, port) if ":" in host else IPv4Address("TCP", host, port)
    channel = site.buildProtocol(address)
    transport = StringTransport(
        peerAddress=address, hostAddress=IPv4Address("TCP", "127.0.0.1", 8000)
    )
    channel.makeConnection(transport)
    return channel, transport


def request_bytes(method: str, path: str, headers: list[tuple[str, str]] = (), body=b""):
    lines = [f"{method} {path} HTTP/1.1", "Host: testserver"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def status_of(output: bytes) -> int | None:
    match = re.match(rb"HTTP/1\.1 (\d{3}) ", output)
    return int(match.group(1)) if match else None


def send(site, method, path, headers=(), body=b"", host="127.0.0.1"):
    channel, transport = connect(site, host)
    channel.dataReceived(request_bytes(method, path, headers, body))
    return channel, transport


class Leaf(Resource):
    isLeaf = True

    def __init__(self, body: bytes) -> None:
        super().__init__()
        self.body = body

    def render(self, request):
        return self.body


class Pending(Resource):
    """Answers only when the test says so (a long request)."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list = []

    def render(self, request):
        self.requests.append(request)
        return NOT_DONE_YET


# --- guard_wsgi_close -------------------------------------------------------------------


def test_without_the_guard_twisted_skips_close_when_iteration_raises():
    """The trap the guard exists for (if Twisted ever fixes it, the guard can go)."""
    result = Tracked([b"first", b"second"], fail_after=1)
    reactor = SyncReactor()
    root = Resource()
    root.putChild(b"stream", WSGIResource(reactor, SyncPool(), app_returning(result)))
    site = ParleySite(root, reactor=reactor)
    _, transport = send(site, "GET", "/stream/")
    assert b"first" in transport.value()
    assert transport.disconnecting  # a started response that fails is cut off
    assert result.closes == 0


def test_guard_closes_when_iteration_raises_mid_way():
    result = Tracked([b"first", b"second"], fail_after=1)
    site = make_site(guard_wsgi_close(app_returning(result)))
    _, transport = send(site, "GET", "/stream/")
    assert b"first" in transport.value()
    assert transport.disconnecting
    assert result.closes == 1


def test_guard_closes_when_iteration_raises_before_the_first_chunk():
    result = Tracked([b"never"], fail_after=0)
    site = make_site(guard_wsgi_close(app_returning(result)))
    _, transport = send(site, "GET", "/stream/")
    assert status_of(transport.value()) == 500
    assert result.closes == 1


def test_guard_closes_exactly_once_on_normal_completion():
    result = Tracked([b"one ", b"two"])
    site = make_site(guard_wsgi_close(app_returning(result)))
    _, transport = send(site, "GET", "/stream/")
    output = transport.value()
    assert status_of(output) == 200
    assert b"one " in output and b"two" in output
    assert result.closes == 1


def test_guard_close_is_idempotent_and_tolerates_bodies_without_close():
    result = Tracked([b"x"])
    guarded = guard_wsgi_close(app_returning(result))({}, lambda *a: None)
    assert list(guarded) == [b"x"]
    guarded.close()
    guarded.close()
    assert result.closes == 1

    plain = guard_wsgi_close(lambda environ, start_response: [b"a", b"b"])({}, None)
    assert list(plain) == [b"a", b"b"]
    plain.close()  # a list has no close(): nothing to call, nothing raised


# --- DjangoFallback / RootResource: paths as Django must see them ----------------------


@pytest.mark.parametrize(
    ("uri", "path_info", "query"),
    [
        ("/", "/", ""),
        ("/rooms/lobby/", "/rooms/lobby/", ""),
        ("/rooms/lobby", "/rooms/lobby", ""),
        ("/admin/", "/admin/", ""),
        ("/admin/chat/room/add/", "/admin/chat/room/add/", ""),
        ("/api/rooms/x/messages/?before=3&limit=2", "/api/rooms/x/messages/", "before=3&limit=2"),
        ("/a%20b/c", "/a b/c", ""),
        ("/healthzz", "/healthzz", ""),
    ],
)
def test_django_sees_empty_script_name_and_the_full_path(uri, path_info, query):
    app = Recorder()
    site = make_site(app)
    _, transport = send(site, "GET", uri)
    assert status_of(transport.value()) == 200
    (environ,) = app.calls
    assert environ["SCRIPT_NAME"] == ""
    assert environ["PATH_INFO"] == path_info
    assert environ["QUERY_STRING"] == query


def test_a_wsgi_resource_as_a_plain_child_would_take_the_first_segment_as_script_name():
    """Why DjangoFallback exists: Twisted's own mapping breaks every reverse()."""
    app = Recorder()
    reactor = SyncReactor()
    root = Resource()
    root.putChild(b"rooms", WSGIResource(reactor, SyncPool(), app))
    send(ParleySite(root, reactor=reactor), "GET", "/rooms/lobby/")
    (environ,) = app.calls
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("/rooms", "/lobby/")


def test_native_children_are_not_sent_to_django():
    app = Recorder()
    site = make_site(app)
    _, transport = send(site, "GET", "/native")
    assert transport.value().endswith(b"native answer")
    assert app.calls == []


def test_django_requests_are_counted_in_flight_until_finished():
    pool = HeldPool()
    app = Recorder()
    site = make_site(app, pool=pool)
    _, transport = send(site, "GET", "/rooms/lobby/")
    assert site.in_flight == 1
    assert transport.value() == b""
    pool.run_all()
    assert status_of(transport.value()) == 200
    assert site.in_flight == 0


def test_a_view_whose_client_left_is_in_flight_until_its_job_ends():
    # The view still runs in its WSGI thread: a graceful shutdown must wait for it.
    pool = HeldPool()
    site = make_site(app_returning([b"late answer"]), pool=pool)
    channel, _ = send(site, "GET", "/slow/")
    assert site.in_flight == 1
    channel.connectionLost(ConnectionResetError())
    assert site.in_flight == 1
    pool.run_all()
    assert site.in_flight == 0


# --- header cleaning ---------------------------------------------------------------------


class QuietSite(ParleySite):
    """No access log: these tests look at the environ only (the log has its own tests)."""

    def log(self, request) -> None:
        pass


def wsgi_environ(settings, trusted: str, peer: str, headers: list[tuple[str, str]]) -> dict:
    settings.TRUSTED_PROXIES = parse_networks(trusted)
    app = Recorder()
    reactor = SyncReactor()
    root = RootResource(DjangoFallback(reactor, SyncPool(), app))
    send(QuietSite(root, reactor=reactor), "GET", "/test/meta/", headers, host=peer)
    (environ,) = app.calls
    return environ


@pytest.mark.parametrize("trusted", ["", "127.0.0.1"])
def test_header_names_with_underscores_never_reach_django(settings, trusted):
    environ = wsgi_environ(
        settings,
        trusted,
        "127.0.0.1",
        [("X_Forwarded_For", "6.6.6.6"), ("Remote_Addr", "6.6.6.6"), ("X-Custom", "kept")],
    )
    assert "HTTP_X_FORWARDED_FOR" not in environ
    assert "HTTP_REMOTE_ADDR" not in environ
    assert environ["HTTP_X_CUSTOM"] == "kept"
    assert environ["REMOTE_ADDR"] == "127.0.0.1"


def test_an_underscore_twin_cannot_override_a_trusted_proxys_header(settings):
    environ = wsgi_environ(
        settings,
        "127.0.0.1",
        "127.0.0.1",
        [("X-Forwarded-For", "203.0.113.7"), ("X_Forwarded_For", "6.6.6.6")],
    )
    assert environ["HTTP_X_FORWARDED_FOR"] == "203.0.113.7"


FORWARDED = [
    ("X-Forwarded-For", "203.0.113.7"),
    ("X-Forwarded-Proto", "https"),
    ("X-Forwarded-Host", "evil.example"),
]
FORWARDED_KEYS = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST")


@pytest.mark.parametrize(
    ("trusted", "peer"),
    [("", "127.0.0.1"), ("127.0.0.1", "10.1.2.3"), ("10.0.0.0/8", "192.168.0.9"), ("::1", "::2")],
)
def test_forwarded_headers_from_an_untrusted_peer_are_dropped(settings, trusted, peer):
    environ = wsgi_environ(settings, trusted, peer, [*FORWARDED, ("X-Custom", "kept")])
    for key in FORWARDED_KEYS:
        assert key not in environ
    assert environ["HTTP_X_CUSTOM"] == "kept"


@pytest.mark.parametrize(
    ("trusted", "peer"),
    [("127.0.0.1", "127.0.0.1"), ("10.0.0.0/8, ::1", "10.200.0.1"), ("10.0.0.0/8, ::1", "::1")],
)
def test_forwarded_headers_from_a_trusted_proxy_are_kept(settings, trusted, peer):
    environ = wsgi_environ(settings, trusted, peer, FORWARDED)
    assert environ["HTTP_X_FORWARDED_FOR"] == "203.0.113.7"
    assert environ["HTTP_X_FORWARDED_PROTO"] == "https"
    assert environ["HTTP_X_FORWARDED_HOST"] == "evil.example"
    assert environ["REMOTE_ADDR"] == peer


# --- access log and metrics -------------------------------------------------------------


def access_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "parley.access"]


def test_access_log_line_is_common_log_format(caplog, settings):
    settings.TRUSTED_PROXIES = ()
    caplog.set_level(logging.INFO, logger="parley.access")
    send(make_site(Recorder(b"12345")), "GET", "/rooms/lobby/?x=1")
    (line,) = access_lines(caplog)
    match = CLF.match(line)
    assert match, line
    assert match.group("host", "method", "uri", "proto", "status", "size") == (
        "127.0.0.1",
        "GET",
        "/rooms/lobby/?x=1",
        "HTTP/1.1",
        "200",
        "5",
    )


def test_a_request_from_a_trusted_proxy_is_finished(settings):
    # Regression: client_ip() once split the bytes header with a str, and the TypeError in
    # ParleySite.log left every proxied request unfinished.
    settings.TRUSTED_PROXIES = parse_networks("127.0.0.1")
    site = make_site(Recorder())
    channel, transport = connect(site)
    channel.dataReceived(request_bytes("GET", "/a", [("X-Forwarded-For", "203.0.113.7")]))
    assert site.in_flight == 0
    assert status_of(transport.value()) == 200
    transport.clear()
    channel.dataReceived(request_bytes("GET", "/b"))  # the same kept-alive connection
    assert status_of(transport.value()) == 200


def test_access_log_names_the_client_a_trusted_proxy_forwarded(caplog, settings):
    caplog.set_level(logging.INFO, logger="parley.access")
    settings.TRUSTED_PROXIES = parse_networks("127.0.0.1")
    headers = [("X-Forwarded-For", "198.51.100.1, 203.0.113.7")]
    send(make_site(Recorder()), "GET", "/", headers)
    settings.TRUSTED_PROXIES = ()
    send(make_site(Recorder()), "GET", "/", headers)
    hosts = [CLF.match(line).group("host") for line in access_lines(caplog)]
    assert hosts == ["203.0.113.7", "127.0.0.1"]


def counter(name: str, labels: dict | None = None) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def test_answered_requests_are_counted_by_status():
    before = counter("parley_http_requests_total", {"status": "200"})
    send(make_site(Recorder()), "GET", "/")
    assert counter("parley_http_requests_total", {"status": "200"}) == before + 1


# --- request bodies over MAX_REQUEST_BYTES -----------------------------------------------


@pytest.fixture
def small_limit(settings):
    settings.MAX_REQUEST_BYTES = 2048
    settings.TRUSTED_PROXIES = ()
    return 2048


def assert_refused(transport, app: Recorder) -> None:
    output = transport.value()
    assert status_of(output) == 413, output
    head, _, body = output.partition(b"\r\n\r\n")
    assert b"Connection: close" in head
    assert json.loads(body)["error"]["code"] == "too_large"
    assert transport.disconnecting
    assert app.calls == []


def test_content_length_over_the_limit_is_refused_before_the_body(small_limit, caplog):
    caplog.set_level(logging.INFO, logger="parley.access")
    refused_before = counter("parley_http_refused_bodies_total")
    app = Recorder()
    _, transport = send(
        make_site(app), "POST", "/api/rooms/", [("Content-Length", str(small_limit + 1))]
    )  # headers only: the answer must not wait for the body
    assert_refused(transport, app)
    assert counter("parley_http_refused_bodies_total") == refused_before + 1
    (line,) = access_lines(caplog)
    assert CLF.match(line).group("method", "uri", "status") == ("POST", "/api/rooms/", "413")


def test_a_body_of_exactly_the_limit_is_accepted(small_limit):
    app = Recorder()
    body = b"a" * small_limit
    _, transport = send(
        make_site(app), "POST", "/api/rooms/", [("Content-Length", str(len(body)))], body
    )
    assert status_of(transport.value()) == 200
    assert app.calls[0]["body"] == body


def test_expect_continue_over_the_limit_gets_413_and_no_100_continue(small_limit):
    app = Recorder()
    headers = [("Content-Length", "999999"), ("Expect", "100-continue")]
    _, transport = send(make_site(app), "POST", "/api/rooms/", headers)
    assert b"100 Continue" not in transport.value()
    assert_refused(transport, app)


def chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


def test_a_chunked_body_over_the_limit_is_refused(small_limit):
    app = Recorder()
    channel, transport = connect(make_site(app))
    channel.dataReceived(request_bytes("POST", "/api/rooms/", [("Transfer-Encoding", "chunked")]))
    channel.dataReceived(b"400\r\n" + b"b" * 1024 + b"\r\n")
    channel.dataReceived(b"400\r\n" + b"b" * 1024 + b"\r\n")
    assert transport.value() == b""  # 2048 bytes: not over yet
    channel.dataReceived(b"1\r\nb\r\n")
    assert_refused(transport, app)


def test_a_chunked_body_within_the_limit_reaches_django(small_limit):
    app = Recorder()
    body = chunked(b"a" * 1024, b"b" * 1024)
    headers = [("Transfer-Encoding", "chunked")]
    _, transport = send(make_site(app), "POST", "/api/rooms/", headers, body)
    assert status_of(transport.value()) == 200
    assert app.calls[0]["body"] == b"a" * 1024 + b"b" * 1024


# --- request head deadline (slowloris) and idle timeout ---------------------------------


def slow_site(reactor: SyncReactor, resource: Resource | None = None) -> ParleySite:
    root = Resource()
    root.putChild(b"fast", Leaf(b"fast answer"))
    root.putChild(b"pending", resource or Pending())
    return ParleySite(root, reactor=reactor)


def test_site_has_an_idle_timeout():
    reactor = SyncReactor()
    site = slow_site(reactor)
    assert site.timeOut == IDLE_TIMEOUT
    assert 0 < IDLE_TIMEOUT < 600
    _, transport = connect(site)
    reactor.advance(IDLE_TIMEOUT - 1)
    assert not transport.disconnecting
    reactor.advance(1)
    assert transport.disconnecting
    assert transport.value() == b""  # a quiet close, not an error response


def test_a_request_head_trickling_in_is_cut_at_head_timeout():
    reactor = SyncReactor()
    channel, transport = connect(slow_site(reactor))
    head = request_bytes("GET", "/fast", [("X-Padding", "p" * 200)])
    sent = 0
    # One byte a second keeps the idle timeout from ever firing, but not the deadline.
    while reactor.seconds() < HEAD_TIMEOUT - 1:
        channel.dataReceived(head[sent : sent + 1])
        sent += 1
        reactor.advance(1)
    assert not transport.disconnecting
    assert transport.value() == b""
    reactor.advance(1)
    assert transport.disconnecting
    assert status_of(transport.value()) == 408  # Request Timeout, a whole answer before the close


def test_a_head_completed_in_time_is_answered_and_the_deadline_is_cleared():
    reactor = SyncReactor()
    channel, transport = connect(slow_site(reactor))
    head = request_bytes("GET", "/fast")
    channel.dataReceived(head[:10])
    reactor.advance(HEAD_TIMEOUT - 1)
    channel.dataReceived(head[10:])
    assert status_of(transport.value()) == 200
    transport.clear()
    reactor.advance(IDLE_TIMEOUT - 1)  # well past the head deadline
    assert not transport.disconnecting
    assert transport.value() == b""


def test_the_deadline_applies_to_every_request_on_a_kept_alive_connection():
    reactor = SyncReactor()
    channel, transport = connect(slow_site(reactor))
    channel.dataReceived(request_bytes("GET", "/fast"))
    assert status_of(transport.value()) == 200
    transport.clear()
    reactor.advance(5)
    channel.dataReceived(b"GET /fast HTTP/1.1\r\n")
    for _ in range(int(HEAD_TIMEOUT) - 1):
        reactor.advance(1)
        channel.dataReceived(b"X: y\r\n")
    assert not transport.disconnecting
    reactor.advance(1)
    assert status_of(transport.value()) == 408
    assert transport.disconnecting


def test_a_long_request_without_a_body_is_not_cut_by_the_head_deadline():
    reactor = SyncReactor()
    pending = Pending()
    channel, transport = connect(slow_site(reactor, pending))
    channel.dataReceived(request_bytes("GET", "/pending"))
    reactor.advance(HEAD_TIMEOUT * 3)
    assert not transport.disconnecting
    (request,) = pending.requests
    request.write(b"late answer")
    request.finish()
    assert status_of(transport.value()) == 200


def test_a_long_request_whose_body_came_separately_is_not_cut_by_the_head_deadline():
    # Regression: body bytes once armed the head deadline, and nothing cancelled it.
    reactor = SyncReactor()
    pending = Pending()
    channel, transport = connect(slow_site(reactor, pending))
    channel.dataReceived(request_bytes("POST", "/pending", [("Content-Length", "5")]))
    channel.dataReceived(b"hello")  # body in its own segment, as clients usually send it
    (request,) = pending.requests
    reactor.advance(HEAD_TIMEOUT + 1)  # e.g. a slow Django view
    assert transport.value() == b""
    assert not transport.disconnecting
    request.write(b"late answer")
    request.finish()
    assert status_of(transport.value()) == 200


def test_a_steady_upload_longer_than_head_timeout_is_not_cut(settings):
    settings.MAX_REQUEST_BYTES = 10 * 1024 * 1024
    reactor = SyncReactor()
    pending = Pending()
    channel, transport = connect(slow_site(reactor, pending))
    size = 40 * 1024
    channel.dataReceived(request_bytes("POST", "/pending", [("Content-Length", str(size))]))
    for _ in range(40):  # 1 KiB a second for 40 s: slow, but never idle
        channel.dataReceived(b"u" * 1024)
        reactor.advance(1)
    assert transport.value() == b""
    assert len(pending.requests) == 1


# --- /healthz, /metrics and build_site ---------------------------------------------------


def test_health_is_ok_while_serving_and_503_while_draining():
    root = Resource()
    root.putChild(b"healthz", HealthResource(lambda: {"extra": 1}))
    site = ParleySite(root, reactor=SyncReactor())
    _, transport = send(site, "GET", "/healthz")
    head, _, body = transport.value().partition(b"\r\n\r\n")
    assert status_of(head) == 200
    assert json.loads(body) == {"status": "ok", "extra": 1}
    assert b"no-store" in head.lower()
    site.draining = True
    _, transport = send(site, "GET", "/healthz")
    head, _, body = transport.value().partition(b"\r\n\r\n")
    assert status_of(head) == 503
    assert json.loads(body)["status"] == "draining"


@pytest.fixture
def built_site(settings, tmp_path):
    settings.STATIC_ROOT = tmp_path
    reactor = SyncReactor()
    site = build_site(reactor=reactor, wsgi_pool=SyncPool())
    return site


def test_build_site_maps_healthz_metrics_static_and_live_placeholders(built_site):
    _, transport = send(built_site, "GET", "/healthz")
    head, _, body = transport.value().partition(b"\r\n\r\n")
    assert status_of(head) == 200
    health = json.loads(body)
    assert health["status"] == "ok"
    assert health["wsgi"] == {"threads": 3, "busy": 0, "queued": 0}

    _, transport = send(built_site, "GET", "/metrics")
    text = transport.value().decode()
    assert status_of(transport.value()) == 200
    assert "parley_http_requests_total" in text
    assert "parley_wsgi_threads_busy" in text

    _, transport = send(built_site, "GET", "/static/nothing-here.css")
    assert status_of(transport.value()) == 404
    assert transport.value().endswith(b"Not Found\n")  # the static resource, not Django

    for live in ("/ws/rooms/lobby/", "/events/rooms/lobby/", "/poll/rooms/lobby/"):
        _, transport = send(built_site, "GET", live)
        assert status_of(transport.value()) == 404


def test_build_site_sends_everything_else_to_django(built_site, monkeypatch):
    seen = []

    def fake_render(self, request):
        seen.append((request.prepath, request.postpath))
        return b"django"

    monkeypatch.setattr(WSGIResource, "render", fake_render)
    for uri in ("/", "/rooms/lobby/", "/admin/", "/healthz/extra"):
        send(built_site, "GET", uri)
    assert seen == [
        ([], [b""]),
        ([], [b"rooms", b"lobby", b""]),
        ([], [b"admin", b""]),
    ], "only the first three go to Django; /healthz/... is the health leaf"


# --- graceful shutdown (project/runner.py) -----------------------------------------------


class FakePort:
    def __init__(self) -> None:
        self.listening = True

    def stopListening(self):
        self.listening = False
        return defer.succeed(None)


def test_drain_stops_listening_reports_draining_and_waits_for_requests(caplog):
    caplog.set_level(logging.INFO, logger="parley.serve")
    reactor = SyncReactor()
    django = SimpleNamespace(in_flight=1)
    site = ParleySite(Resource(), django=django, reactor=reactor)
    port = FakePort()
    done = GracefulShutdown(reactor, port, site, grace=10.0).drain()
    assert site.draining
    assert not port.listening
    reactor.advance(5)
    assert not done.called
    django.in_flight = 0
    reactor.advance(0.1)
    assert done.called
    assert "drained" in caplog.text


def test_drain_gives_up_after_the_grace_period(caplog):
    caplog.set_level(logging.INFO, logger="parley.serve")
    reactor = SyncReactor()
    site = ParleySite(Resource(), django=SimpleNamespace(in_flight=2), reactor=reactor)
    done = GracefulShutdown(reactor, FakePort(), site, grace=3.0).drain()
    reactor.advance(2.9)
    assert not done.called
    reactor.pump([0.05] * 10)
    assert done.called
    assert "2 request(s) still running after 3.0s" in caplog.text


def test_drain_waits_for_the_live_service_too():
    reactor = SyncReactor()
    site = ParleySite(Resource(), reactor=reactor)
    live_drained = defer.Deferred()
    live = type("Live", (), {"drain": lambda self: live_drained})()
    done = GracefulShutdown(reactor, FakePort(), site, live=live, grace=5.0).drain()
    assert not done.called
    live_drained.callback(None)
    reactor.advance(0.1)
    assert done.called


# --- serve.py flags -------------------------------------------------------------------------


def load_serve():
    spec = importlib.util.spec_from_file_location("parley_serve_cli", REPO / "serve.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_serve_flags_defaults_and_values():
    serve = load_serve()
    args = serve.parse_args([])
    assert (args.host, args.port, args.threads, args.workers) == ("127.0.0.1", 8000, 10, 1)
    assert not args.no_migrate and not args.no_collectstatic
    args = serve.parse_args(
        [
            *("--host", "0.0.0.0", "--port", "9000", "--threads", "16", "--workers", "4"),
            *("--grace", "2.5", "--no-migrate", "--no-collectstatic"),
        ]
    )
    assert (args.host, args.port, args.threads, args.workers, args.grace) == (
        "0.0.0.0",
        9000,
        16,
        4,
        2.5,
    )
    assert args.no_migrate and args.no_collectstatic


@pytest.mark.parametrize("flag", ["--threads", "--workers"])
@pytest.mark.parametrize("value", ["0", "-2", "many"])
def test_serve_refuses_pool_sizes_below_one(flag, value, capsys):
    with pytest.raises(SystemExit) as exc:
        load_serve().parse_args([flag, value])
    assert exc.value.code == 2
    assert flag in capsys.readouterr().err


def test_the_gc_collector_times_each_collection_without_touching_a_metric():
    import gc

    from project.metrics import GCPauses

    pauses = GCPauses()
    gc.callbacks.append(pauses.callback)
    try:
        gc.collect()
    finally:
        gc.callbacks.remove(pauses.callback)
    assert pauses.count[2] == 1 and pauses.longest[2] > 0
    families = {f.name: f for f in pauses.collect()}
    (full,) = [s for s in families["parley_gc_pause_seconds"].samples
               if s.labels == {"generation": "2"} and s.name.endswith("_total")]  # fmt: skip
    assert full.value == pauses.total[2] > 0
