"""Django's static files at ``/static/``, served by the reactor without blocking it.

whitenoise does the HTTP work; this module adds what a Twisted server and a stricter file
policy need. Three parts, each with one job:

* ``clean_name`` turns the request's path segments (already percent-decoded by Twisted)
  into a relative file name, or refuses it before the filesystem is touched: no empty,
  ``.``, ``..`` or other dot segments (no traversal, no dotfiles, no directory listing), no
  segment that decoded to contain ``/``, ``\\`` or NUL (``%2f``, ``%5c``, ``%00``).
* ``StaticFileIndex`` is whitenoise's file table. With DEBUG off it indexes STATIC_ROOT
  (as ``collectstatic`` filled it) once at start-up, with every header precomputed, so a
  request is one dict lookup; files added later are not seen until a restart. With DEBUG
  on it asks Django's finders on every request (whitenoise's "autorefresh"), so it serves
  exactly what ``finders.find`` finds and new files show up at once. Either way only
  regular files whose real path stays inside their root get in: a symlink that leads out
  is as absent as a missing file (so ``collectstatic --link`` output is not servable).
* ``StaticResource`` answers 405 to methods other than GET/HEAD and 404 to refused or
  unknown names, lets the file's ``ParleyStaticFile`` pick the response (200/304/206/416,
  compressed variant) and streams the body with ``FileBodyProducer``.

The reactor thread opens and stats files (cheap) and reads bodies 64 KiB per pull, like
twisted.web.static; it never reads a whole file, and a slow client pauses the producer
instead of filling memory. Only DEBUG's per-request finder lookup touches the filesystem
more than that, on purpose: it is a development mode.

``ParleyStaticFile`` (project/static_responses.py) is whitenoise's ``StaticFile`` with its
mistakes fixed: ranges, validators, and one ETag per representation.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from http import HTTPStatus
from typing import IO
from urllib.parse import urlparse
from wsgiref.headers import Headers

from django.conf import settings
from django.contrib.staticfiles import finders
from twisted.internet.interfaces import IPullProducer
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from chat.live.compat import (
    NOT_ALLOWED_RESPONSE,
    Response,
    WhiteNoise,
    WhiteNoiseMiddleware,
    ensure_leading_trailing_slash,
)
from project.static_responses import ParleyStaticFile

# One read per pull, as twisted.web.static does: small enough that reading it on the
# reactor thread does not stall other connections, large enough to keep a socket busy.
CHUNK_SIZE = 64 * 1024
# Outside DEBUG, files whose names carry no content hash may change at the next deploy.
MAX_AGE = 60
NOT_FOUND_BODY = b"Not Found\n"

_FORBIDDEN_IN_SEGMENT = ("/", "\\", "\x00")
# The request headers whitenoise reads, under the WSGI names it expects.
_REQUEST_HEADERS = {
    b"accept-encoding": "HTTP_ACCEPT_ENCODING",
    b"if-modified-since": "HTTP_IF_MODIFIED_SINCE",
    b"if-none-match": "HTTP_IF_NONE_MATCH",
    b"if-range": "HTTP_IF_RANGE",
    b"range": "HTTP_RANGE",
}


def clean_name(segments: Iterable[bytes]) -> str | None:
    """The relative file name the decoded path segments ask for, or None to refuse them."""
    names = []
    for segment in segments:
        try:
            name = segment.decode("utf-8")
        except UnicodeDecodeError:
            return None
        if not name or name.startswith(".") or any(c in name for c in _FORBIDDEN_IN_SEGMENT):
            return None
        names.append(name)
    return "/".join(names) or None


def is_inside(real_path: str, real_root: str) -> bool:
    return real_path == real_root or real_path.startswith(real_root.rstrip(os.sep) + os.sep)


def servable_stat(path: str, real_root: str) -> os.stat_result | None:
    """The stat of ``path`` if it is a regular file whose real path is under ``real_root``."""
    try:
        result = os.stat(path)
    except OSError:
        return None
    if stat.S_ISREG(result.st_mode) and is_inside(os.path.realpath(path), real_root):
        return result
    return None


def scan_root(root: str) -> Iterator[tuple[str, os.stat_result]]:
    """(path, stat) of every servable file under ``root``; dot entries are skipped."""
    real_root = os.path.realpath(root)

    def scan(directory: str, ancestors: frozenset[str]) -> Iterator[tuple[str, os.stat_result]]:
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    real_dir = os.path.realpath(entry.path)
                    # A symlink back to an ancestor would make the walk endless.
                    if is_inside(real_dir, real_root) and real_dir not in ancestors:
                        yield from scan(entry.path, ancestors | {real_dir})
                elif (found := servable_stat(entry.path, real_root)) is not None:
                    yield entry.path, found

    yield from scan(root, frozenset({real_root}))


class StaticFileIndex(WhiteNoiseMiddleware):
    """whitenoise's file table and headers, fed only with files Parley may serve.

    Subclasses the Django middleware for its finder lookup and its manifest-aware
    ``immutable_file_test``, but not its ``__init__``: that would also index the finders'
    directories with whitenoise's own scan, which follows symlinks out and keeps dotfiles.
    """

    def __init__(self, *, debug: bool, static_root: str | None, static_prefix: str) -> None:
        WhiteNoise.__init__(self, None, autorefresh=debug, max_age=0 if debug else MAX_AGE)
        self.use_finders = debug
        self.static_prefix = ensure_leading_trailing_slash(static_prefix)
        if not debug and static_root:
            self.add_files(static_root, prefix=self.static_prefix)

    def find(self, name: str) -> ParleyStaticFile | None:
        url = self.static_prefix + name
        if self.autorefresh:
            # DEBUG only: the finders' stat calls run on the reactor thread, acceptable in
            # development, where new files must show up without a restart.
            return self.find_file(url)
        return self.files.get(url)

    def update_files_dictionary(self, root: str, prefix: str) -> None:
        stat_cache = dict(scan_root(root))
        for path in stat_cache:
            url = prefix + os.path.relpath(path, root).replace(os.sep, "/")
            self.add_file_to_dictionary(url, path, stat_cache=stat_cache)

    def get_static_file(
        self, path: str, url: str, stat_cache: dict[str, os.stat_result] | None = None
    ) -> ParleyStaticFile:
        if stat_cache is None:  # a finder's answer (DEBUG): checked like STATIC_ROOT's files
            stat_cache = self.finder_file_stats(path)
        headers = Headers([])
        self.add_mime_headers(headers, path, url)
        self.add_cache_headers(headers, path, url)
        headers["Accept-Ranges"] = "bytes"
        if self.allow_all_origins:
            headers["Access-Control-Allow-Origin"] = "*"
        # Paths missing from stat_cache (escaping symlinks included) raise MissingFileError.
        return ParleyStaticFile(
            path,
            headers.items(),
            stat_cache=stat_cache,
            encodings={"gzip": path + ".gz", "br": path + ".br"},
        )

    def finder_file_stats(self, path: str) -> dict[str, os.stat_result]:
        """Stats of ``path`` and its compressed variants, if inside the finder root it is in."""
        roots = [root for root in finder_roots() if is_inside(path, root)]
        if not roots:  # an unknown finder's file: no root to check it against
            return {}
        real_root = os.path.realpath(max(roots, key=len))
        candidates = (path, path + ".gz", path + ".br")
        return {p: found for p in candidates if (found := servable_stat(p, real_root))}


def finder_roots() -> list[str]:
    """The directories Django's finders look into (finders.find returns paths under them)."""
    roots = []
    for finder in finders.get_finders():
        storages = list(getattr(finder, "storages", {}).values())
        storages.append(getattr(finder, "storage", None))
        for storage in storages:
            location = getattr(storage, "location", None)
            if location:
                roots.append(os.path.abspath(location))
    return roots


@implementer(IPullProducer)
class FileBodyProducer:
    """Writes ``length`` bytes of an open file to a request, one chunk per pull.

    The channel pulls the next chunk only when the transport has room, so a slow reader
    costs one chunk of memory and no thread, and other connections are served between
    chunks. The body never exceeds the announced Content-Length, even if the file grew.
    """

    def __init__(self, request: Request, file: IO[bytes], length: int) -> None:
        self.request: Request | None = request
        self.file = file
        self.remaining = length

    def start(self) -> None:
        assert self.request is not None
        self.request.notifyFinish().addErrback(lambda _: self.stopProducing())
        self.request.registerProducer(self, False)

    def resumeProducing(self) -> None:
        request = self.request
        if request is None:
            return
        data = self.file.read(min(CHUNK_SIZE, self.remaining)) if self.remaining else b""
        if not data and self.remaining:
            # The file shrank after its length was announced; the response can't be
            # completed, and closing tells the client so instead of leaving it waiting.
            request.unregisterProducer()
            request.loseConnection()
            self.stopProducing()
            return
        self.remaining -= len(data)
        request.write(data)
        if self.remaining == 0 and self.request is not None:
            request.unregisterProducer()
            request.finish()
            self.stopProducing()

    def stopProducing(self) -> None:
        self.file.close()
        self.request = None


class StaticResource(Resource):
    """The ``/static/`` leaf: finds the file, lets it choose the response, streams it."""

    isLeaf = True

    def __init__(self, index: StaticFileIndex) -> None:
        super().__init__()
        self.index = index

    def render(self, request: Request) -> int:
        method = request.method.decode("latin-1")
        if method not in ("GET", "HEAD"):
            return self.answer(request, NOT_ALLOWED_RESPONSE)
        name = clean_name(request.postpath or [])
        try:
            static_file = self.index.find(name) if name else None
            if static_file is None:
                return self.not_found(request)
            response = static_file.get_response(method, request_headers(request))
        except OSError:  # gone or unreadable since it was indexed
            return self.not_found(request)
        return self.answer(request, response)

    @staticmethod
    def answer(request: Request, response: Response) -> int:
        request.setResponseCode(int(response.status))
        raw = getattr(response.headers, "raw", None)
        if raw is None:  # built for this request (a range, a refusal): encoded now
            raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
        set_header = request.setHeader
        for name, value in raw:
            set_header(name, value)
        length = request.responseHeaders.getRawHeaders(b"content-length")
        if response.file is None:
            if length is None and response.status != HTTPStatus.NOT_MODIFIED:
                request.setHeader(b"content-length", b"0")
            request.finish()
        elif int(length[0]) <= CHUNK_SIZE:
            # Most static files fit in one chunk: one read and one write, no producer.
            size = int(length[0])
            with response.file as file:
                data = file.read(size)
            if len(data) < size:  # shrank since it was indexed: see FileBodyProducer
                request.loseConnection()
                return NOT_DONE_YET
            request.write(data)
            request.finish()
        else:
            FileBodyProducer(request, response.file, int(length[0])).start()
        return NOT_DONE_YET

    @staticmethod
    def not_found(request: Request) -> int:
        request.setResponseCode(HTTPStatus.NOT_FOUND)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"content-length", b"%d" % len(NOT_FOUND_BODY))
        request.write(NOT_FOUND_BODY)  # Twisted drops it for HEAD, keeping the headers
        request.finish()
        return NOT_DONE_YET


def request_headers(request: Request) -> dict[str, str]:
    found = {}
    for name, key in _REQUEST_HEADERS.items():
        values = request.requestHeaders.getRawHeaders(name)
        if values:
            found[key] = ", ".join(value.decode("latin-1") for value in values)
    return found


def build_static_resource() -> Resource:
    """The resource for ``/static/``, configured from Django's settings (after setup())."""
    index = StaticFileIndex(
        debug=settings.DEBUG,
        static_root=os.fspath(settings.STATIC_ROOT) if settings.STATIC_ROOT else None,
        static_prefix=urlparse(settings.STATIC_URL or "/static/").path,
    )
    return StaticResource(index)
