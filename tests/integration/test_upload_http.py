"""Attachments against a real ``serve.py`` over real sockets (PROTOCOL.md "Attachments"):
the 413 before the body is read, chunked bodies capped while they stream, a real upload
and a Range request, an attachment in the event a WebSocket receives, and the server's
own removal of uploads never attached.

The server has CHAT_MAX_UPLOAD_BYTES=1 MiB (so an over-limit body is quick to send) and a
cleanup every second (CHAT_UPLOAD_CLEANUP_SECONDS).
"""

from __future__ import annotations

import io
import socket
import sqlite3
import time

import pytest
from live_clients import WSClient, provision, run
from parley_testing import ServerProcess
from PIL import Image
from raw_http import parse_response

PASSWORD = "pw-upload-tests-5521"
LIMIT = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("upload-server")
    env = {
        "MEDIA_ROOT": str(workdir / "media"),
        "CHAT_MAX_UPLOAD_BYTES": str(LIMIT),
        "CHAT_UPLOAD_CLEANUP_SECONDS": "1",
    }
    server = ServerProcess(workdir, env=env).start()
    server.accounts = provision(
        server, users=[("alice", PASSWORD), ("bob", PASSWORD)], rooms=["lobby", "pics"]
    )
    server.media = workdir / "media"
    yield server
    server.stop()


def client_of(server, name: str):
    account = server.accounts[name]
    client = server.client(headers={"X-CSRFToken": account.csrftoken, "Origin": server.url})
    client.cookies.set("sessionid", account.sessionid)
    client.cookies.set("csrftoken", account.csrftoken)
    return client


def png(size=(640, 480)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (10, 120, 200)).save(out, "PNG")
    return out.getvalue()


def upload(server, name: str, data: bytes, filename: str, slug: str = "lobby"):
    with client_of(server, name) as client:
        return client.post(f"/api/rooms/{slug}/uploads/", files={"file": (filename, data)})


def head_only(server, headers: list[str], timeout: float = 5.0) -> tuple[int, dict, float]:
    """Send a request head promising a body, never the body; the answer and its delay."""
    account = server.accounts["alice"]
    head = "\r\n".join(
        [
            "POST /api/rooms/lobby/uploads/ HTTP/1.1",
            f"Host: 127.0.0.1:{server.port}",
            f"Cookie: {account.cookie_header}",
            f"X-CSRFToken: {account.csrftoken}",
            "Content-Type: multipart/form-data; boundary=xyz",
            *headers,
            "",
            "",
        ]
    ).encode()
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(head)
        received = b""
        while b"\r\n\r\n" not in received:
            data = sock.recv(65536)
            if not data:
                break
            received += data
        elapsed = time.monotonic() - started
    status, response_headers, _ = parse_response(received)
    return status, response_headers, elapsed


def test_a_100_mb_length_is_refused_before_the_body_is_sent(server):
    status, headers, elapsed = head_only(server, [f"Content-Length: {100 * 1024 * 1024}"])
    assert status == 413 and headers["content-type"] == "application/json"
    assert elapsed < 2.0  # answered from the head: the body was never sent


def test_a_chunked_body_is_cut_once_it_passes_the_limit(server):
    account = server.accounts["alice"]
    head = (
        "POST /api/rooms/lobby/uploads/ HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{server.port}\r\nCookie: {account.cookie_header}\r\n"
        f"X-CSRFToken: {account.csrftoken}\r\n"
        "Content-Type: multipart/form-data; boundary=xyz\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    chunk = b"%x\r\n%s\r\n" % (64 * 1024, b"x" * 64 * 1024)
    received = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head)
        try:
            for _ in range(LIMIT // (64 * 1024) + 8):  # past the limit and its allowance
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed while we were still sending
        sock.settimeout(5)
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                received += data
        except (ConnectionResetError, TimeoutError):
            pass
    assert parse_response(received)[0] == 413


def test_an_upload_within_the_limit_goes_through_a_larger_one_is_413(server):
    response = upload(server, "alice", b"z" * (LIMIT - 10), "big.bin")
    assert response.status_code == 201, response.text
    assert response.json()["upload"]["size"] == LIMIT - 10
    assert upload(server, "alice", b"z" * (LIMIT + 1), "huge.bin").status_code == 413


def test_a_range_request_and_the_security_headers(server):
    data = bytes(range(256)) * 40
    made = upload(server, "alice", data, "bytes.bin").json()["upload"]
    with client_of(server, "alice") as client:
        response = client.get(made["url"], headers={"Range": "bytes=100-199"})
        assert response.status_code == 206
        assert response.content == data[100:200]
        assert response.headers["content-range"] == f"bytes 100-199/{len(data)}"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["content-security-policy"] == "sandbox"
        assert response.headers["content-disposition"].startswith("attachment")
        whole = client.get(made["url"])
        assert whole.content == data
        again = client.get(made["url"], headers={"If-None-Match": whole.headers["etag"]})
        assert again.status_code == 304


def test_an_attachment_arrives_in_the_websocket_event(server):
    image = upload(server, "alice", png(), "sky.png", slug="pics").json()["upload"]
    assert image["content_type"] == "image/png" and image["thumbnail_url"]

    async def scenario():
        bob = await WSClient.connect(server, "pics", server.accounts["bob"])
        alice = await WSClient.connect(server, "pics", server.accounts["alice"])
        async with bob, alice:
            frame = {"type": "send", "body": "", "client_id": "a-1", "attachments": [image["id"]]}
            await alice.send_json(frame)
            seq = await alice.wait_ack("a-1")
            events = await bob.wait_seq(seq)
            return next(e for e in events if e.get("seq") == seq)

    event = run(scenario())
    assert event["type"] == "message" and event["attachments"] == [image]
    with client_of(server, "bob") as bob:
        thumb = bob.get(image["thumbnail_url"])
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/webp"
        assert bob.get(image["url"]).headers["content-disposition"].startswith("inline")


def test_a_long_poll_post_attaches_and_history_shows_it(server):
    made = upload(server, "alice", b"minutes\n", "minutes.txt").json()["upload"]
    with client_of(server, "alice") as client:
        frame = {"body": "from a poll", "client_id": "lp-1", "attachments": [made["id"]]}
        response = client.post("/poll/rooms/lobby/", json=frame)
        assert response.status_code == 201, response.text
        seq = response.json()["seq"]
        again = client.post("/poll/rooms/lobby/", json=frame)  # an idempotent resend
        assert again.status_code == 200 and again.json()["seq"] == seq
        other = client.post("/poll/rooms/lobby/", json={**frame, "client_id": "lp-2"})
        assert other.status_code == 400 and other.json()["error"]["code"] == "bad_request"
        page = client.get(f"/api/rooms/lobby/messages/{seq}/").json()["event"]
        assert page["attachments"] == [made]


def test_the_server_removes_unattached_uploads_itself(server):
    made = upload(server, "alice", b"forgotten\n", "old.txt").json()["upload"]
    stored = list(server.media.rglob(made["id"]))
    assert stored
    database = server.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(database) as db:
        db.execute(
            "UPDATE chat_upload SET created_at = datetime('now', '-25 hours') WHERE id = ?",
            [made["id"]],
        )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with sqlite3.connect(database) as db:
            left = db.execute("SELECT count(*) FROM chat_upload WHERE id = ?", [made["id"]])
            if left.fetchone()[0] == 0 and not stored[0].exists():
                return
        time.sleep(0.2)
    raise AssertionError("the unattached upload was not removed within 15 s")
