"""``serve.py --workers N`` with --tls-cert and --endpoint: the supervisor opens each
socket once (a TCP port, a UNIX path, systemd's socket) and every worker serves on it,
wrapping TLS itself."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import subprocess
import sys
import textwrap
import time
import uuid

import httpx
import pytest
from parley_testing import REPO, create_user, login_client
from scale_support import kill_tree, wait_workers
from tls_testing import AnyServer, client_context, make_certificate
from websockets.asyncio.client import connect

pytestmark = pytest.mark.scale
PASSWORD = "correct-horse-battery-staple"


@pytest.fixture
def workers_server(tmp_path, redis_namespace):
    """``workers_server(args)``: serve.py --workers 2 on SQLite and the test's Redis."""
    servers: list[AnyServer] = []

    def make(args: list[str], launcher: list[str] | None = None, pass_fds=()) -> AnyServer:
        env = {"REDIS_URL": redis_namespace.url, "CHAT_REDIS_PREFIX": redis_namespace.prefix}
        server = AnyServer(tmp_path / f"server-{len(servers)}", env=env, args=args)
        server.pass_fds = pass_fds
        servers.append(server)
        if launcher is None:
            server.start()
        else:
            start_through(server, launcher)
        return server

    yield make
    for server in servers:
        kill_tree(server)


def start_through(server: AnyServer, launcher: list[str]) -> None:
    with open(server.log_path, "ab") as log:
        server.proc = subprocess.Popen(
            [*launcher, *server.args],
            cwd=REPO,
            env=server.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=server.pass_fds,
        )
    deadline = time.monotonic() + 60
    while "Parley is serving on" not in server.log():
        assert server.proc.poll() is None, server.log()
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)


async def wss_ack(url: str, cookie: str, context: ssl.SSLContext) -> dict:
    async with connect(url, ssl=context, additional_headers={"Cookie": cookie}) as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "hello"
        client_id = f"c-{uuid.uuid4().hex[:8]}"
        await ws.send(json.dumps({"type": "send", "body": "hi", "client_id": client_id}))
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if frame["type"] in ("ack", "error") and frame.get("client_id") == client_id:
                return frame


def test_workers_serve_tls_from_one_port(workers_server, tmp_path):
    cert, key = make_certificate(tmp_path / "tls")
    server = workers_server(
        ["--workers", "2", "--port", "0", "--tls-cert", str(cert), "--tls-key", str(key)]
    )
    assert server.url.startswith("https://127.0.0.1:"), server.addresses
    wait_workers(server, 2)
    context = client_context(cert)
    server.verify = context
    # New connections each time, so both workers' accept loops answer some.
    for _ in range(20):
        response = httpx.get(server.url + "/healthz", verify=context, timeout=10)
        assert response.json()["status"] == "ok"
    create_user(server, "wendy", PASSWORD)
    user = login_client(server, "wendy", PASSWORD)
    cookie = "; ".join(f"{name}={value}" for name, value in user.cookies.items())
    user.close()
    wss = server.url.replace("https://", "wss://") + "/ws/rooms/lobby/"
    assert asyncio.run(wss_ack(wss, cookie, context))["type"] == "ack"
    assert server.stop() == 0, server.log()[-3000:]
    assert server.log().count("drained") >= 2


def test_workers_share_a_unix_socket_and_a_tcp_endpoint(workers_server, tmp_path):
    path = tmp_path / "parley.sock"
    server = workers_server(
        [
            "--workers",
            "2",
            "--endpoint",
            "tcp:0:interface=127.0.0.1",
            "--endpoint",
            f"unix:{path}:lockfile=1",
        ]
    )
    assert server.addresses[1] == f"unix:{path}", server.addresses
    wait_workers(server, 2)
    transport = httpx.HTTPTransport(uds=str(path))
    with httpx.Client(transport=transport, base_url="http://localhost", timeout=10) as client:
        for _ in range(10):
            assert client.get("/healthz").json()["status"] == "ok"
        assert client.get("/").status_code == 200
    assert httpx.get(server.url + "/healthz", timeout=10).json()["status"] == "ok"
    assert server.stop() == 0, server.log()[-3000:]
    assert "Traceback" not in server.log(), server.log()[-3000:]
    assert not path.exists(), "the supervisor removes the socket's path when it stops"
    assert not (tmp_path / "parley.sock.lock").exists()


def test_a_unix_socket_in_use_by_a_live_server_is_refused(workers_server, tmp_path):
    path = tmp_path / "parley.sock"
    workers_server(["--workers", "2", "--endpoint", f"unix:{path}:lockfile=1"])
    second = AnyServer(
        tmp_path / "second",
        env={"REDIS_URL": "redis://127.0.0.1:9/0"},
        args=["--workers", "2", "--endpoint", f"unix:{path}:lockfile=1", "--no-collectstatic"],
    )
    with pytest.raises(RuntimeError, match=r"parley\.sock\.lock is held by a running process"):
        second.start()
    assert second.proc.returncode == 1


def test_workers_serve_tls_on_a_socket_from_systemd(workers_server, tmp_path):
    cert, key = make_certificate(tmp_path / "tls")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    launcher = tmp_path / "activate.py"
    launcher.write_text(
        textwrap.dedent(
            f"""
            import os, sys
            os.dup2({sock.fileno()}, 3)
            os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()),
                              LISTEN_FDNAMES="parley")
            os.execv(sys.executable, [sys.executable, {str(REPO / "serve.py")!r}, *sys.argv[1:]])
            """
        )
    )
    try:
        server = workers_server(
            [
                "--workers",
                "2",
                "--endpoint",
                "systemd:domain=INET:name=parley",
                "--tls-cert",
                str(cert),
                "--tls-key",
                str(key),
            ],
            launcher=[sys.executable, str(launcher)],
            pass_fds=(sock.fileno(),),
        )
    finally:
        sock.close()
    assert f"https://127.0.0.1:{port}/ (inherited fd 3)" in server.log()
    wait_workers(server, 2)
    for _ in range(10):
        response = httpx.get(
            f"https://127.0.0.1:{port}/healthz", verify=client_context(cert), timeout=10
        )
        assert response.json()["status"] == "ok"
    assert server.stop() == 0, server.log()[-3000:]
