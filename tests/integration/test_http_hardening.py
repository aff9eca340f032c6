"""Issue 9's HTTP findings, from their causes, over real sockets against ``serve.py``.

* backpressure: twenty pipelined history requests from a client that never reads;
* deadlines and headroom: a request body one byte at a time, and connections past the
  process's descriptor limit;
* request heads (RFC 9112): targets, Host, framing, over-long lines, Upgrade over
  HTTP/1.0, and hypothesis's arbitrary heads;
* static ETags per representation, private pages, the Server header, /metrics access.

Probes that change nothing use the session's ``live_server``; the rest start their own.
Every test ends by checking that the server still answers and logged no traceback.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import resource
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from parley_testing import ServerProcess, create_user
from raw_http import parse_response, raw_exchange, raw_request

# 100 events of 4000 "é" (body and html: 16 KB each): a page of about 4.8 MB.
PAGE_EVENTS = 100
HISTORY = (
    b"GET /api/rooms/lobby/messages/?limit=%d HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % PAGE_EVENTS
)


def log_mark(server: ServerProcess) -> int:
    return len(server.log())


def assert_healthy(server: ServerProcess, since: int = 0) -> None:
    """It answers natively and through Django, and logged no traceback after ``since``."""
    with server.client(timeout=5) as client:
        assert client.get("/healthz").json()["status"] == "ok"
        assert client.get("/").status_code == 200  # Django's threads are fine too
    log = server.log()[since:]
    assert "Traceback" not in log and "Unhandled" not in log, log[-3000:]


def rss(server: ServerProcess) -> int:
    with open(f"/proc/{server.proc.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def read_responses(sock: socket.socket, count: int) -> list[tuple[int, bytes]]:
    """``count`` Content-Length framed responses from one connection."""
    buffer, answers = b"", []
    while len(answers) < count:
        while b"\r\n\r\n" not in buffer:
            data = sock.recv(1 << 20)
            assert data, f"closed after {len(answers)} responses"
            buffer += data
        head, _, buffer = buffer.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?im)^content-length: *(\d+)", head).group(1))
        while len(buffer) < length:
            data = sock.recv(1 << 20)
            assert data, f"closed inside response {len(answers) + 1}"
            buffer += data
        answers.append((int(head[9:12]), buffer[:length]))
        buffer = buffer[length:]
    return answers


# --- backpressure ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def full_room(tmp_path_factory, live_server):
    """A server whose lobby holds 250 messages of 4000 'é': 200 of them are a 4.8 MB page."""
    server = ServerProcess(
        tmp_path_factory.mktemp("full-room"), env={"STATIC_ROOT": str(live_server.static_root)}
    ).start()
    create_user(server, "filler", "pw-filler-8812")
    server.manage(
        "shell",
        "-c",
        "from chat.log import append_events; from chat.live.records import SendRequest;"
        "from django.contrib.auth.models import User; u = User.objects.get(username='filler');"
        "[append_events([SendRequest('lobby', u.id, 'filler', '\u00e9' * 4000, None)"
        " for _ in range(50)]) for _ in range(5)]",
    )
    yield server
    server.kill()


def test_pipelined_requests_from_a_client_that_never_reads_hold_little_memory(full_room):
    def fetch_page(_index: int) -> int:
        with full_room.client(timeout=60) as client:
            return len(client.get(f"/api/rooms/lobby/messages/?limit={PAGE_EVENTS}").content)

    # Warm Django, the ORM and every WSGI thread's allocator arena, so that what grows
    # next is what the connection holds.
    with ThreadPoolExecutor(10) as pool:
        sizes = list(pool.map(fetch_page, range(20)))
    assert min(sizes) > 4_000_000
    time.sleep(0.5)
    before = rss(full_room)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect
    sock.connect(("127.0.0.1", full_room.port))
    try:
        sock.sendall(HISTORY * 20)
        peak = before
        for _ in range(12):  # the server has long answered what it is going to answer
            time.sleep(0.25)
            peak = max(peak, rss(full_room))
        growth = peak - before
        print(f"RSS growth under 20 pipelined unread 4.8 MB pages: {growth / 2**20:.1f} MiB")
        # The page its blocked WSGI thread still holds (Django's copies of it, ~10 MiB)
        # and a megabyte for the socket; without backpressure the twenty pages were all
        # in memory (91-102 MiB measured).
        assert growth < 20 * 2**20
        assert_healthy(full_room)  # others are served meanwhile
        sock.settimeout(30)
        answers = read_responses(sock, 20)
    finally:
        sock.close()
    assert [status for status, _ in answers] == [200] * 20
    for _, body in answers:
        assert len(json.loads(body)["events"]) == PAGE_EVENTS
    assert_healthy(full_room)


def test_pipelined_long_polls_are_held_back_at_the_channel_too(full_room):
    poll = b"GET /poll/rooms/lobby/?since=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with full_room.client(timeout=30) as client:
        for _ in range(3):
            answer = client.get("/poll/rooms/lobby/?since=0")
    assert answer.status_code == 200 and len(answer.content) > 1_500_000
    time.sleep(0.5)
    before = rss(full_room)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", full_room.port))
    try:
        sock.sendall(poll * 20)
        peak = before
        for _ in range(12):
            time.sleep(0.25)
            peak = max(peak, rss(full_room))
        print(
            f"RSS growth under 20 pipelined unread long-polls: {(peak - before) / 2**20:.1f} MiB"
        )
        # What is held is the answer being written, its copies on the way to the transport
        # and the allocator's slack, not the twenty answers (20 x ~2 MB was 40.9 MiB
        # measured without backpressure, when an event had no html; each answer is about
        # twice that now). 2.4 and 3.8 answers' worth measured, the latter on a loaded CI.
        assert peak - before < 8 * len(answer.content)
        sock.settimeout(30)
        answers = read_responses(sock, 20)
    finally:
        sock.close()
    assert [status for status, _ in answers] == [200] * 20
    assert all(len(json.loads(body)["events"]) == 250 for _, body in answers)
    assert_healthy(full_room)


# --- request bodies and descriptors -------------------------------------------------------


def test_a_body_sent_one_byte_at_a_time_is_cut_with_408(live_server):
    mark = log_mark(live_server)
    head = (
        b"POST /api/rooms/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    )
    started = time.monotonic()
    raw = raw_exchange(live_server, [head, b"{"], timeout=45)  # the next byte would be at 40 s
    elapsed = time.monotonic() - started
    status, headers, _ = parse_response(raw)
    assert status == 408
    assert headers["connection"] == "close"
    assert 25 < elapsed < 40, elapsed
    assert_healthy(live_server, mark)


def test_a_client_refused_mid_upload_still_reads_the_refusal(live_server):
    head = (
        b"POST /api/rooms/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/octet-stream\r\nContent-Length: 50000000\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", live_server.port), timeout=10) as sock:
        sock.sendall(head + b"x" * 20_000_000)  # as a browser uploads: before reading
        answer = b""
        while data := sock.recv(65536):
            answer += data
    status, _, body = parse_response(answer)
    assert status == 413
    assert json.loads(body)["error"]["code"] == "too_large"


def fds_of(server: ServerProcess) -> int:
    return len(os.listdir(f"/proc/{server.proc.pid}/fd"))


def test_connections_past_the_descriptor_headroom_get_503_and_the_server_recovers(
    make_server, live_server
):
    server = make_server(env={"STATIC_ROOT": str(live_server.static_root)}, name="fd-limit")
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # 64 descriptors stay in reserve: about 20 more connections fit under this limit.
    resource.prlimit(server.proc.pid, resource.RLIMIT_NOFILE, (fds_of(server) + 84, hard))
    held, statuses = [], []
    try:
        for _ in range(60):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            held.append(sock)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            statuses.append(int(sock.recv(65536)[9:12]))
    finally:
        for sock in held:
            sock.close()
    assert statuses.count(200) >= 10, statuses
    assert statuses.count(503) >= 20, statuses
    assert statuses == sorted(statuses), statuses  # served up to the headroom, then 503
    time.sleep(1.5)  # the next count sees the closed connections
    assert_healthy(server)


# --- request heads --------------------------------------------------------------------------

PROBES = [
    (b"GET xmetrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 400),
    (b"GET metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: 127.0.0.1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: 127.0.0.1, evil\r\n\r\n", 400),
    (b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"b" * 20000 + b"\r\n\r\n", 431),
    (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Many: 1\r\n" * 300 + b"\r\n", 431),
    (
        b"POST /api/rooms/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Transfer-Encoding: gzip, chunked\r\n\r\n",
        400,
    ),
    (
        b"POST /api/rooms/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    (
        b"GET /ws/rooms/lobby/ HTTP/1.0\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n",
        400,
    ),
]


@pytest.mark.parametrize(("raw", "status"), PROBES, ids=lambda p: repr(p)[:40])
def test_malformed_heads_get_an_answer_and_a_close(live_server, raw, status):
    mark = log_mark(live_server)
    answer = raw_exchange(live_server, [raw])
    got, headers, body = parse_response(answer)
    assert got == status, answer[:300]
    assert headers["connection"] == "close"
    assert int(headers["content-length"]) == len(body)
    assert b"parley_http" not in answer  # xmetrics served /metrics before
    assert_healthy(live_server, mark)


def test_transfer_encoding_identity_cannot_smuggle_a_second_request(live_server):
    mark = log_mark(live_server)
    smuggled = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    head = b"POST /api/rooms/ HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: identity\r\n\r\n"
    answer = raw_exchange(live_server, [head + smuggled])
    assert answer.count(b"HTTP/1.1 ") == 1
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert_healthy(live_server, mark)


def test_the_absolute_form_is_served_as_its_path(live_server):
    raw = (
        b"GET http://127.0.0.1/healthz HTTP/1.1\r\n"
        b"Host: ignored.example\r\nConnection: close\r\n\r\n"
    )
    status, _, body = parse_response(raw_exchange(live_server, [raw]))
    assert status == 200
    assert json.loads(body)["status"] == "ok"
    # Its host is the request's host: Django judges it against ALLOWED_HOSTS.
    raw = b"GET http://evil.example/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    assert parse_response(raw_exchange(live_server, [raw]))[0] == 400


METHODS = st.sampled_from([b"GET", b"POST", b"HEAD", b"OPTIONS", b"PUT", b"get", b""])
TARGETS = st.sampled_from(
    [
        b"/",
        b"/healthz",
        b"/metrics",
        b"/static/admin/css/base.css",
        b"/api/rooms/",
        b"*",
        b"xmetrics",
        b"http://127.0.0.1/api/rooms/",
        b"http://u@h/",
        b"/%zz",
        b"/ws/rooms/lobby/",
    ]
)
NAMES = st.sampled_from(
    [
        b"Host",
        b"Content-Length",
        b"Transfer-Encoding",
        b"Upgrade",
        b"Connection",
        b"Range",
        b"If-None-Match",
        b"Accept-Encoding",
        b"Cookie",
        b"X_Forwarded_For",
        b"Expect",
    ]
)
VALUES = st.sampled_from(
    [
        b"127.0.0.1",
        b"chunked",
        b"identity",
        b"3",
        b"-1",
        b"websocket",
        b"bytes=0-0",
        b"*",
        b"gzip",
        b"csrftoken=x",
        b"close",
        b"100-continue",
        b"",
        b"\xff\xfe",
    ]
)
junk = st.binary(max_size=24).map(lambda b: b.replace(b"\r\n", b"\n"))


def test_arbitrary_heads_never_get_a_5xx(live_server):
    mark = log_mark(live_server)

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        method=METHODS | junk,
        target=TARGETS | junk,
        version=st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/0.9"]) | junk,
        headers=st.lists(st.tuples(NAMES | junk, VALUES | junk), max_size=6),
        body=junk,
    )
    def probe(method, target, version, headers, body):
        lines = [method + b" " + target + b" " + version]
        lines += [name + b": " + value for name, value in headers]
        raw = b"\r\n".join(lines) + b"\r\n\r\n" + body
        with socket.create_connection(("127.0.0.1", live_server.port), timeout=5) as sock:
            sock.sendall(raw)
            sock.settimeout(0.5)  # a head that asks for more body is left waiting
            answer = b""
            try:
                while data := sock.recv(65536):
                    answer += data
            except (TimeoutError, ConnectionResetError):
                pass
        for status in re.findall(rb"HTTP/1\.[01] (\d{3}) ", answer):
            assert int(status) < 500, answer[:300]

    probe()
    assert_healthy(live_server, mark)


# --- static representations, private pages, Server header, /metrics ----------------------


@pytest.fixture(scope="module")
def hashed_css(live_server) -> str:
    manifest = json.loads((live_server.static_root / "staticfiles.json").read_text())
    return "/static/" + manifest["paths"]["admin/css/base.css"]


def test_each_representation_of_a_static_file_has_its_own_etag(live_server, hashed_css):
    with live_server.client() as client:
        tags = {
            accept: client.get(hashed_css, headers={"Accept-Encoding": accept}).headers["etag"]
            for accept in ("identity", "gzip", "br")
        }
        assert len(set(tags.values())) == 3, tags
        for accept, tag in tags.items():
            headers = {"Accept-Encoding": accept, "If-None-Match": tag}
            assert client.get(hashed_css, headers=headers).status_code == 304
        headers = {"Accept-Encoding": "identity", "If-None-Match": tags["gzip"]}
        assert client.get(hashed_css, headers=headers).status_code == 200


def test_if_range_with_the_gzip_tag_never_splices_identity_bytes(live_server, hashed_css):
    plain = (live_server.static_root / hashed_css.removeprefix("/static/")).read_bytes()
    status, headers, head_part = raw_request(
        live_server.url, hashed_css, headers={"Accept-Encoding": "gzip", "Range": "bytes=0-99"}
    )
    assert (status, headers["content-encoding"]) == (206, "gzip")
    resume = {"Range": "bytes=100-", "If-Range": headers["etag"]}
    # Resumed with the gzip tag but no gzip accepted: the whole plain file, not its
    # bytes 100-, which would follow 100 bytes of gzip.
    status, _, body = raw_request(
        live_server.url, hashed_css, headers={**resume, "Accept-Encoding": "identity"}
    )
    assert (status, body) == (200, plain)
    status, _, tail = raw_request(
        live_server.url, hashed_css, headers={**resume, "Accept-Encoding": "gzip"}
    )
    assert status == 206
    assert gzip.decompress(head_part + tail) == plain


def test_pages_are_private_and_pages_with_a_csrf_token_no_cache(live_server):
    with live_server.client() as client:
        login = client.get("/accounts/login/")
        assert "csrfmiddlewaretoken" in login.text
        directives = {d.strip() for d in login.headers["cache-control"].split(",")}
        assert {"private", "no-cache"} <= directives
        rooms = client.get("/")
        assert "private" in rooms.headers["cache-control"]


def test_the_server_header_names_no_version(live_server, hashed_css):
    with live_server.client() as client:
        for path in ("/", "/healthz", hashed_css, "/no/such/page/"):
            assert client.get(path).headers.get("server") == "Parley", path


def test_metrics_answer_only_the_allowed_addresses(make_server, live_server):
    assert httpx.get(live_server.url + "/metrics", timeout=10).status_code == 200  # loopback
    server = make_server(
        env={"STATIC_ROOT": str(live_server.static_root), "METRICS_ALLOWED": "192.0.2.0/24"},
        name="metrics-closed",
    )
    with server.client() as client:
        response = client.get("/metrics")
        assert response.status_code == 404
        assert "parley_http" not in response.text
    assert_healthy(server)
