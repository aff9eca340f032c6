"""/static/ over real HTTP against ``serve.py`` (DEBUG off: STATIC_ROOT after collectstatic).

Most checks use the session's ``live_server``. Files that must exist before the index is
built (symlinks out of the root, dotfiles, a large file) are planted in a copy of its
STATIC_ROOT served by a second server started once for this module. Request targets that
httpx would normalise (``..``) are sent byte for byte with http.client.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import socket
import time
from pathlib import Path

import brotli
import django.contrib.admin
import httpx
import pytest
from parley_testing import ServerProcess
from raw_http import raw_request

SECRET = b"TOP-SECRET-OUTSIDE-THE-ROOT"
BIG_SIZE = 24 * 1024 * 1024
CSS = "admin/css/base.css"


@pytest.fixture
def client(live_server):
    with httpx.Client(base_url=live_server.url, timeout=10.0) as client:
        yield client


@pytest.fixture(scope="module")
def manifest(live_server) -> dict[str, str]:
    return json.loads((live_server.static_root / "staticfiles.json").read_text())["paths"]


@pytest.fixture(scope="module")
def planted(live_server, tmp_path_factory):
    """A server whose STATIC_ROOT, a copy of the live server's, got extra files first.

    Next to the root: ``secret.txt`` and ``outside/secret.txt``, which must never be
    served. In it: symlinks to them, dotfiles, an in-root symlink, a 24 MB file.
    (``make_server(static_setup=...)`` would run collectstatic again, ten seconds; the
    copy is enough, and one server serves the whole module.)
    """
    workdir = tmp_path_factory.mktemp("static-planted")
    root = workdir / "static"
    shutil.copytree(live_server.static_root, root, symlinks=True)
    (workdir / "secret.txt").write_bytes(SECRET)
    (workdir / "outside").mkdir()
    (workdir / "outside" / "secret.txt").write_bytes(SECRET)
    (root / "leak.txt").symlink_to(workdir / "secret.txt")
    (root / "leakdir").symlink_to(workdir / "outside", target_is_directory=True)
    (root / "passwd").symlink_to("/etc/passwd")
    (root / ".env").write_bytes(SECRET)
    (root / ".hidden").mkdir()
    (root / ".hidden" / "x.css").write_bytes(SECRET)
    (root / "admin" / ".secret.css").write_bytes(SECRET)
    (root / "alias.css").symlink_to(root / CSS)
    (root / "hello.txt").write_bytes(b"0123456789")
    (root / "hello.txt.gz").symlink_to(workdir / "secret.txt")
    big = os.urandom(BIG_SIZE)
    (root / "big.bin").write_bytes(big)
    server = ServerProcess(
        workdir / "server", env={"STATIC_ROOT": str(root)}, args=["--no-collectstatic"]
    )
    server.start()
    yield server, root, big
    server.kill()


# --- ordinary files ---------------------------------------------------------------------


def test_collected_file_is_served(client, live_server):
    response = client.get(f"/static/{CSS}", headers={"Accept-Encoding": "identity"})
    assert response.status_code == 200
    assert response.content == (live_server.static_root / CSS).read_bytes()
    assert response.headers["content-type"] == 'text/css; charset="utf-8"'
    assert response.headers["content-length"] == str(len(response.content))
    assert response.headers["cache-control"] == "max-age=60, public"
    assert response.headers["vary"] == "Accept-Encoding"
    assert "etag" in response.headers and "last-modified" in response.headers


def test_hashed_name_is_cached_forever(client, manifest):
    hashed = manifest[CSS]
    assert hashed != CSS
    response = client.get(f"/static/{hashed}")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "max-age=315360000, public, immutable"


@pytest.mark.parametrize(
    ("accept", "encoding", "decode"),
    [
        ("gzip", "gzip", gzip.decompress),
        ("br", "br", brotli.decompress),
        ("identity", None, bytes),
    ],
)
def test_compressed_variants(live_server, manifest, accept, encoding, decode):
    status, headers, body = raw_request(
        live_server.url, f"/static/{manifest[CSS]}", headers={"Accept-Encoding": accept}
    )
    assert status == 200
    assert headers.get("content-encoding") == encoding
    assert headers["vary"] == "Accept-Encoding"
    assert int(headers["content-length"]) == len(body)
    assert decode(body) == (live_server.static_root / manifest[CSS]).read_bytes()


def test_head_has_headers_and_no_body(live_server):
    status, headers, body = raw_request(live_server.url, f"/static/{CSS}", method="HEAD")
    size = (live_server.static_root / CSS).stat().st_size
    assert (status, headers["content-length"], body) == (200, str(size), b"")


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS"])
def test_other_methods_are_405_with_allow(client, method):
    response = client.request(method, f"/static/{CSS}")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize("path", ["/static/", "/static/admin/", "/static/admin/css", "/static/x"])
def test_directories_and_missing_files_are_404(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert b"base.css" not in response.content


def test_dotfiles_that_collectstatic_left_are_not_served(client, live_server):
    dotfiles = [p.name for p in live_server.static_root.iterdir() if p.name.startswith(".")]
    assert dotfiles, "expected serve.py's collectstatic stamp; the planted tests cover this"
    for name in dotfiles:
        assert client.get(f"/static/{name}").status_code == 404


# --- conditional requests ------------------------------------------------------------------


def test_if_none_match_exact_weak_list_and_star(client):
    etag = client.get(f"/static/{CSS}").headers["etag"]
    for value in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        response = client.get(f"/static/{CSS}", headers={"If-None-Match": value})
        assert response.status_code == 304, value
        assert response.content == b""
        assert response.headers["etag"] == etag
    response = client.get(f"/static/{CSS}", headers={"If-None-Match": '"other"'})
    assert response.status_code == 200


def test_if_none_match_over_several_header_lines(client):
    etag = client.get(f"/static/{CSS}").headers["etag"]
    headers = [("If-None-Match", '"other"'), ("If-None-Match", f"W/{etag}")]
    assert client.get(f"/static/{CSS}", headers=headers).status_code == 304


def test_if_modified_since(client):
    last_modified = client.get(f"/static/{CSS}").headers["last-modified"]
    response = client.get(f"/static/{CSS}", headers={"If-Modified-Since": last_modified})
    assert response.status_code == 304
    old = "Mon, 01 Jan 2001 00:00:00 GMT"
    assert client.get(f"/static/{CSS}", headers={"If-Modified-Since": old}).status_code == 200


# --- ranges ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "first", "last"), [("bytes=0-0", 0, 0), ("bytes=-1", -1, -1), ("bytes=10-19", 10, 19)]
)
def test_single_ranges(live_server, spec, first, last):
    data = (live_server.static_root / CSS).read_bytes()
    first, last = first % len(data), last % len(data)
    status, headers, body = raw_request(
        live_server.url, f"/static/{CSS}", headers={"Range": spec, "Accept-Encoding": "identity"}
    )
    assert status == 206
    assert body == data[first : last + 1]
    assert headers["content-range"] == f"bytes {first}-{last}/{len(data)}"
    assert headers["content-length"] == str(last - first + 1)


def test_range_outside_the_file_is_416(live_server):
    size = (live_server.static_root / CSS).stat().st_size
    status, headers, _body = raw_request(
        live_server.url,
        f"/static/{CSS}",
        headers={"Range": f"bytes={size}-", "Accept-Encoding": "identity"},
    )
    assert status == 416
    assert headers["content-range"] == f"bytes */{size}"


def test_multiple_ranges_get_the_whole_file(live_server):
    data = (live_server.static_root / CSS).read_bytes()
    status, _headers, body = raw_request(
        live_server.url,
        f"/static/{CSS}",
        headers={"Range": "bytes=0-1,5-6", "Accept-Encoding": "identity"},
    )
    assert (status, body) == (200, data)


# --- refusals ------------------------------------------------------------------------------------


TRAVERSALS = [
    "/static/../secret.txt",
    "/static/admin/../../secret.txt",
    "/static/%2e%2e/secret.txt",
    "/static/%2E%2E/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/static/..%2fsecret.txt",
    "/static/..%2f..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/static/admin%2f..%2f..%2fsecret.txt",
    "/static/..%5csecret.txt",
    "/static/..\\secret.txt",
    "/static//etc/passwd",
    "/static/%2fetc%2fpasswd",
    "/static/%2F%2Fetc%2Fpasswd",
    "/static/hello.txt%00.css",
    "/static/..%00/secret.txt",
    "/static/%252e%252e/secret.txt",
    "/static/./hello.txt",
    "/static/leak.txt",
    "/static/leakdir/secret.txt",
    "/static/passwd",
    "/static/.env",
    "/static/%2eenv",
    "/static/.hidden/x.css",
    "/static/admin/.secret.css",
]


@pytest.mark.parametrize("target", TRAVERSALS)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_traversal_escaping_symlinks_and_dotfiles_are_404(planted, target, method):
    server, _root, _big = planted
    status, _headers, body = raw_request(server.url, target, method=method)
    assert status == 404
    assert SECRET not in body
    assert b"root:" not in body


def test_planted_files_inside_the_root_are_served(planted):
    server, root, _big = planted
    with server.client() as client:
        assert client.get("/static/hello.txt").content == b"0123456789"
        alias = client.get("/static/alias.css", headers={"Accept-Encoding": "identity"})
        assert alias.content == (root / CSS).read_bytes()


def test_compressed_variant_that_escapes_the_root_is_never_sent(planted):
    server, _root, _big = planted
    status, headers, body = raw_request(
        server.url, "/static/hello.txt", headers={"Accept-Encoding": "gzip"}
    )
    assert (status, body) == (200, b"0123456789")
    assert "content-encoding" not in headers


# --- a large file ------------------------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_large_file_arrives_intact(planted):
    server, _root, big = planted
    digest = hashlib.sha256()
    with server.client(timeout=60.0) as client, client.stream("GET", "/static/big.bin") as r:
        assert r.status_code == 200
        assert r.headers["content-length"] == str(BIG_SIZE)
        for chunk in r.iter_raw():
            digest.update(chunk)
    assert digest.digest() == hashlib.sha256(big).digest()


def test_range_deep_inside_the_large_file(planted):
    server, _root, big = planted
    with server.client() as client:
        response = client.get("/static/big.bin", headers={"Range": "bytes=20000000-20000009"})
    assert response.status_code == 206
    assert response.content == big[20_000_000:20_000_010]


def test_slow_reader_of_a_large_file_holds_neither_the_reactor_nor_the_file(planted):
    server, _root, big = planted
    rss_before = rss_bytes(server.proc.pid)
    slow = socket.socket()
    try:
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # before connect
        slow.settimeout(30)
        slow.connect(("127.0.0.1", server.port))
        slow.sendall(
            b"GET /static/big.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        received = bytearray(slow.recv(64 * 1024))
        assert received.startswith(b"HTTP/1.1 200")
        time.sleep(0.5)  # the slow reader reads nothing; the server's buffers fill up
        # Another client is answered while the big response is stalled mid-way.
        with server.client() as client:
            assert client.get("/static/hello.txt").content == b"0123456789"
        assert len(received) < BIG_SIZE  # the big response was still under way
        # Streaming keeps a chunk or so in memory, not the 24 MB file.
        assert rss_bytes(server.proc.pid) - rss_before < BIG_SIZE // 3
        while chunk := slow.recv(1024 * 1024):
            received += chunk
    finally:
        slow.close()
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    assert f"content-length: {BIG_SIZE}".encode() in head.lower()
    assert hashlib.sha256(body).digest() == hashlib.sha256(big).digest()


# --- DEBUG ---------------------------------------------------------------------------------------


def test_debug_serves_from_the_finders_without_long_caching(make_server):
    server = make_server(env={"DJANGO_DEBUG": "1"})
    expected = (Path(django.contrib.admin.__file__).parent / "static" / CSS).read_bytes()
    with server.client() as client:
        response = client.get(f"/static/{CSS}", headers={"Accept-Encoding": "identity"})
        assert response.status_code == 200
        assert response.content == expected
        assert response.headers["cache-control"] == "max-age=0, public"
    for target in ("/static/../settings.py", "/static/%2e%2e/admin/css/base.css"):
        assert raw_request(server.url, target)[0] == 404
