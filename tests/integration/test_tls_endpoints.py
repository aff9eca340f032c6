"""serve.py's listeners: HTTPS and WSS served directly (--tls-cert/--tls-key), Twisted
endpoint strings (--endpoint: tcp, unix, ssl, systemd socket activation, a plugin's), and
every way of getting them wrong stopping start-up with a message that says what."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import httpx
import pytest
from parley_testing import REPO, create_user, login_client
from tls_testing import AnyServer, client_context, make_certificate, run_serve
from websockets.asyncio.client import connect

PASSWORD = "correct-horse-battery-staple"


def base_env(workdir: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}",
        "STATIC_ROOT": str(workdir / "static"),
        "DJANGO_SECRET_KEY": "parley-tests-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


@pytest.fixture
def any_server(tmp_path):
    """``any_server(args, env=None, pass_fds=())``: serve.py announcing any address."""
    servers: list[AnyServer] = []

    def make(args: list[str], env: dict[str, str] | None = None, pass_fds=()) -> AnyServer:
        server = AnyServer(tmp_path / f"server-{len(servers)}", env=env, args=args)
        server.pass_fds = pass_fds
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.kill()


async def ws_chat(url: str, cookie: str, context: ssl.SSLContext | None, body: str) -> dict:
    """Open a live room over (w)ss, send ``body``, return the ack."""
    async with connect(
        url, ssl=context, additional_headers={"Cookie": cookie}, open_timeout=10
    ) as ws:
        hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert hello["type"] == "hello", hello
        client_id = f"c-{uuid.uuid4().hex[:8]}"
        await ws.send(json.dumps({"type": "send", "body": body, "client_id": client_id}))
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if frame["type"] in ("ack", "error") and frame.get("client_id") == client_id:
                return frame


def cookie_header(client: httpx.Client) -> str:
    return "; ".join(f"{name}={value}" for name, value in client.cookies.items())


def test_https_and_wss_served_directly(any_server, tmp_path):
    cert, key = make_certificate(tmp_path / "tls")
    server = any_server(
        ["--port", "0", "--tls-cert", str(cert), "--tls-key", str(key)],
        env={"PARLEY_HTTPS": "1"},
    )
    assert server.url.startswith("https://127.0.0.1:"), server.addresses
    create_user(server, "tina", PASSWORD)
    context = client_context(cert)
    server.verify = context

    with server.client() as client:
        health = client.get("/healthz")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        page = client.get("/")
        # Served over TLS, so PARLEY_HTTPS's redirect does not apply and HSTS is sent.
        assert page.status_code == 200, page.text[:500]
        assert "max-age=" in page.headers["strict-transport-security"]
        assert "script-src 'self'" in page.headers["content-security-policy"]

    user = login_client(server, "tina", PASSWORD)
    session_cookie = next(c for c in user.cookies.jar if c.name == "sessionid")
    assert session_cookie.secure, "PARLEY_HTTPS=1 sets the session cookie Secure"
    wss = server.url.replace("https://", "wss://") + "/ws/rooms/lobby/"
    ack = asyncio.run(ws_chat(wss, cookie_header(user), context, "over wss"))
    assert ack["type"] == "ack" and ack["seq"] >= 1, ack
    history = user.get("/api/rooms/lobby/messages/").json()
    assert "over wss" in json.dumps(history)
    user.close()

    # The TLS port speaks TLS only: a plain-HTTP request gets no HTTP answer.
    port = int(server.url.rsplit(":", 1)[1])
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    # A client that does not trust the certificate is refused by its own check.
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url + "/healthz", timeout=5)
    assert server.stop() == 0


def test_tls_flags_put_tls_on_every_endpoint(any_server, tmp_path):
    cert, key = make_certificate(tmp_path / "tls")
    server = any_server(
        [
            "--endpoint",
            "tcp:0:interface=127.0.0.1",
            "--endpoint",
            "tcp:0:interface=127.0.0.1",
            "--tls-cert",
            str(cert),
            "--tls-key",
            str(key),
        ]
    )
    assert len(server.addresses) == 2, server.addresses
    for address in server.addresses:
        assert address.startswith("https://127.0.0.1:"), server.addresses
        response = httpx.get(address + "healthz", verify=client_context(cert), timeout=10)
        assert response.json()["status"] == "ok"
    assert server.stop() == 0


def test_ssl_endpoint_and_unix_socket_together(any_server, tmp_path):
    cert, key = make_certificate(tmp_path / "tls")
    path = tmp_path / "parley.sock"
    server = any_server(
        [
            "--endpoint",
            f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}",
            "--endpoint",
            f"unix:{path}:mode=600",
        ]
    )
    https_url, unix_address = server.addresses
    assert https_url.startswith("https://127.0.0.1:") and unix_address == f"unix:{path}"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    with httpx.Client(verify=client_context(cert), timeout=10) as client:
        assert client.get(https_url + "healthz").json()["status"] == "ok"
    over_unix = httpx.Client(
        transport=httpx.HTTPTransport(uds=str(path)), base_url="http://localhost", timeout=10
    )
    with over_unix:
        assert over_unix.get("/healthz").json()["status"] == "ok"
        # A Django page over the UNIX socket: Twisted's WSGI bridge needs an IP peer,
        # which serve.py gives it (loopback).
        page = over_unix.get("/")
        assert page.status_code == 200 and "Rooms" in page.text
    assert server.stop() == 0
    assert "Traceback" not in server.log(), server.log()[-3000:]
    assert not path.exists(), "the UNIX socket is removed when the server stops"


def test_systemd_socket_activation(any_server, tmp_path):
    """systemd passes a listening socket as fd 3 with LISTEN_FDS/LISTEN_PID; serve.py
    adopts it with ``--endpoint systemd:domain=INET:index=0``."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    # As systemd does: the socket at fd 3, LISTEN_PID the pid that execs serve.py, and the
    # socket's name (FileDescriptorName=, the unit's name by default) in LISTEN_FDNAMES.
    launcher = tmp_path / "activate.py"
    launcher.write_text(
        textwrap.dedent(
            f"""
            import os, sys
            os.dup2({sock.fileno()}, 3)
            os.environ["LISTEN_FDS"] = "1"
            os.environ["LISTEN_PID"] = str(os.getpid())
            os.environ["LISTEN_FDNAMES"] = "parley"
            os.execv(sys.executable, [sys.executable, {str(REPO / "serve.py")!r}, *sys.argv[1:]])
            """
        )
    )
    server = AnyServer(tmp_path / "activated", args=["--endpoint", "systemd:domain=INET:index=0"])
    with open(server.log_path, "ab") as log:
        server.proc = subprocess.Popen(
            [sys.executable, str(launcher), *server.args],
            cwd=REPO,
            env=server.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(sock.fileno(),),
        )
    try:
        sock.close()  # only the server holds it now
        deadline = time.monotonic() + 60
        while "Parley is serving on" not in server.log():
            assert server.proc.poll() is None, server.log()
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.05)
        assert f"http://127.0.0.1:{port}/" in server.log()
        response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
        assert response.json()["status"] == "ok"
        assert server.stop() == 0
    finally:
        server.kill()


PLUGIN = '''
"""A Twisted endpoint plugin whose listen() fires later, as some plugins' do."""
from twisted.internet import defer, endpoints
from twisted.internet.interfaces import IStreamServerEndpoint, IStreamServerEndpointStringParser
from twisted.plugin import IPlugin
from zope.interface import implementer


@implementer(IStreamServerEndpoint)
class Later:
    def __init__(self, reactor, port):
        self.reactor, self.port = reactor, int(port)

    def listen(self, factory):
        done = defer.Deferred()
        inner = endpoints.TCP4ServerEndpoint(self.reactor, self.port, interface="127.0.0.1")
        self.reactor.callLater(0.3, lambda: inner.listen(factory).chainDeferred(done))
        return done


@implementer(IPlugin, IStreamServerEndpointStringParser)
class LaterParser:
    prefix = "later"

    def parseStreamServer(self, reactor, port):
        return Later(reactor, port)


later = LaterParser()
'''


@pytest.fixture
def later_plugin(tmp_path) -> Path:
    """A directory to put on PYTHONPATH that adds the ``later:PORT`` endpoint type."""
    plugins = tmp_path / "plugins" / "twisted" / "plugins"
    plugins.mkdir(parents=True)
    (plugins / "parley_test_later.py").write_text(PLUGIN)
    return tmp_path / "plugins"


def test_an_endpoint_that_listens_later_is_served_and_its_failure_reported(
    any_server, later_plugin, tmp_path
):
    env = {"PYTHONPATH": str(later_plugin)}
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    server = any_server(["--endpoint", f"later:{free}"], env=env)
    assert server.addresses == [f"http://127.0.0.1:{free}/"]
    assert httpx.get(server.url + "/healthz", timeout=10).json()["status"] == "ok"
    assert server.stop() == 0

    # Listening fails only once the reactor runs: reported, and the exit code says so.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        busy = taken.getsockname()[1]
        done = run_serve(
            ["--endpoint", f"later:{busy}", "--no-migrate", "--no-collectstatic"],
            base_env(tmp_path / "server-0", **env),
        )
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"--endpoint 'later:{busy}'" in done.stderr and "Address already in use" in (
        done.stderr
    )
    # ... and such an endpoint cannot be shared by workers: refused before anything starts.
    done = run_serve(
        ["--workers", "2", "--endpoint", f"later:{free}"],
        base_env(tmp_path / "refused", REDIS_URL="redis://127.0.0.1:9/0", **env),
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "cannot be shared by --workers" in done.stderr
    assert not (tmp_path / "refused" / "db.sqlite3").exists(), "refused before migrating"


@pytest.fixture(scope="module")
def bad_tls_files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad-tls")
    cert, key = make_certificate(root, "good")
    _other_cert, other_key = make_certificate(root, "other")
    garbage = root / "garbage.pem"
    garbage.write_text(
        "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n"
    )
    return {"cert": cert, "key": key, "other_key": other_key, "garbage": garbage, "root": root}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tls-cert", "{root}/missing.pem", "--tls-key", "{key}"], "missing.pem: No such file"),
        (["--tls-cert", "{cert}", "--tls-key", "{root}/missing.pem"], "missing.pem: No such file"),
        (["--tls-cert", "{cert}"], "--tls-cert and --tls-key must be given together"),
        (["--tls-key", "{key}"], "--tls-cert and --tls-key must be given together"),
        (
            ["--tls-cert", "{cert}", "--tls-key", "{other_key}"],
            "is not the key of the certificate",
        ),
        (["--tls-cert", "{key}", "--tls-key", "{key}"], "no PEM certificate"),
        (["--tls-cert", "{garbage}", "--tls-key", "{key}"], "no PEM certificate"),
        (["--tls-cert", "{cert}", "--tls-key", "{cert}"], "not a PEM private key"),
        (
            [
                "--endpoint",
                "ssl:0:privateKey={key}:certKey={cert}",
                "--tls-cert",
                "{cert}",
                "--tls-key",
                "{key}",
            ],
            "would make it TLS twice",
        ),
        (["--endpoint", "tcp:0", "--tls-cert", "{cert}"], "must be given together"),
        (["--endpoint", "bogus:8000"], "Unknown endpoint type: 'bogus'"),
        (["--endpoint", "tcp:notaport"], "--endpoint 'tcp:notaport'"),
        (["--endpoint", "tcp:8000:colour=blue"], "unexpected keyword argument 'colour'"),
        (["--endpoint", ""], "--endpoint ''"),
        (["--endpoint", "ssl:0:privateKey={root}/missing.pem"], "No such file"),
        (["--endpoint", "systemd:domain=INET:index=0"], "systemd passed this process no such"),
        (["--endpoint", "systemd:domain=INET:index=0:name=x"], "exactly one of descriptor"),
        (["--endpoint", "systemd:domain=NOPE:index=0"], "--endpoint 'systemd:domain=NOPE"),
        (["--port", "70000"], "must be 0 to 65535"),
        (["--port", "-1"], "must be 0 to 65535"),
    ],
)
def test_bad_listener_flags_stop_start_up_with_a_clear_error(
    args, message, bad_tls_files, tmp_path
):
    filled = [arg.format(**bad_tls_files) for arg in args]
    done = run_serve(filled, base_env(tmp_path))
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "db.sqlite3").exists(), "refused before migrating"


def test_a_port_in_use_is_a_clear_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = run_serve(["--port", str(port), "--no-collectstatic"], base_env(tmp_path))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "--host/--port" in done.stderr and "Address already in use" in done.stderr
    assert "Traceback" not in done.stderr, done.stderr
