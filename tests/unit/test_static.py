"""project.static through Twisted's real HTTP stack, with no sockets and no sleeping.

Requests are raw bytes fed to a Site's channel over a StringTransport, so Twisted's own
request-line parsing (percent-decoding, path segments) is what the resource sees. The
body producer is driven by a Cooperator on a Clock, one pull per step, which lets the
tests watch the body leave in chunks and pause it like a slow reader would.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import os
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path

import brotli
import pytest
from django.contrib.staticfiles.finders import BaseFinder
from django.core.management import call_command
from twisted.internet import _producer_helpers
from twisted.internet.task import Clock, Cooperator
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Site
from whitenoise.base import WhiteNoise
from whitenoise.middleware import WhiteNoiseMiddleware
from whitenoise.responders import StaticFile

from project.static import CHUNK_SIZE, StaticFileIndex, build_static_resource, clean_name

SECRET = b"TOP-SECRET-OUTSIDE-THE-ROOT"
CSS = b"body { color: #123456; }\n" * 200  # big enough for whitenoise to keep .gz/.br
MANIFEST_STORAGE = "whitenoise.storage.CompressedManifestStaticFilesStorage"
PLAIN_STORAGE = "django.contrib.staticfiles.storage.StaticFilesStorage"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    raw: bytes


def parse_reply(raw: bytes, method: bytes) -> Reply:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if method == b"HEAD" or status == 304:
        assert body == b"", "no body allowed"
    elif "content-length" in headers:
        assert len(body) <= int(headers["content-length"])
    return Reply(status, headers, body, raw)


class Steps:
    """A Cooperator scheduler run by hand: step() runs exactly the work queued so far."""

    def __init__(self) -> None:
        self.pending: list[_Scheduled] = []

    def schedule(self, work) -> _Scheduled:
        scheduled = _Scheduled(work)
        self.pending.append(scheduled)
        return scheduled

    def step(self) -> None:
        due, self.pending = self.pending, []
        for scheduled in due:
            if not scheduled.cancelled:
                scheduled.work()


@dataclass
class _Scheduled:
    work: object
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


class Wire:
    """One Site with the static resource at /static, answering raw requests."""

    def __init__(self, resource: Resource, steps: Steps) -> None:
        root = Resource()
        root.putChild(b"static", resource)
        self.site = Site(root, timeout=None, reactor=Clock())
        self.steps = steps

    def connect(self, target: bytes, method: bytes = b"GET", headers: dict | None = None):
        channel = self.site.buildProtocol(None)
        transport = StringTransport()
        channel.makeConnection(transport)
        lines = [method + b" " + target + b" HTTP/1.1", b"Host: testserver"]
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}".encode())
        channel.dataReceived(b"\r\n".join(lines) + b"\r\n\r\n")
        return channel, transport

    def step(self) -> None:
        self.steps.step()

    def pending(self) -> bool:
        return any(not scheduled.cancelled for scheduled in self.steps.pending)

    def pump(self) -> None:
        for _ in range(100_000):
            if not self.pending():
                return
            self.step()
        raise AssertionError("the producer never finished")

    def request(self, target: str | bytes, method: bytes = b"GET", **headers: str) -> Reply:
        if isinstance(target, str):
            target = target.encode()
        names = {k.replace("_", "-"): v for k, v in headers.items()}
        _channel, transport = self.connect(target, method, names)
        self.pump()
        return parse_reply(transport.value(), method)


@pytest.fixture
def steps(monkeypatch) -> Steps:
    """Pull producers are driven by hand: one resumeProducing per producer per step()."""
    steps = Steps()
    cooperator = Cooperator(
        scheduler=steps.schedule, terminationPredicateFactory=lambda: lambda: True
    )
    monkeypatch.setattr(_producer_helpers, "cooperate", cooperator.cooperate)
    return steps


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    """A static root with a file, a subdirectory, hidden files and symlinks (in and out)."""
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    (root / "css").mkdir(parents=True)
    outside.mkdir()
    (tmp_path / "secret.txt").write_bytes(SECRET)
    (outside / "secret.txt").write_bytes(SECRET)
    (root / "css" / "app.css").write_bytes(CSS)
    (root / "hello.txt").write_bytes(b"0123456789")
    (root / "app.js").write_bytes(b"console.log(1);\n")
    (root / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 32)
    (root / "data.unknownext").write_bytes(b"?")
    (root / "empty.txt").write_bytes(b"")
    (root / ".env").write_bytes(SECRET)
    (root / ".hidden").mkdir()
    (root / ".hidden" / "x.css").write_bytes(SECRET)
    (root / "css" / ".secret.css").write_bytes(SECRET)
    (root / "leak.txt").symlink_to(tmp_path / "secret.txt")
    (root / "leakdir").symlink_to(outside, target_is_directory=True)
    (root / "alias.css").symlink_to(root / "css" / "app.css")
    (root / "loop").symlink_to(root, target_is_directory=True)
    # A compressed "variant" that is really a symlink out of the root.
    (root / "hello.txt.gz").symlink_to(tmp_path / "secret.txt")
    return {"root": root, "outside": outside, "tmp": tmp_path}


def use_static_root(settings, root: Path) -> None:
    settings.DEBUG = False
    settings.STATIC_ROOT = str(root)
    settings.STATIC_URL = "/static/"
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {"BACKEND": PLAIN_STORAGE}}


def use_finders(settings, *dirs: Path) -> None:
    settings.DEBUG = True
    settings.STATIC_ROOT = str(dirs[0].parent / "unused-static-root")
    settings.STATIC_URL = "/static/"
    settings.STATICFILES_DIRS = [str(d) for d in dirs]
    settings.STATICFILES_FINDERS = ["django.contrib.staticfiles.finders.FileSystemFinder"]
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {"BACKEND": PLAIN_STORAGE}}


@pytest.fixture(params=["static_root", "finders"])
def mode(request, settings, tree) -> str:
    """Run a test once against the STATIC_ROOT index and once against the finders (DEBUG)."""
    if request.param == "static_root":
        use_static_root(settings, tree["root"])
    else:
        use_finders(settings, tree["root"])
    return request.param


@pytest.fixture
def wire(mode, steps) -> Wire:
    return Wire(build_static_resource(), steps)


# --- names --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("segments", "expected"),
    [
        ([b"app.js"], "app.js"),
        ([b"css", b"app.css"], "css/app.css"),
        ([b"caf\xc3\xa9.css"], "café.css"),
        ([b"a..b.js"], "a..b.js"),
        ([], None),
        ([b""], None),
        ([b"css", b""], None),
        ([b"", b"etc", b"passwd"], None),
        ([b".."], None),
        ([b".", b"app.js"], None),
        ([b"..", b"settings.py"], None),
        ([b".env"], None),
        ([b"css", b".secret.css"], None),
        ([b"../../etc/passwd"], None),
        ([b"..\\..\\etc\\passwd"], None),
        ([b"a\x00b"], None),
        ([b"\xff\xfe"], None),
    ],
)
def test_clean_name(segments, expected):
    assert clean_name(segments) == expected


# --- plain responses ----------------------------------------------------------------


def test_serves_a_file_with_whitenoise_headers(wire, tree):
    reply = wire.request("/static/css/app.css")
    assert reply.status == 200
    assert reply.body == CSS
    assert reply.headers["content-type"] == 'text/css; charset="utf-8"'
    assert reply.headers["content-length"] == str(len(CSS))
    assert reply.headers["accept-ranges"] == "bytes"
    assert reply.headers["etag"].startswith('"')
    mtime = (tree["root"] / "css" / "app.css").stat().st_mtime
    assert reply.headers["last-modified"] == formatdate(mtime, usegmt=True)


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("app.js", 'text/javascript; charset="utf-8"'),
        ("image.png", "image/png"),
        ("hello.txt", 'text/plain; charset="utf-8"'),
        ("data.unknownext", "application/octet-stream"),
    ],
)
def test_content_type_comes_from_whitenoise_media_types(wire, name, content_type):
    reply = wire.request(f"/static/{name}")
    assert (reply.status, reply.headers["content-type"]) == (200, content_type)


def test_empty_file(wire):
    reply = wire.request("/static/empty.txt")
    assert (reply.status, reply.headers["content-length"], reply.body) == (200, "0", b"")


def test_head_gives_the_headers_and_no_body(wire):
    reply = wire.request("/static/css/app.css", method=b"HEAD")
    assert reply.status == 200
    assert reply.headers["content-length"] == str(len(CSS))
    assert reply.headers["content-type"] == 'text/css; charset="utf-8"'
    assert reply.body == b""


@pytest.mark.parametrize("method", [b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH"])
@pytest.mark.parametrize("target", ["/static/css/app.css", "/static/missing.css"])
def test_other_methods_get_405_with_allow(wire, method, target):
    reply = wire.request(target, method=method)
    assert reply.status == 405
    assert reply.headers["allow"] == "GET, HEAD"
    assert reply.body == b""


@pytest.mark.parametrize(
    "target", ["/static", "/static/", "/static/css", "/static/css/", "/static/missing.css"]
)
def test_directories_and_missing_files_are_404(wire, target):
    reply = wire.request(target)
    assert reply.status == 404
    assert b"app.css" not in reply.body
    head = wire.request(target, method=b"HEAD")
    assert (head.status, head.headers["content-length"]) == (404, str(len(reply.body)))


def test_in_root_symlink_is_served(wire):
    reply = wire.request("/static/alias.css")
    assert (reply.status, reply.body) == (200, CSS)


# --- refusals: traversal, dotfiles, symlinks out -------------------------------------


TRAVERSALS = [
    "/static/../secret.txt",
    "/static/css/../../secret.txt",
    "/static/%2e%2e/secret.txt",
    "/static/%2E%2E/%2e%2e/secret.txt",
    "/static/..%2fsecret.txt",
    "/static/css%2f..%2f..%2fsecret.txt",
    "/static/..%5csecret.txt",
    "/static/..\\secret.txt",
    "/static/css/..%5c..%5csecret.txt",
    "/static//etc/passwd",
    "/static/%2fetc%2fpasswd",
    "/static/hello.txt%00.css",
    "/static/%00",
    "/static/./hello.txt",
    "/static/leak.txt",
    "/static/leakdir/secret.txt",
    "/static/loop/leak.txt",
    "/static/.env",
    "/static/%2eenv",
    "/static/.hidden/x.css",
    "/static/css/.secret.css",
]


@pytest.mark.parametrize("target", TRAVERSALS)
@pytest.mark.parametrize("method", [b"GET", b"HEAD"])
def test_traversal_dotfiles_and_escaping_symlinks_are_404(wire, target, method):
    reply = wire.request(target, method=method)
    assert reply.status == 404
    assert SECRET not in reply.raw
    assert b"root:" not in reply.raw


def test_compressed_variant_that_escapes_the_root_is_never_sent(wire):
    reply = wire.request("/static/hello.txt", accept_encoding="gzip, br")
    assert reply.status == 200
    assert "content-encoding" not in reply.headers
    assert reply.body == b"0123456789"


def test_whitenoise_alone_would_follow_the_symlink_and_serve_dotfiles(tmp_path):
    """The base behaviour Parley corrects; if whitenoise changes, revisit project.static."""
    (tmp_path / "root").mkdir()
    (tmp_path / "secret.txt").write_bytes(SECRET)
    (tmp_path / "root" / ".env").write_bytes(SECRET)
    (tmp_path / "root" / "leak.txt").symlink_to(tmp_path / "secret.txt")
    plain = WhiteNoise(None, root=str(tmp_path / "root"), prefix="static")
    assert "/static/leak.txt" in plain.files
    assert "/static/.env" in plain.files


# --- conditional requests -------------------------------------------------------------


def test_if_none_match_exact_weak_list_and_star(wire):
    etag = wire.request("/static/css/app.css").headers["etag"]
    for value in (etag, f"W/{etag}", f'"nope", {etag}', f'W/"x",W/{etag}', "*"):
        reply = wire.request("/static/css/app.css", if_none_match=value)
        assert reply.status == 304, value
        assert reply.headers["etag"] == etag
        assert "content-length" not in reply.headers
    for value in ('"nope"', 'W/"nope", "other"', etag.strip('"'), ""):
        reply = wire.request("/static/css/app.css", if_none_match=value)
        assert (reply.status, reply.body) == (200, CSS), value


def test_whitenoise_alone_compares_if_none_match_exactly(tree):
    plain = StaticFile(str(tree["root"] / "hello.txt"), [])
    weak = {"HTTP_IF_NONE_MATCH": f"W/{plain.etag}"}
    assert plain.get_response("HEAD", weak).status == 200


def test_if_modified_since(wire):
    last_modified = wire.request("/static/css/app.css").headers["last-modified"]
    assert wire.request("/static/css/app.css", if_modified_since=last_modified).status == 304
    older = "Mon, 01 Jan 2001 00:00:00 GMT"
    assert wire.request("/static/css/app.css", if_modified_since=older).status == 200


def test_if_none_match_wins_over_if_modified_since(wire):
    last_modified = wire.request("/static/css/app.css").headers["last-modified"]
    reply = wire.request(
        "/static/css/app.css", if_none_match='"other"', if_modified_since=last_modified
    )
    assert reply.status == 200


# --- ranges -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "body", "content_range"),
    [
        ("bytes=0-0", b"0", "bytes 0-0/10"),
        ("bytes=-1", b"9", "bytes 9-9/10"),
        ("bytes=9-9", b"9", "bytes 9-9/10"),
        ("bytes=2-5", b"2345", "bytes 2-5/10"),
        ("bytes=7-", b"789", "bytes 7-9/10"),
        ("bytes=-3", b"789", "bytes 7-9/10"),
        ("bytes=-50", b"0123456789", "bytes 0-9/10"),
        ("bytes=8-100", b"89", "bytes 8-9/10"),
        ("Bytes=1-1", b"1", "bytes 1-1/10"),
    ],
)
def test_single_range_is_206(wire, spec, body, content_range):
    reply = wire.request("/static/hello.txt", range=spec)
    assert reply.status == 206
    assert reply.body == body
    assert reply.headers["content-range"] == content_range
    assert reply.headers["content-length"] == str(len(body))


def test_whitenoise_alone_refuses_one_byte_ranges(tree):
    """whitenoise #711, the reason get_range_response is overridden."""
    plain = StaticFile(str(tree["root"] / "hello.txt"), [])
    for spec in ("bytes=0-0", "bytes=-1"):
        assert plain.get_response("HEAD", {"HTTP_RANGE": spec}).status == 416


@pytest.mark.parametrize("spec", ["bytes=10-", "bytes=10-20", "bytes=99-", "bytes=-0"])
def test_unsatisfiable_range_is_416(wire, spec):
    reply = wire.request("/static/hello.txt", range=spec)
    assert reply.status == 416
    assert reply.headers["content-range"] == "bytes */10"
    assert reply.body == b""


@pytest.mark.parametrize(
    "spec",
    [
        "bytes=0-1,3-4",
        "bytes=5-2",
        "bytes=-",
        "bytes=abc",
        "bytes=--5",
        "bytes=+1-2",
        "bytes=1_0-",
        "items=0-1",
        "bytes=٣-",
    ],
)
def test_multiple_or_malformed_ranges_get_the_whole_file(wire, spec):
    reply = wire.request("/static/hello.txt", range=spec)
    assert (reply.status, reply.body) == (200, b"0123456789")
    assert "content-range" not in reply.headers


def test_range_is_ignored_on_head(wire):
    reply = wire.request("/static/hello.txt", method=b"HEAD", range="bytes=0-0")
    assert (reply.status, reply.headers["content-length"]) == (200, "10")


def test_if_range(wire):
    first = wire.request("/static/hello.txt")
    etag, last_modified = first.headers["etag"], first.headers["last-modified"]
    for validator in (etag, last_modified):
        reply = wire.request("/static/hello.txt", range="bytes=0-0", if_range=validator)
        assert (reply.status, reply.body) == (206, b"0"), validator
    for validator in ('"changed"', f"W/{etag}", "Mon, 01 Jan 2001 00:00:00 GMT"):
        reply = wire.request("/static/hello.txt", range="bytes=0-0", if_range=validator)
        assert (reply.status, reply.body) == (200, b"0123456789"), validator


# --- caching, manifest and compressed variants (collectstatic) -------------------------


@pytest.fixture
def collected(settings, tmp_path, steps) -> tuple[Wire, dict]:
    source = tmp_path / "source"
    (source / "chat").mkdir(parents=True)
    (source / "chat" / "app.css").write_bytes(CSS)
    settings.DEBUG = False
    settings.STATIC_URL = "/static/"
    settings.STATIC_ROOT = str(tmp_path / "collected")
    settings.STATICFILES_DIRS = [str(source)]
    settings.STATICFILES_FINDERS = ["django.contrib.staticfiles.finders.FileSystemFinder"]
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {"BACKEND": MANIFEST_STORAGE}}
    call_command("collectstatic", interactive=False, verbosity=0)
    manifest = json.loads((tmp_path / "collected" / "staticfiles.json").read_text())
    return Wire(build_static_resource(), steps), manifest["paths"]


def test_hashed_names_are_immutable_and_others_short_lived(collected):
    wire, paths = collected
    hashed = paths["chat/app.css"]
    assert hashed != "chat/app.css"
    reply = wire.request(f"/static/{hashed}")
    assert reply.status == 200
    assert reply.headers["cache-control"] == "max-age=315360000, public, immutable"
    reply = wire.request("/static/chat/app.css")
    assert reply.status == 200
    assert reply.headers["cache-control"] == "max-age=60, public"


@pytest.mark.parametrize(
    ("accept", "encoding", "decode"),
    [
        ("gzip", "gzip", gzip.decompress),
        ("gzip, deflate, br", "br", brotli.decompress),
        ("br", "br", brotli.decompress),
        ("", None, bytes),
        ("identity", None, bytes),
    ],
)
def test_compressed_variants_by_accept_encoding(collected, accept, encoding, decode):
    wire, paths = collected
    reply = wire.request(f"/static/{paths['chat/app.css']}", accept_encoding=accept)
    assert reply.status == 200
    assert reply.headers.get("content-encoding") == encoding
    assert reply.headers["vary"] == "Accept-Encoding"
    assert reply.headers["content-length"] == str(len(reply.body))
    assert decode(reply.body) == CSS


def test_304_keeps_vary_and_cache_control(collected):
    wire, paths = collected
    url = f"/static/{paths['chat/app.css']}"
    etag = wire.request(url).headers["etag"]
    reply = wire.request(url, if_none_match=etag)
    assert reply.status == 304
    assert reply.headers["vary"] == "Accept-Encoding"
    assert reply.headers["cache-control"] == "max-age=315360000, public, immutable"


def etags_by_encoding(wire: Wire, url: str) -> dict[str, str]:
    return {
        accept: wire.request(url, accept_encoding=accept).headers["etag"]
        for accept in ("identity", "gzip", "br")
    }


def test_each_representation_has_its_own_strong_etag(collected):
    wire, paths = collected
    tags = etags_by_encoding(wire, f"/static/{paths['chat/app.css']}")
    assert len(set(tags.values())) == 3, tags
    plain = tags["identity"]
    assert plain.startswith('"') and plain.endswith('"')
    assert tags["gzip"] == plain[:-1] + '-gz"'
    assert tags["br"] == plain[:-1] + '-br"'


def test_if_none_match_is_compared_with_the_representation_chosen(collected):
    wire, paths = collected
    url = f"/static/{paths['chat/app.css']}"
    tags = etags_by_encoding(wire, url)
    for accept, tag in tags.items():
        reply = wire.request(url, accept_encoding=accept, if_none_match=tag)
        assert reply.status == 304, accept
        assert reply.headers["etag"] == tag
        assert reply.headers["vary"] == "Accept-Encoding"
    # A client that cached the gzip form and now asks for the plain one needs its bytes.
    reply = wire.request(url, accept_encoding="identity", if_none_match=tags["gzip"])
    assert (reply.status, reply.body) == (200, CSS)
    reply = wire.request(url, accept_encoding="gzip", if_none_match=tags["identity"])
    assert reply.status == 200
    assert gzip.decompress(reply.body) == CSS


def test_if_range_never_splices_one_representation_onto_another(collected):
    wire, paths = collected
    url = f"/static/{paths['chat/app.css']}"
    first = wire.request(url, accept_encoding="gzip", range="bytes=0-9")
    assert (first.status, first.headers["content-encoding"]) == (206, "gzip")
    gz_tag = first.headers["etag"]
    # The resume asks with the gzip tag but (a proxy rewrote it) no gzip: the whole
    # plain file, not bytes 10- of it, which would follow 10 bytes of gzip.
    resumed = wire.request(url, accept_encoding="identity", range="bytes=10-", if_range=gz_tag)
    assert (resumed.status, resumed.body) == (200, CSS)
    # The same resume with gzip accepted completes the gzip bytes.
    resumed = wire.request(url, accept_encoding="gzip", range="bytes=10-", if_range=gz_tag)
    assert resumed.status == 206
    assert resumed.headers["etag"] == gz_tag
    assert gzip.decompress(first.body + resumed.body) == CSS


def test_compressed_files_are_not_served_under_their_own_name(collected):
    wire, paths = collected
    assert wire.request(f"/static/{paths['chat/app.css']}.gz").status == 404


# --- DEBUG: Django's finders ---------------------------------------------------------


def test_debug_serves_what_the_finders_find_in_their_order(settings, tmp_path, steps):
    from django.contrib.staticfiles import finders

    first, second = tmp_path / "first", tmp_path / "second"
    for directory, text in ((first, b"first"), (second, b"second")):
        directory.mkdir()
        (directory / "same.css").write_bytes(text)
    (second / "only-second.css").write_bytes(b"only")
    use_finders(settings, first, second)
    wire = Wire(build_static_resource(), steps)
    assert finders.find("same.css") == str(first / "same.css")
    assert wire.request("/static/same.css").body == b"first"
    assert wire.request("/static/only-second.css").body == b"only"


def test_debug_serves_app_directories_too(settings, tmp_path, steps):
    use_finders(settings, tmp_path)
    settings.STATICFILES_FINDERS = [
        "django.contrib.staticfiles.finders.FileSystemFinder",
        "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    ]
    wire = Wire(build_static_resource(), steps)
    reply = wire.request("/static/admin/css/base.css")
    assert (reply.status, reply.headers["content-type"]) == (200, 'text/css; charset="utf-8"')


def test_debug_picks_up_new_and_changed_files_without_restart(settings, tmp_path, steps):
    use_finders(settings, tmp_path)
    wire = Wire(build_static_resource(), steps)
    assert wire.request("/static/new.css").status == 404
    (tmp_path / "new.css").write_bytes(b"one")
    assert wire.request("/static/new.css").body == b"one"
    (tmp_path / "new.css").write_bytes(b"changed")
    assert wire.request("/static/new.css").body == b"changed"


def test_debug_is_never_cached_for_long(settings, tmp_path, steps):
    use_finders(settings, tmp_path)
    (tmp_path / "app.0123456789ab.css").write_bytes(b"x")
    wire = Wire(build_static_resource(), steps)
    reply = wire.request("/static/app.0123456789ab.css")
    assert reply.headers["cache-control"] == "max-age=0, public"


def test_whitenoise_alone_serves_dotfiles_found_by_the_finders(settings, tree):
    use_finders(settings, tree["root"])
    plain = WhiteNoiseMiddleware(settings=settings)
    assert plain.find_file("/static/.env") is not None
    assert plain.find_file("/static/leak.txt") is not None


def test_static_root_index_holds_only_servable_files(tree):
    index = StaticFileIndex(debug=False, static_root=str(tree["root"]), static_prefix="static")
    assert "/static/css/app.css" in index.files
    assert "/static/alias.css" in index.files
    assert not [url for url in index.files if "/." in url]
    assert not [url for url in index.files if "leak" in url]
    for static_file in index.files.values():
        for representation in static_file.alternatives:
            assert SECRET not in Path(representation.path).read_bytes()


class RootlessFinder(BaseFinder):
    """A third-party finder without storages: there is no root to check its answer by."""

    answer: str | None = None

    def find(self, path, find_all=False, **kwargs):
        return [self.answer] if find_all else self.answer

    def list(self, ignore_patterns):
        return []


def test_debug_refuses_files_from_a_finder_without_a_known_root(settings, tree, steps):
    use_finders(settings, tree["root"])
    settings.STATICFILES_FINDERS = [f"{__name__}.RootlessFinder"]
    RootlessFinder.answer = str(tree["root"] / "hello.txt")
    wire = Wire(build_static_resource(), steps)
    assert wire.request("/static/hello.txt").status == 404


def test_static_root_is_indexed_once_at_start_up(settings, tree, steps):
    use_static_root(settings, tree["root"])
    wire = Wire(build_static_resource(), steps)
    (tree["root"] / "later.css").write_bytes(b"later")
    assert wire.request("/static/later.css").status == 404


def test_static_root_file_removed_after_start_up_is_404(settings, tree, steps):
    use_static_root(settings, tree["root"])
    wire = Wire(build_static_resource(), steps)
    (tree["root"] / "app.js").unlink()
    assert wire.request("/static/app.js").status == 404


# --- streaming --------------------------------------------------------------------------


@pytest.fixture
def big(settings, tmp_path, steps) -> tuple[Wire, bytes]:
    root = tmp_path / "root"
    root.mkdir()
    data = os.urandom(5 * CHUNK_SIZE + 123)
    (root / "big.bin").write_bytes(data)
    (root / "small.txt").write_bytes(b"small")
    use_static_root(settings, root)
    return Wire(build_static_resource(), steps), data


def body_length(transport: StringTransport) -> int:
    return len(transport.value().partition(b"\r\n\r\n")[2])


def test_large_file_leaves_in_chunks_and_arrives_intact(big):
    wire, data = big
    _channel, transport = wire.connect(b"/static/big.bin")
    sent = [body_length(transport)]
    while wire.pending():
        wire.step()
        sent.append(body_length(transport))
    assert sent[0] == 0  # nothing is read before the channel pulls
    assert max(b - a for a, b in itertools.pairwise(sent)) <= CHUNK_SIZE
    assert len(sent) > len(data) // CHUNK_SIZE
    reply = parse_reply(transport.value(), b"GET")
    assert reply.headers["content-length"] == str(len(data))
    assert hashlib.sha256(reply.body).digest() == hashlib.sha256(data).digest()


def test_slow_reader_does_not_hold_up_other_requests(big):
    wire, data = big
    _channel, transport = wire.connect(b"/static/big.bin")
    wire.step()
    transport.producer.pauseProducing()  # what TCP does when its send buffer is full
    paused_at = body_length(transport)
    assert 0 < paused_at < len(data)
    assert wire.request("/static/small.txt").body == b"small"
    wire.pump()
    assert body_length(transport) == paused_at
    transport.producer.resumeProducing()
    wire.pump()
    assert parse_reply(transport.value(), b"GET").body == data


def test_file_is_closed_when_the_client_goes_away(big, monkeypatch):
    wire, _data = big
    opened = []
    real_open = open

    def tracking_open(*args, **kwargs):
        handle = real_open(*args, **kwargs)
        opened.append(handle)
        return handle

    monkeypatch.setattr("builtins.open", tracking_open)
    channel, transport = wire.connect(b"/static/big.bin")
    wire.step()
    # What a TCP transport does when the peer goes away: stop its producer, then tell.
    transport.producer.stopProducing()
    channel.connectionLost(Failure(ConnectionError("client went away")))
    assert not wire.pending()
    assert opened
    assert all(handle.closed for handle in opened)


def test_file_that_shrank_after_indexing_closes_the_connection(big, tmp_path):
    wire, data = big
    (tmp_path / "root" / "big.bin").write_bytes(data[:CHUNK_SIZE])
    _channel, transport = wire.connect(b"/static/big.bin")
    wire.pump()
    assert transport.disconnecting
    assert body_length(transport) == CHUNK_SIZE


def test_file_that_grew_after_indexing_sends_only_the_announced_length(big, tmp_path):
    wire, data = big
    (tmp_path / "root" / "big.bin").write_bytes(data + b"EXTRA")
    _channel, transport = wire.connect(b"/static/big.bin")
    wire.pump()
    reply = parse_reply(transport.value(), b"GET")
    assert reply.body == data
    assert not transport.disconnecting


def test_two_requests_on_one_keep_alive_connection(big):
    wire, data = big
    channel, transport = wire.connect(b"/static/small.txt")
    wire.pump()
    channel.dataReceived(b"GET /static/big.bin HTTP/1.1\r\nHost: testserver\r\n\r\n")
    wire.pump()
    first, _, rest = transport.value().partition(b"small")
    assert b"200 OK" in first
    assert parse_reply(rest, b"GET").body == data
