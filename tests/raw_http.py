"""The one raw-HTTP harness of the tests: bytes exactly as a client sends them.

httpx normalises what it sends (paths, header case, framing), which is right for ordinary
requests and wrong for probing how the server answers a malformed or unusual one.
``raw_exchange`` writes bytes on one connection and reads until the server closes it;
``parse_response`` splits such an answer; ``raw_request`` sends a request target exactly
as given through http.client, which still decodes chunked and HEAD answers.
"""

from __future__ import annotations

import http.client
import socket
import time

from parley_testing import ServerProcess


def raw_exchange(server: ServerProcess, payloads: list[bytes], timeout: float = 5.0) -> bytes:
    """Send ``payloads`` on one connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        for payload in payloads:
            sock.sendall(payload)
        received = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                break
            if not data:
                return received
            received += data
        raise AssertionError(f"connection still open after {timeout}s; got {received!r}")


def parse_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    return status, headers, body


def raw_request(
    url: str, target: str, method: str = "GET", headers: dict | None = None
) -> tuple[int, dict[str, str], bytes]:
    """Send ``target`` exactly as given (no normalisation of ``..`` or ``//``)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request(method, target, headers=headers or {})
        response = connection.getresponse()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        connection.close()
