"""Request heads (project/head.py), alone and through a real ParleyChannel.

The pure checks come first, then the same heads as raw bytes into a ``ParleySite`` over a
``StringTransport`` (the harness of test_server_parts.py): every refusal must be a whole
response followed by a close, and nothing refused may reach a resource. Last, hypothesis
throws arbitrary heads at both: never a 5xx, never an exception, never a traceback.
"""

from __future__ import annotations

import logging
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_server_parts import Leaf, Recorder, connect, make_site
from twisted.logger import globalLogPublisher
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from project.head import (
    HEADER_SECTION_LIMIT,
    MAX_HEADERS,
    REQUEST_LINE_LIMIT,
    HeadError,
    HeadReader,
    parse_request_line,
    valid_host,
)

# --- the pure reader -----------------------------------------------------------------


def read_head(*lines: bytes):
    reader = HeadReader()
    head = None
    for line in (*lines, b""):
        head = reader.feed(line)
    return head


def refusal(*lines: bytes) -> int:
    with pytest.raises(HeadError) as caught:
        read_head(*lines)
    return caught.value.status


@pytest.mark.parametrize(
    "line",
    [
        b"GET xmetrics HTTP/1.1",  # Twisted served this as /metrics
        b"GET metrics HTTP/1.1",
        b"GET * HTTP/1.1",  # "*" is for OPTIONS only
        b"CONNECT example.com:443 HTTP/1.1",  # authority-form: Parley is no proxy
        b"GET http://user@example.com/ HTTP/1.1",
        b"GET http:///healthz HTTP/1.1",  # no host
        b"GET ftp://example.com/ HTTP/1.1",
        b"GET http://exa mple.com/ HTTP/1.1",
        b"GET /  HTTP/1.1",
        b"GET / HTTP/1.1 ",
        b"GET /a\x00b HTTP/1.1",
        b"GET /caf\xc3\xa9 HTTP/1.1",
        b"GET / HTTP/2.0",
        b"GET / http/1.1",
        b"GET /",
        b"G(T / HTTP/1.1",
        b"",
    ],
)
def test_bad_request_lines_are_400(line):
    with pytest.raises(HeadError) as caught:
        parse_request_line(line)
    assert caught.value.status == 400


def test_a_request_line_over_the_limit_is_414():
    with pytest.raises(HeadError) as caught:
        parse_request_line(b"GET /" + b"a" * REQUEST_LINE_LIMIT + b" HTTP/1.1")
    assert caught.value.status == 414


@pytest.mark.parametrize(
    ("line", "target", "authority"),
    [
        (b"GET /rooms/lobby/?x=1 HTTP/1.1", b"/rooms/lobby/?x=1", None),
        (b"GET http://example.com/healthz HTTP/1.1", b"/healthz", b"example.com"),
        (b"GET HTTPS://Example.com:8443 HTTP/1.1", b"/", b"Example.com:8443"),
        (b"GET http://[::1]:8000?q=1 HTTP/1.1", b"/?q=1", b"[::1]:8000"),
        (b"OPTIONS * HTTP/1.1", b"*", None),
    ],
)
def test_origin_absolute_and_asterisk_forms(line, target, authority):
    parsed = parse_request_line(line)
    assert (parsed.target, parsed.authority) == (target, authority)


@pytest.mark.parametrize(
    "host",
    [b"localhost", b"127.0.0.1:8000", b"[::1]", b"[::1]:8000", b"Chat.Example.COM", b"a-b.c"],
)
def test_valid_hosts(host):
    assert valid_host(host)


@pytest.mark.parametrize(
    "host",
    [b"", b"a b", b"a,b", b"[::1", b"[zz::1]", b"host:99999", b"host:", b"u@host", b"a/b"],
)
def test_malformed_hosts(host):
    assert not valid_host(host)
    assert refusal(b"GET / HTTP/1.1", b"Host: " + host) == 400


def test_host_rules():
    assert refusal(b"GET / HTTP/1.1") == 400  # HTTP/1.1 without Host
    assert refusal(b"GET / HTTP/1.1", b"Host: a", b"Host: a") == 400
    assert refusal(b"GET / HTTP/1.0", b"Host: a", b"host: b") == 400
    assert read_head(b"GET / HTTP/1.0") is not None  # HTTP/1.0 may leave it out


def test_an_absolute_form_target_brings_its_own_host():
    head = read_head(b"GET http://example.com:8000/healthz?x HTTP/1.1", b"Host: other")
    assert head.lines() == [b"GET /healthz?x HTTP/1.1", b"Host: example.com:8000"]


@pytest.mark.parametrize(
    "headers",
    [
        [b"Transfer-Encoding: identity"],
        [b"Transfer-Encoding: gzip, chunked"],
        [b"Transfer-Encoding: chunked, gzip"],
        [b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"],
        [b"Transfer-Encoding: chunked", b"Content-Length: 5"],
        [b"Transfer-Encoding: "],
        [b"Content-Length: 5, 5"],
        [b"Content-Length: 5", b"Content-Length: 5"],
        [b"Content-Length: +5"],
        [b"Content-Length: 0x10"],
        [b"Content-Length: \xd9\xa3"],
    ],
)
def test_ambiguous_framing_is_400(headers):
    assert refusal(b"POST / HTTP/1.1", b"Host: a", *headers) == 400


def test_chunked_alone_is_accepted_in_any_case():
    head = read_head(b"POST / HTTP/1.1", b"Host: a", b"Transfer-Encoding: Chunked")
    assert (b"Transfer-Encoding", b"Chunked") in head.headers
    assert refusal(b"POST / HTTP/1.0", b"Transfer-Encoding: chunked") == 400


def test_upgrade_over_http_1_0_is_400():
    assert refusal(b"GET /ws/rooms/lobby/ HTTP/1.0", b"Upgrade: websocket") == 400
    assert read_head(b"GET /ws/rooms/lobby/ HTTP/1.1", b"Host: a", b"Upgrade: websocket")


@pytest.mark.parametrize(
    "line",
    [
        b" X-Folded: yes",
        b"\tX: y",
        b"X : y",
        b"X Y: z",
        b"NoColon",
        b": v",
        b"X: a\x00b",
        b"X: \x7f",
    ],
)
def test_malformed_header_lines_are_400(line):
    assert refusal(b"GET / HTTP/1.1", b"Host: a", line) == 400


def test_obs_text_in_a_value_is_kept():
    head = read_head(b"GET / HTTP/1.1", b"Host: a", b"X-Name: Andr\xe9")
    assert (b"X-Name", b"Andr\xe9") in head.headers


def test_header_section_limits_are_431():
    many = [b"X-%d: v" % i for i in range(MAX_HEADERS)]
    assert refusal(b"GET / HTTP/1.1", b"Host: a", *many) == 431
    big = [b"X-%d: " % i + b"v" * 1000 for i in range(HEADER_SECTION_LIMIT // 1000 + 1)]
    assert refusal(b"GET / HTTP/1.1", b"Host: a", *big) == 431
    reader = HeadReader()
    assert reader.line_too_long().status == 414
    reader.feed(b"GET / HTTP/1.1")
    assert reader.line_too_long().status == 431


# --- through the channel -------------------------------------------------------------


class Upgrader(Resource):
    """Answers 101 to any Upgrade, as a WebSocket resource that forgot HTTP/1.0 would."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen = 0

    def render(self, request):
        self.seen += 1
        if request.getHeader(b"upgrade"):
            request.setResponseCode(101)
            request.write(b"")
            return NOT_DONE_YET
        return b"no upgrade"


@pytest.fixture
def site_and_app():
    app = Recorder(b"from django")
    site = make_site(app)
    site.resource.putChild(b"metrics", Leaf(b"metrics text"))
    upgrader = Upgrader()
    site.resource.putChild(b"ws", upgrader)
    return site, app, upgrader


def exchange(site, raw: bytes):
    channel, transport = connect(site)
    channel.dataReceived(raw)
    return transport


def statuses(output: bytes) -> list[int]:
    return [int(code) for code in re.findall(rb"HTTP/1\.[01] (\d{3}) ", output)]


REFUSED = [
    (b"GET xmetrics HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    (b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    (b"GET /ws/ HTTP/1.0\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", 400),
    (b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),  # past Twisted's 16 KiB
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"v" * 20000 + b"\r\n\r\n", 431),
    (b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X: v\r\n" * 200 + b"\r\n", 431),
    (
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        400,
    ),
]


@pytest.mark.parametrize(("raw", "status"), REFUSED)
def test_a_refused_head_gets_a_whole_answer_and_reaches_nothing(site_and_app, raw, status):
    site, app, upgrader = site_and_app
    transport = exchange(site, raw)
    output = transport.value()
    assert statuses(output) == [status], output[:200]
    head, _, body = output.partition(b"\r\n\r\n")
    assert b"Connection: close" in head
    assert f"Content-Length: {len(body)}".encode() in head
    assert transport.disconnecting
    assert app.calls == [] and upgrader.seen == 0
    assert b"metrics text" not in output


def test_transfer_encoding_identity_body_is_never_read_as_a_request(site_and_app):
    site, app, _ = site_and_app
    smuggled = b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n"
    raw = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n" + smuggled
    output = exchange(site, raw).value()
    assert statuses(output) == [400]
    assert b"metrics text" not in output and app.calls == []


def test_the_absolute_form_is_routed_by_its_path_with_its_host(site_and_app):
    site, app, _ = site_and_app
    output = exchange(site, b"GET http://127.0.0.1/metrics HTTP/1.1\r\nHost: x\r\n\r\n").value()
    assert statuses(output) == [200] and output.endswith(b"metrics text")
    raw = b"GET http://chat.example:8000/rooms/?a=1 HTTP/1.1\r\nHost: evil\r\n\r\n"
    assert statuses(exchange(site, raw).value()) == [200]
    (environ,) = app.calls
    assert environ["HTTP_HOST"] == "chat.example:8000"
    assert (environ["PATH_INFO"], environ["QUERY_STRING"]) == ("/rooms/", "a=1")


def test_checked_heads_keep_alive_pipelining_and_leading_empty_lines(site_and_app):
    site, app, upgrader = site_and_app
    raw = (
        b"\r\nGET /a HTTP/1.1\r\nHost: a\r\n\r\n"
        b"POST /b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        b"GET /ws/ HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n"
    )
    transport = exchange(site, raw)
    assert statuses(transport.value()) == [200, 200, 101]
    assert [call["PATH_INFO"] for call in app.calls] == ["/a", "/b"]
    assert app.calls[1]["body"] == b"abc"
    assert upgrader.seen == 1
    assert not transport.disconnecting


def test_a_malformed_chunk_gets_the_same_whole_answer(site_and_app):
    site, app, _ = site_and_app
    raw = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n"
    transport = exchange(site, raw)
    head, _, body = transport.value().partition(b"\r\n\r\n")
    assert statuses(head) == [400]
    assert b"Connection: close" in head and f"Content-Length: {len(body)}".encode() in head
    assert transport.disconnecting and app.calls == []


def test_options_asterisk_is_answered(site_and_app):
    site, app, _ = site_and_app
    output = exchange(site, b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").value()
    assert statuses(output) == [200]
    assert app.calls == []


# --- properties ----------------------------------------------------------------------

METHODS = st.sampled_from([b"GET", b"POST", b"HEAD", b"OPTIONS", b"CONNECT", b"get", b""])
TARGETS = st.sampled_from(
    [
        b"/",
        b"/native",
        b"/metrics",
        b"*",
        b"xmetrics",
        b"http://h/x",
        b"https://[::1]:1/?q",
        b"http://u@h/",
        b"http:///",
        b"//",
        b"/%00",
        b"/a?b#c",
        b"h:80",
    ]
)
VERSIONS = st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1 ", b"http/1.0"])
NAMES = st.sampled_from(
    [
        b"Host",
        b"Content-Length",
        b"Transfer-Encoding",
        b"Upgrade",
        b"Connection",
        b"Expect",
        b"X_Forwarded_For",
        b"X-Forwarded-For",
        b"Cookie",
        b"Content-Type",
        b"host",
    ]
)
VALUES = st.sampled_from(
    [
        b"chunked",
        b"identity",
        b"gzip, chunked",
        b"5",
        b"-1",
        b"0",
        b"99999999999999999999",
        b"localhost",
        b"[::1]:80",
        b"a b",
        b"websocket",
        b"100-continue",
        b"close",
        b"",
    ]
)
anything = st.binary(max_size=40)
header_lines = st.one_of(
    st.builds(lambda n, s, v: n + s + v, NAMES | anything, st.sampled_from([b": ", b":"]), VALUES)
    | st.builds(lambda n, v: n + b": " + v, NAMES, anything),
    anything,
)
request_lines = st.one_of(
    st.builds(lambda m, t, v: b" ".join((m, t, v)), METHODS, TARGETS | anything, VERSIONS),
    anything,
)


def no_crlf(line: bytes) -> bytes:
    return line.replace(b"\r\n", b"\r")


@settings(max_examples=1000, deadline=None)
@given(request_lines, st.lists(header_lines, max_size=8))
def test_the_reader_either_accepts_or_refuses_with_4xx(request_line, headers):
    reader = HeadReader()
    try:
        head = None
        for line in [no_crlf(request_line), *map(no_crlf, headers), b""]:
            if reader.request_line is None and not line:
                continue  # what the channel skips
            head = reader.feed(line)
    except HeadError as error:
        assert error.status in (400, 414, 431)
        return
    if head is not None:  # the canonical head is a fixed point: it reads back as itself
        again = HeadReader()
        for line in [*head.lines(), b""]:
            result = again.feed(line)
        assert result.lines() == head.lines()


class FailureLog:
    """Twisted log events that carry a failure (a traceback), and Python ERROR records."""

    def __init__(self) -> None:
        self.events: list = []

    def __call__(self, event) -> None:
        if event.get("log_failure") is not None:
            self.events.append(event)

    def emit(self, record) -> None:
        self.events.append(record.getMessage())

    handle = emit
    level = logging.ERROR

    def __enter__(self):
        globalLogPublisher.addObserver(self)
        logging.getLogger().addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        globalLogPublisher.removeObserver(self)
        logging.getLogger().removeHandler(self)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request_lines, st.lists(header_lines, max_size=8), st.binary(max_size=30))
def test_arbitrary_heads_never_get_a_5xx_or_a_traceback(request_line, headers, body):
    site = make_site(Recorder(b"ok"))
    site.resource.putChild(b"metrics", Leaf(b"metrics text"))
    raw = b"\r\n".join([request_line, *headers]) + b"\r\n\r\n" + body
    with FailureLog() as failures:
        channel, transport = connect(site)
        channel.dataReceived(raw)
        output = transport.value()
    assert failures.events == []
    for status in statuses(output):
        assert 100 <= status < 500, output[:300]
    if output:
        assert re.match(rb"HTTP/1\.[01] \d{3} ", output), output[:300]
