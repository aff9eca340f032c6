"""The HTTP server foundation against real ``serve.py`` processes over real sockets.

Servers used:

* ``live_server`` (the session's): pages, redirects, accounts, admin, API, health, metrics.
* ``slow_server``: the test site ``tests/slow_site`` (slow, failing and echoing views) with
  2 WSGI threads and ``MAX_REQUEST_BYTES=2048``; no trusted proxies.
* ``trusted_server``: the test site with ``TRUSTED_PROXIES=127.0.0.1``.
* ``make_server`` for tests that stop their server (graceful shutdown).

Servers other than ``live_server`` share its collected STATIC_ROOT, so they skip the slow
collectstatic. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

import httpx
import pytest
from parley_testing import REPO, ServerProcess, create_user, login_client
from raw_http import parse_response, raw_exchange

PASSWORD = "pw-server-tests-8812"
SLOW_SITE_ENV = {"DJANGO_SETTINGS_MODULE": "slow_site.settings", "PYTHONPATH": str(REPO / "tests")}
CLF_LINE = re.compile(
    r"parley\.access: (?P<host>\S+) - - \[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} \+0000\] "
    r'"(?P<method>[A-Z]+) (?P<uri>\S+) HTTP/1\.1" (?P<status>\d{3}) (?P<size>\d+|-)$',
    re.MULTILINE,
)


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(interval)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def access_lines(server: ServerProcess, uri: str) -> list[re.Match]:
    return [m for m in CLF_LINE.finditer(server.log()) if m.group("uri") == uri]


def shell(server: ServerProcess, code: str) -> str:
    return server.shell(code)


@pytest.fixture(scope="module")
def shared_static(live_server) -> dict[str, str]:
    return {"STATIC_ROOT": str(live_server.static_root)}


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory, shared_static):
    server = ServerProcess(
        tmp_path_factory.mktemp("slow-server"),
        env={**SLOW_SITE_ENV, **shared_static, "MAX_REQUEST_BYTES": "2048"},
        args=["--threads", "2"],
    ).start()
    yield server
    server.kill()


@pytest.fixture(scope="module")
def trusted_server(tmp_path_factory, shared_static):
    server = ServerProcess(
        tmp_path_factory.mktemp("trusted-server"),
        env={**SLOW_SITE_ENV, **shared_static, "TRUSTED_PROXIES": "127.0.0.1"},
    ).start()
    yield server
    server.kill()


# --- pages and redirects ----------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/rooms/lobby/", "/accounts/login/", "/accounts/signup/"])
def test_pages_answer_html(live_server, path):
    response = httpx.get(live_server.url + path, timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<html" in response.text.lower()


@pytest.mark.parametrize(
    ("path", "status", "location"),
    [
        ("/rooms/lobby", 301, "/rooms/lobby/"),
        ("/rooms/lobby?tab=2", 301, "/rooms/lobby/?tab=2"),
        ("/accounts/login", 301, "/accounts/login/"),
        ("/accounts/signup", 301, "/accounts/signup/"),
        ("/api/rooms", 301, "/api/rooms/"),
        ("/admin", 301, "/admin/"),
        ("/admin/", 302, "/admin/login/?next=/admin/"),
        ("/admin/chat/room/", 302, "/admin/login/?next=/admin/chat/room/"),
    ],
)
def test_redirects_point_at_the_right_place(live_server, path, status, location):
    with live_server.client() as client:
        response = client.get(path)
        assert (response.status_code, response.headers.get("location")) == (status, location)
        assert client.get(location, follow_redirects=True).status_code == 200


def test_a_private_room_sends_an_anonymous_visitor_to_login(live_server):
    slug = unique("hush")
    shell(
        live_server,
        "from chat.models import Room;"
        f"Room.objects.create(slug={slug!r}, name='Hush', is_public=False)",
    )
    response = httpx.get(f"{live_server.url}/rooms/{slug}/", timeout=10)
    assert response.status_code == 302
    assert response.headers["location"] == f"/accounts/login/?next=/rooms/{slug}/"


def test_a_fresh_database_gets_the_lobby(live_server):
    assert "created the public room 'lobby'" in live_server.log()
    rooms = httpx.get(live_server.url + "/api/rooms/", timeout=10).json()["rooms"]
    lobby = [room for room in rooms if room["slug"] == "lobby"]
    assert lobby and lobby[0]["is_public"] is True


# --- accounts, admin, API permissions ---------------------------------------------------


def test_signup_through_the_form_signs_in(live_server):
    username = unique("newbie")
    with live_server.client() as client:
        assert client.get("/accounts/signup/").status_code == 200
        response = client.post(
            "/accounts/signup/",
            data={
                "username": username,
                "password1": PASSWORD,
                "password2": PASSWORD,
                "csrfmiddlewaretoken": client.cookies["csrftoken"],
            },
            headers={"Referer": live_server.url + "/accounts/signup/"},
        )
        assert response.status_code == 302, response.text[:2000]
        assert response.headers["location"] == "/"
        assert "sessionid" in client.cookies
        page = client.get("/")
        assert page.status_code == 200
        assert username in page.text
        assert "Log out" in page.text
    login_client(live_server, username, PASSWORD).close()  # the account really exists


def test_staff_creates_a_room_through_the_admin_form(live_server):
    admin_name = unique("root")
    slug = unique("made-in-admin")
    create_user(live_server, admin_name, PASSWORD, staff=True)
    with live_server.client() as client:
        client.get("/admin/login/")
        response = client.post(
            "/admin/login/",
            data={
                "username": admin_name,
                "password": PASSWORD,
                "next": "/admin/",
                "csrfmiddlewaretoken": client.cookies["csrftoken"],
            },
            headers={"Referer": live_server.url + "/admin/login/"},
        )
        assert (response.status_code, response.headers.get("location")) == (302, "/admin/")
        form = client.get("/admin/chat/room/add/")
        assert form.status_code == 200
        assert 'name="slug"' in form.text
        response = client.post(
            "/admin/chat/room/add/",
            data={
                "name": "Made in admin",
                "slug": slug,
                "description": "created through the add form",
                "is_public": "on",
                "_save": "Save",
                "csrfmiddlewaretoken": client.cookies["csrftoken"],
            },
            headers={"Referer": live_server.url + "/admin/chat/room/add/"},
        )
        assert response.status_code == 302, response.text[:3000]
        assert response.headers["location"] == "/admin/chat/room/"
    rooms = httpx.get(live_server.url + "/api/rooms/", timeout=10).json()["rooms"]
    (room,) = [room for room in rooms if room["slug"] == slug]
    assert room["name"] == "Made in admin"
    assert room["is_public"] is True
    assert httpx.get(f"{live_server.url}/rooms/{slug}/", timeout=10).status_code == 200


@pytest.fixture(scope="module")
def private_room(live_server):
    slug = unique("private")
    member, outsider = unique("member"), unique("outsider")
    create_user(live_server, member, PASSWORD)
    create_user(live_server, outsider, PASSWORD)
    shell(
        live_server,
        "from chat.models import Room; from django.contrib.auth.models import User;"
        f"r = Room.objects.create(slug={slug!r}, name='Private', is_public=False);"
        f"r.members.add(User.objects.get(username={member!r}))",
    )
    return slug, member, outsider


def test_api_history_of_a_private_room(live_server, private_room):
    slug, member, outsider = private_room
    url = f"/api/rooms/{slug}/messages/"
    anonymous = httpx.get(live_server.url + url, timeout=10)
    assert anonymous.status_code == 403
    assert anonymous.json()["error"]["code"] == "forbidden"
    with contextlib.closing(login_client(live_server, member, PASSWORD)) as client:
        response = client.get(url)
        assert response.status_code == 200
        assert response.json() == {"events": [], "has_more": False}
    with contextlib.closing(login_client(live_server, outsider, PASSWORD)) as client:
        response = client.get(url)
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "forbidden"
    unknown = httpx.get(live_server.url + "/api/rooms/no-such-room-here/messages/", timeout=10)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "not_found"


def test_api_room_list_shows_a_private_room_to_members_only(live_server, private_room):
    slug, member, outsider = private_room

    def slugs(client) -> set[str]:
        return {room["slug"] for room in client.get("/api/rooms/").json()["rooms"]}

    with live_server.client() as anonymous:
        assert "lobby" in slugs(anonymous)
        assert slug not in slugs(anonymous)
    with contextlib.closing(login_client(live_server, member, PASSWORD)) as client:
        assert slug in slugs(client)
    with contextlib.closing(login_client(live_server, outsider, PASSWORD)) as client:
        assert slug not in slugs(client)


# --- /healthz, /metrics, access log -----------------------------------------------------


def test_healthz(live_server):
    response = httpx.get(live_server.url + "/healthz", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["status"] == "ok"
    assert body["wsgi"]["threads"] == 10
    head = httpx.head(live_server.url + "/healthz", timeout=10)
    assert head.status_code == 200
    assert head.content == b""


def metric(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_metrics_count_requests_and_show_the_wsgi_pool(live_server):
    with live_server.client() as client:  # one kept-alive connection: each request is
        before = client.get("/metrics")  # finished before the next one is read
        assert before.status_code == 200
        assert before.headers["content-type"].startswith("text/plain")
        assert "parley_http_requests_total" in before.text
        assert re.search(r"^parley_wsgi_threads_busy \d", before.text, re.MULTILINE)
        assert re.search(r"^parley_wsgi_threads 10\.0$", before.text, re.MULTILINE)
        for _ in range(3):
            assert client.get("/no/such/page/").status_code == 404
        after = client.get("/metrics").text
    label = '{status="404"}'
    assert metric(after, "parley_http_requests_total", label) == (
        metric(before.text, "parley_http_requests_total", label) + 3
    )


def test_metrics_show_the_garbage_collectors_pauses(live_server):
    text = httpx.get(live_server.url + "/metrics", timeout=10).text
    assert metric(text, "parley_gc_pause_seconds_total", '{generation="0"}') > 0
    assert re.search(r'^parley_gc_pause_longest_seconds\{generation="2"\} ', text, re.MULTILINE)


def test_a_request_gets_a_common_log_format_line(live_server):
    uri = f"/api/rooms/?probe={unique('log')}"
    with live_server.client() as client:
        body = client.get(uri).content
        client.get("/healthz")  # the first request is finished before this is answered
    lines = wait_until(lambda: access_lines(live_server, uri), timeout=5)
    assert len(lines) == 1, live_server.log()[-3000:]
    line = lines[0]
    assert line.group("host", "method", "status") == ("127.0.0.1", "GET", "200")
    assert int(line.group("size")) == len(body)


def test_a_request_whose_client_closes_right_after_the_body_is_logged(slow_server):
    uri = f"/test/linger/?probe={unique('gone')}"
    request = f"GET {uri} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", slow_server.port), timeout=5) as sock:
        sock.sendall(request)
        received = b""
        while not received.endswith(b"x" * 100):
            data = sock.recv(65536)
            assert data, received
            received += data
    assert received.startswith(b"HTTP/1.1 200 ")
    assert wait_until(lambda: access_lines(slow_server, uri), timeout=3)


# --- request bodies over MAX_REQUEST_BYTES (2048 on slow_server) -----------------------


def test_413_for_a_declared_length_without_reading_the_body(slow_server):
    refused_before = metric(
        httpx.get(slow_server.url + "/metrics", timeout=10).text,
        "parley_http_refused_bodies_total",
    )
    head = (
        b"POST /api/rooms/?probe=413 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/octet-stream\r\nContent-Length: 4096\r\n\r\n"
    )
    raw = raw_exchange(slow_server, [head])  # the body is never sent
    status, headers, body = parse_response(raw)
    assert status == 413
    assert headers["connection"] == "close"
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["error"]["code"] == "too_large"
    metrics_text = httpx.get(slow_server.url + "/metrics", timeout=10).text
    assert metric(metrics_text, "parley_http_refused_bodies_total") == refused_before + 1
    assert wait_until(
        lambda: [
            m
            for m in access_lines(slow_server, "/api/rooms/?probe=413")
            if m.group("status") == "413"
        ],
        timeout=3,
    )


def test_413_with_expect_continue_sends_no_100_continue(slow_server):
    head = (
        b"POST /api/rooms/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Length: 100000000\r\nExpect: 100-continue\r\n\r\n"
    )
    raw = raw_exchange(slow_server, [head])
    assert raw.startswith(b"HTTP/1.1 413 ")
    assert b"100 Continue" not in raw


def test_413_for_a_chunked_body_over_the_limit(slow_server):
    head = b"POST /api/rooms/ HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"400\r\n" + b"c" * 1024 + b"\r\n"
    raw = raw_exchange(slow_server, [head, chunk, chunk, chunk])  # 3 KiB, no last chunk
    status, _, body = parse_response(raw)
    assert status == 413
    assert json.loads(body)["error"]["code"] == "too_large"


def test_bodies_up_to_the_limit_reach_django(slow_server):
    with slow_server.client() as client:
        # /api/rooms/ answers POST with its JSON 405: proof that Django got the request.
        at_limit = client.post("/api/rooms/", content=b"a" * 2048)
        assert at_limit.status_code == 405
        assert at_limit.json()["error"]["code"] == "bad_request"

        def two_chunks():
            yield b"a" * 1000
            yield b"b" * 1000

        assert client.post("/api/rooms/", content=two_chunks()).status_code == 405
        over = client.post("/api/rooms/", content=b"a" * 2049)
        assert over.status_code == 413
        assert over.json()["error"]["code"] == "too_large"


# --- forwarded headers ------------------------------------------------------------------


def meta(server: ServerProcess, headers: dict[str, str]) -> dict:
    response = httpx.get(server.url + "/test/meta/", headers=headers, timeout=10)
    assert response.status_code == 200
    return response.json()


def test_django_sees_empty_script_name_and_the_full_path(slow_server):
    seen = meta(slow_server, {})
    assert (seen["SCRIPT_NAME"], seen["PATH_INFO"], seen["path"]) == (
        "",
        "/test/meta/",
        "/test/meta/",
    )


def test_untrusted_peer_cannot_set_forwarded_headers(slow_server):
    seen = meta(
        slow_server,
        {
            "X_Forwarded_For": "6.6.6.6",
            "X-Forwarded-For": "203.0.113.7",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "evil.example",
            "X-Custom": "kept",
        },
    )
    headers = seen["headers"]
    assert "HTTP_X_FORWARDED_FOR" not in headers
    assert "HTTP_X_FORWARDED_PROTO" not in headers
    assert "HTTP_X_FORWARDED_HOST" not in headers
    assert headers["HTTP_X_CUSTOM"] == "kept"  # the view does echo headers
    assert seen["REMOTE_ADDR"] == "127.0.0.1"
    assert seen["is_secure"] is False


def test_underscore_header_alone_does_not_reach_django(slow_server):
    headers = meta(slow_server, {"X_Forwarded_For": "6.6.6.6", "Foo_Bar": "1"})["headers"]
    assert "HTTP_X_FORWARDED_FOR" not in headers
    assert "HTTP_FOO_BAR" not in headers


def test_trusted_proxy_forwarded_headers_are_believed(trusted_server):
    seen = meta(
        trusted_server,
        {
            "X-Forwarded-For": "203.0.113.7",
            "X_Forwarded_For": "6.6.6.6",
            "X-Forwarded-Proto": "https",
        },
    )
    assert seen["headers"]["HTTP_X_FORWARDED_FOR"] == "203.0.113.7"
    assert seen["headers"]["HTTP_X_FORWARDED_PROTO"] == "https"
    assert seen["is_secure"] is True
    assert seen["absolute_uri"].startswith("https://")


def test_trusted_proxy_requests_keep_the_connection_and_log_the_client(trusted_server):
    uri = f"/test/meta/?probe={unique('proxy')}"
    with trusted_server.client(timeout=3) as client:
        headers = {"X-Forwarded-For": "198.51.100.1, 203.0.113.7"}
        assert client.get(uri, headers=headers).status_code == 200
        assert client.get("/healthz", headers=headers).status_code == 200
    lines = wait_until(lambda: access_lines(trusted_server, uri), timeout=3)
    assert [line.group("host") for line in lines] == ["203.0.113.7"]


# --- a busy WSGI pool does not hold up native resources ---------------------------------


def test_health_and_static_answer_while_every_wsgi_thread_is_busy(slow_server):
    results: list[int] = []

    def slow_request():
        with httpx.Client(timeout=30) as client:
            results.append(client.get(slow_server.url + "/test/slow/?seconds=4").status_code)

    workers = [threading.Thread(target=slow_request) for _ in range(3)]  # 2 threads + 1 queued
    for worker in workers:
        worker.start()
    with slow_server.client(timeout=3) as client:

        def pool_full():
            wsgi = client.get("/healthz").json()["wsgi"]
            return wsgi["busy"] == 2 and wsgi["queued"] >= 1

        assert wait_until(pool_full, timeout=3), client.get("/healthz").json()
        started = time.monotonic()
        health = client.get("/healthz")
        static = client.get("/static/admin/css/base.css")
        metrics_text = client.get("/metrics").text
        elapsed = time.monotonic() - started
    assert health.status_code == 200
    assert static.status_code == 200
    assert static.headers["content-type"].startswith("text/css")
    assert re.search(r"^parley_wsgi_threads_busy 2\.0$", metrics_text, re.MULTILINE)
    assert re.search(r"^parley_wsgi_queued [1-9]", metrics_text, re.MULTILINE)
    assert all(worker.is_alive() for worker in workers), "the slow requests ended too early"
    assert elapsed < 2, f"native resources waited {elapsed:.1f}s behind the WSGI pool"
    for worker in workers:
        worker.join(20)
    assert results == [200, 200, 200]


# --- a response whose iterator fails ---------------------------------------------------


def signal_counts(server: ServerProcess) -> dict[str, int]:
    with server.client() as client:
        return client.get("/test/finished-count/").json()


def test_a_failing_stream_is_cut_closed_and_the_server_goes_on(slow_server):
    def settled():
        # The count request itself has started but not yet finished.
        counts = signal_counts(slow_server)
        return counts if counts["started"] - counts["finished"] == 1 else None

    before = wait_until(settled, timeout=5)
    assert before, signal_counts(slow_server)
    log_start = len(slow_server.log())
    with pytest.raises(httpx.RemoteProtocolError):  # a chunked body that never ends
        httpx.get(slow_server.url + "/test/stream-fail/", timeout=10)
    # Django's request_finished (which returns the thread's database connection) ran for
    # the failed stream too: started and finished advance together.
    after = wait_until(settled, timeout=5)
    assert after, signal_counts(slow_server)
    assert after["started"] == before["started"] + 2  # stream-fail + this count request
    with slow_server.client() as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/").status_code == 200
        assert client.get("/test/slow/?seconds=0").status_code == 200  # WSGI threads fine
    new_log = slow_server.log()[log_start:]
    assert new_log.count("stream-fail: the iterator broke on purpose") >= 1
    assert not re.search(r"Unhandled|leak|still running|database is locked", new_log)


# --- graceful shutdown ------------------------------------------------------------------


def test_sigterm_lets_an_in_flight_request_finish_then_exits_0(make_server, shared_static):
    server = make_server(env={**SLOW_SITE_ENV, **shared_static}, name="graceful")
    outcome: dict = {}

    def slow_request():
        try:
            response = httpx.get(server.url + "/test/slow/?seconds=2", timeout=15)
            outcome["status"], outcome["body"] = response.status_code, response.text
        except httpx.HTTPError as exc:  # reported by the assert below
            outcome["error"] = repr(exc)
        outcome["at"] = time.monotonic()

    keep_alive = server.client(timeout=5)
    assert keep_alive.get("/healthz").json()["status"] == "ok"  # opens the connection
    worker = threading.Thread(target=slow_request)
    worker.start()
    assert wait_until(lambda: keep_alive.get("/healthz").json()["wsgi"]["busy"] == 1, timeout=3)
    server.proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()

    def refused() -> bool:
        try:
            socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
        except ConnectionRefusedError:
            return True
        return False

    assert wait_until(refused, timeout=1.5), "new connections still accepted after SIGTERM"
    refused_at = time.monotonic()
    # A connection opened before the signal may still ask, and hears "draining" (a load
    # balancer's health check stops sending traffic on that).
    during = keep_alive.get("/healthz")
    assert (during.status_code, during.json()["status"]) == (503, "draining")
    keep_alive.close()

    worker.join(15)
    assert outcome.get("status") == 200, outcome
    assert outcome["body"].startswith("slept 2")
    assert refused_at < outcome["at"], "the port was still open until the request ended"
    assert server.proc.wait(15) == 0
    assert outcome["at"] - signalled > 1.0  # it really was in flight when the signal came
    assert "drained" in server.log()


def slow_request_in_background(server: ServerProcess, seconds: float, timeout: float = 30):
    def run():
        # Cut by the shutdown or given up by this client: both are expected here.
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(f"{server.url}/test/slow/?seconds={seconds}", timeout=timeout)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    return worker


def wait_for_exit(server: ServerProcess, timeout: float) -> int | None:
    try:
        return server.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return None  # make_server kills it afterwards


def test_a_request_longer_than_the_grace_period_does_not_hold_the_exit(make_server, shared_static):
    server = make_server(
        env={**SLOW_SITE_ENV, **shared_static}, args=["--grace", "1"], name="grace"
    )
    slow_request_in_background(server, seconds=3)
    with server.client(timeout=3) as client:
        assert wait_until(lambda: client.get("/healthz").json()["wsgi"]["busy"] == 1, timeout=3)
    server.proc.send_signal(signal.SIGTERM)
    assert wait_for_exit(server, timeout=7) == 0, server.log()[-2000:]
    assert "1 request(s) still running after 1.0s" in server.log()


def test_a_request_its_client_gave_up_on_does_not_hang_the_shutdown(make_server, shared_static):
    server = make_server(env={**SLOW_SITE_ENV, **shared_static}, name="abandoned")
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(server.url + "/test/slow/?seconds=3", timeout=0.5)
    with server.client(timeout=3) as client:
        assert client.get("/healthz").json()["wsgi"]["busy"] == 1  # still rendering
    server.proc.send_signal(signal.SIGTERM)
    assert wait_for_exit(server, timeout=8) == 0, server.log()[-2000:]


# --- serve.py command line --------------------------------------------------------------


def run_serve(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    environ.update({"DJANGO_SECRET_KEY": "serve-cli-tests-key", **(env or {})})
    return subprocess.run(
        [sys.executable, str(REPO / "serve.py"), *args],
        cwd=REPO,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_serve_help_explains_the_flags():
    done = run_serve("--help")
    assert done.returncode == 0
    for flag in (
        "--host",
        "--port",
        "--threads",
        "--workers",
        "--grace",
        "--no-migrate",
        "--no-collectstatic",
    ):
        assert flag in done.stdout
    assert "REDIS_URL" in done.stdout
    assert "WSGI" in done.stdout


def test_serve_workers_without_redis_url_exits_non_zero_naming_redis_url(tmp_path):
    done = run_serve(
        "--workers",
        "2",
        "--port",
        "0",
        env={"DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "STATIC_ROOT": str(tmp_path)},
    )
    assert done.returncode != 0
    assert "REDIS_URL" in done.stderr
    assert "serving on" not in done.stdout
    assert not (tmp_path / "db.sqlite3").exists()  # refused before touching anything
