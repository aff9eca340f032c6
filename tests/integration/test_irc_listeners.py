"""Where the IRC gateway listens: with --tls-cert/--tls-key it is IRC over TLS (the
certificate checked by the client), and with --workers the supervisor opens its port
once and every worker serves it (PROTOCOL.md "IRC gateway"; project/listen.py)."""

from __future__ import annotations

import socket
import time

from irc_testing import free_port
from live_clients import provision
from parley_testing import ServerProcess
from tls_testing import AnyServer, client_context, make_certificate
from token_testing import make_tokens

PASSWORD = "pw-irc-listen-3319"


def register(sock, token: str, nick: str, timeout: float = 15.0) -> bytes:
    sock.settimeout(timeout)
    sock.sendall(f"PASS {token}\r\nNICK {nick}\r\nUSER {nick} 0 * :{nick}\r\n".encode())
    seen = b""
    deadline = time.monotonic() + timeout
    while b" 001 " not in seen and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        seen += chunk
    return seen


def test_irc_over_tls(tmp_path):
    cert, key = make_certificate(tmp_path / "tls")
    http_port, irc_port = free_port(), free_port()
    server = AnyServer(
        tmp_path / "server",
        args=[
            "--port",
            str(http_port),
            "--irc-port",
            str(irc_port),
            "--tls-cert",
            str(cert),
            "--tls-key",
            str(key),
        ],
    ).start()
    try:
        assert f"ircs://127.0.0.1:{irc_port}/" in server.addresses
        provision(server, users=[("tess", PASSWORD)], sessions=False)
        token = make_tokens(server, ("t", "tess"))["t"]
        context = client_context(cert)
        with (
            socket.create_connection(("127.0.0.1", irc_port), timeout=15) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            assert b":parley 001 tess" in register(tls, token, "tess")
        # Plain IRC on the TLS port is no IRC at all: the handshake fails, nothing is said.
        with socket.create_connection(("127.0.0.1", irc_port), timeout=15) as plain:
            assert b" 001 " not in register(plain, token, "tess", timeout=3)
    finally:
        server.stop()


def test_workers_share_the_irc_port(tmp_path):
    irc_port = free_port()
    server = ServerProcess(
        tmp_path / "server",
        env={"REDIS_URL": "redis://127.0.0.1:6379/0", "CHAT_REDIS_PREFIX": f"irc{irc_port}"},
        args=["--workers", "2", "--irc-port", str(irc_port)],
    ).start()
    try:
        assert f"irc://127.0.0.1:{irc_port}/" in server.log()
        provision(server, users=[("wally", PASSWORD)], sessions=False)
        token = make_tokens(server, ("w", "wally"))["w"]
        # Several connections: each is accepted by whichever worker; all are served.
        for _ in range(6):
            with socket.create_connection(("127.0.0.1", irc_port), timeout=15) as sock:
                assert b":parley 001 wally" in register(sock, token, "wally")
    finally:
        server.stop()
