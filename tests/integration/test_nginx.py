"""Debian's nginx in front of Parley with docs/nginx.conf, chatting through it.

nginx terminates TLS and proxies to a plain-HTTP Parley that trusts it
(TRUSTED_PROXIES=127.0.0.1, PARLEY_HTTPS=1). Through nginx: log in, send over a WebSocket,
receive it on an event stream and a long-poll, as fast as Parley sends it (nothing
buffered). The configuration is the file docs/ ships, with only its addresses, ports and
paths changed, each change checked to have happened.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest
from parley_testing import REPO, create_user
from tls_testing import client_context, make_certificate
from websockets.asyncio.client import connect

PASSWORD = "correct-horse-battery-staple"
CONFIG = REPO / "docs" / "nginx.conf"


def find_nginx() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if found:
        return found
    if os.geteuid() != 0:
        pytest.skip("nginx is not installed and this is not root: run scripts/install-nginx.sh")
    pytest.fail("nginx is not installed: run scripts/install-nginx.sh (CI's .ci/run does)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def site_config(parley_port: int, http_port: int, https_port: int, cert: Path, key: Path) -> str:
    text = CONFIG.read_text()
    changes = [
        ("server 127.0.0.1:8000;", f"server 127.0.0.1:{parley_port};"),
        ("    listen 80;\n", f"    listen 127.0.0.1:{http_port};\n"),
        ("    listen [::]:80;\n", ""),
        ("    listen 443 ssl;\n", f"    listen 127.0.0.1:{https_port} ssl;\n"),
        ("    listen [::]:443 ssl;\n", ""),
        ("/etc/ssl/parley/fullchain.pem", str(cert)),
        ("/etc/ssl/parley/privkey.pem", str(key)),
        ("server_name chat.example.com;", "server_name 127.0.0.1 localhost;"),
    ]
    for old, new in changes:
        assert old in text, f"docs/nginx.conf no longer has {old!r}: update this test"
        text = text.replace(old, new)
    return text


@pytest.fixture
def nginx_front(make_server, tmp_path):
    """Parley behind nginx: yields (server, https base URL, http base URL, cert path)."""
    nginx = find_nginx()
    server = make_server(
        env={
            "TRUSTED_PROXIES": "127.0.0.1",
            "PARLEY_HTTPS": "1",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        }
    )
    cert, key = make_certificate(tmp_path / "tls")
    http_port, https_port = free_port(), free_port()
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    (prefix / "parley.conf").write_text(site_config(server.port, http_port, https_port, cert, key))
    # What the Debian package's nginx.conf provides around conf.d/, with every path in
    # the test's directory; as root the workers keep root's user so they can use it.
    (prefix / "nginx.conf").write_text(
        f"""
        {"user root;" if os.geteuid() == 0 else ""}
        worker_processes 1;
        pid {prefix}/nginx.pid;
        error_log {prefix}/error.log info;
        events {{ worker_connections 256; }}
        http {{
            access_log {prefix}/access.log;
            client_body_temp_path {prefix}/client_body;
            proxy_temp_path {prefix}/proxy;
            fastcgi_temp_path {prefix}/fastcgi;
            uwsgi_temp_path {prefix}/uwsgi;
            scgi_temp_path {prefix}/scgi;
            include {prefix}/parley.conf;
        }}
        """
    )
    proc = subprocess.Popen(
        [
            nginx,
            "-p",
            str(prefix),
            "-c",
            str(prefix / "nginx.conf"),
            "-e",
            str(prefix / "error.log"),
            "-g",
            "daemon off;",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            assert proc.poll() is None, proc.stdout.read().decode(errors="replace")
            try:
                socket.create_connection(("127.0.0.1", https_port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, (prefix / "error.log").read_text()
                time.sleep(0.05)
        yield server, f"https://127.0.0.1:{https_port}", f"http://127.0.0.1:{http_port}", cert
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_chat_through_nginx(nginx_front):
    server, base, plain, cert = nginx_front
    create_user(server, "nina", PASSWORD)
    context = client_context(cert)
    client = httpx.Client(base_url=base, verify=context, timeout=10)

    # Plain HTTP to nginx is sent to HTTPS; Parley's own plain port redirects pages too,
    # but answers /healthz (for a load balancer) as it is.
    moved = httpx.get(plain + "/rooms/lobby/", timeout=10)
    assert moved.status_code == 301 and moved.headers["location"].startswith("https://")
    assert httpx.get(server.url + "/").status_code == 301
    assert httpx.get(server.url + "/healthz").json()["status"] == "ok"

    # Through nginx: HTTPS as far as Django knows (X-Forwarded-Proto from a trusted proxy).
    assert client.get("/healthz").json()["status"] == "ok"
    page = client.get("/accounts/login/")
    assert page.status_code == 200
    assert "max-age=" in page.headers["strict-transport-security"]
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/metrics").status_code == 404, "nginx keeps /metrics off the public name"
    logged_in = client.post(
        "/accounts/login/",
        data={
            "username": "nina",
            "password": PASSWORD,
            "csrfmiddlewaretoken": client.cookies["csrftoken"],
        },
        headers={"Referer": base + "/accounts/login/"},
    )
    assert logged_in.status_code == 302, logged_in.text[:2000]
    session = next(c for c in client.cookies.jar if c.name == "sessionid")
    assert session.secure
    cookie = "; ".join(f"{name}={value}" for name, value in client.cookies.items())

    # The client's own X-Forwarded-For is not believed: Parley logs the address nginx saw.
    marker = f"/healthz?who={uuid.uuid4().hex}"
    client.get(marker, headers={"X-Forwarded-For": "203.0.113.77"})

    body = f"through nginx {uuid.uuid4().hex[:8]}"
    events, polled, ack = asyncio.run(chat(base, cookie, context, body))
    assert ack["type"] == "ack", ack
    assert [e["body"] for e in events if e["type"] == "message"] == [body]
    assert [e["body"] for e in polled if e["type"] == "message"] == [body]
    client.close()

    deadline = time.monotonic() + 5
    while marker not in server.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    (line,) = [line for line in server.log().splitlines() if marker in line]
    assert "127.0.0.1 - -" in line and "203.0.113.77" not in line, line
    assert "Traceback" not in server.log(), server.log()[-3000:]


async def chat(base: str, cookie: str, context, body: str) -> tuple[list, list, dict]:
    """Open an event stream and a long-poll, then send ``body`` over a WebSocket; each must
    get it within seconds, which a buffering proxy would not allow (it would wait for a
    full buffer or the end of the response)."""
    headers = {"Cookie": cookie}
    origin = base  # a browser on the page sends its own origin
    async with (
        httpx.AsyncClient(base_url=base, verify=context, timeout=30) as http,
        connect(
            base.replace("https://", "wss://") + "/ws/rooms/lobby/",
            ssl=context,
            additional_headers={**headers, "Origin": origin},
        ) as ws,
    ):
        hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert hello["type"] == "hello" and hello["user"] == "nina", hello
        since = hello["last_seq"]
        stream_ready = asyncio.Event()
        seen: list[dict] = []

        async def read_stream() -> None:
            async with http.stream(
                "GET", f"/events/rooms/lobby/?since={since}", headers=headers
            ) as stream:
                assert stream.status_code == 200
                assert stream.headers["content-type"].startswith("text/event-stream")
                stream_ready.set()
                async for line in stream.aiter_lines():
                    if line.startswith("data:"):
                        event = json.loads(line[5:])
                        seen.append(event)
                        if event["type"] == "message":
                            return

        async def long_poll() -> list[dict]:
            answer = await http.get(
                f"/poll/rooms/lobby/?since={since}&timeout=20", headers=headers
            )
            assert answer.status_code == 200, answer.text
            return answer.json()["events"]

        reader = asyncio.create_task(read_stream())
        poller = asyncio.create_task(long_poll())
        await asyncio.wait_for(stream_ready.wait(), 10)
        await asyncio.sleep(0.5)  # the long-poll is held by now
        client_id = f"c-{uuid.uuid4().hex[:8]}"
        await ws.send(json.dumps({"type": "send", "body": body, "client_id": client_id}))
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if frame["type"] in ("ack", "error") and frame.get("client_id") == client_id:
                break
        await asyncio.wait_for(reader, 5)
        polled = await asyncio.wait_for(poller, 5)
        return seen, polled, frame
