"""How one static file answers a request: status, representation, validators, byte range.

``ParleyStaticFile`` is whitenoise's ``StaticFile`` with its 6.12 mistakes fixed:
one-byte ranges (``bytes=0-0``, ``bytes=-1``) get 206, not 416 (whitenoise #711);
malformed ranges are ignored instead of loosely parsed; If-None-Match compares weakly and
takes lists and ``*``; If-Range is honoured; Range is ignored on HEAD (RFC 9110 14.2);
the plain, gzip and brotli forms of a file each have their own strong ETag (``"..."``,
``"...-gz"``, ``"...-br"``), and If-None-Match and If-Range are compared with the form
Accept-Encoding picks, so a range is never cut from one form with another's validator.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.utils import parsedate
from http import HTTPStatus
from typing import IO

from chat.live.compat import (
    NOT_ALLOWED_RESPONSE,
    NOT_MODIFIED_HEADERS,
    Response,
    SlicedFile,
    StaticFile,
)

_BYTE_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)", re.IGNORECASE)
_ENTITY_TAG = re.compile(r'(?:W/)?("[^"]*")')
_ENCODING_SUFFIX = {"gzip": "gz", "br": "br"}


class HeaderList(list):
    """A response's (name, value) pairs, with their latin-1 bytes encoded once.

    A file's 200 and 304 headers are fixed at start-up; encoding them for Twisted on
    every request was a measurable part of a static request's CPU.
    """

    def __init__(self, items: list[tuple[str, str]]) -> None:
        super().__init__(items)
        self.raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in items]


def etag_matches_weakly(if_none_match: str, etag: str) -> bool:
    """RFC 9110 13.1.2: If-None-Match compares weakly, lists tags, and ``*`` is any tag."""
    if if_none_match.strip() == "*":
        return True
    return etag.removeprefix("W/") in _ENTITY_TAG.findall(if_none_match)


@dataclass(frozen=True)
class Representation:
    """One of a file's forms (plain, gzip, brotli), with headers and validator of its own."""

    encoding: str | None
    accepts: re.Pattern[str]  # matches an Accept-Encoding that takes this form
    path: str
    headers: list[tuple[str, str]]
    etag: str | None
    not_modified: Response


def representation_etag(etag: str | None, encoding: str | None) -> str | None:
    """The plain file's tag for the plain file; ``"...-gz"``/``"...-br"`` for the others.

    RFC 9110 8.8.3: a strong tag names one sequence of bytes. Sharing one tag let a
    cache, or a client's If-Range, splice the plain file's bytes onto gzip ones.
    """
    if encoding is None or not etag:
        return etag
    suffix = _ENCODING_SUFFIX.get(encoding, encoding)
    return etag[:-1] + f"-{suffix}" + etag[-1]


class ParleyStaticFile(StaticFile):
    """whitenoise's precomputed responses for one file, with correct validators and ranges.

    Each representation has its own ETag, and every conditional header is compared
    with the representation Accept-Encoding picks, not with the plain file's.
    """

    def get_alternatives(self, base_headers, files) -> list[Representation]:
        representations = []
        for accepts, path, items in super().get_alternatives(base_headers, files):
            headers = dict(items)
            encoding = headers.get("Content-Encoding")
            etag = representation_etag(base_headers["ETag"], encoding)
            items = HeaderList([(k, etag if k == "ETag" else v) for k, v in items])
            not_modified = HeaderList([(k, v) for k, v in items if k in NOT_MODIFIED_HEADERS])
            representations.append(
                Representation(
                    encoding,
                    accepts,
                    path,
                    items,
                    etag,
                    Response(HTTPStatus.NOT_MODIFIED, not_modified, None),
                )
            )
        return representations

    def representation_for(self, request_headers: dict[str, str]) -> Representation:
        accept_encoding = request_headers.get("HTTP_ACCEPT_ENCODING", "")
        if accept_encoding == "*":
            accept_encoding = ""
        # Sorted by size (whitenoise): the first accepted one is the smallest.
        for representation in self.alternatives:
            if representation.accepts.search(accept_encoding):
                return representation
        return self.alternatives[-1]  # the plain file always matches; never reached

    def get_response(self, method: str, request_headers: dict[str, str]) -> Response:
        if method not in ("GET", "HEAD"):
            return NOT_ALLOWED_RESPONSE
        chosen = self.representation_for(request_headers)
        if self.is_not_modified(request_headers, chosen.etag):
            return chosen.not_modified
        file_handle = open(chosen.path, "rb") if method == "GET" else None  # noqa: SIM115
        range_header = request_headers.get("HTTP_RANGE")
        # Range is for GET only (RFC 9110 14.2), and only for the representation that
        # If-Range names.
        if range_header and method == "GET" and self.if_range_holds(request_headers, chosen):
            try:
                return self.get_range_response(range_header, chosen.headers, file_handle)
            except ValueError:  # a Range to ignore: the whole representation
                pass
        return Response(HTTPStatus.OK, chosen.headers, file_handle)

    def is_not_modified(self, request_headers: dict[str, str], etag: str | None = None) -> bool:
        if_none_match = request_headers.get("HTTP_IF_NONE_MATCH")
        if if_none_match is None:
            return super().is_not_modified(request_headers)  # If-Modified-Since
        return etag_matches_weakly(if_none_match, etag or self.etag)

    def if_range_holds(
        self, request_headers: dict[str, str], chosen: Representation | None = None
    ) -> bool:
        """RFC 9110 13.1.5: a Range is only for the representation If-Range names."""
        if_range = request_headers.get("HTTP_IF_RANGE")
        if if_range is None:
            return True
        if_range = if_range.strip()
        if if_range.startswith('"'):
            return if_range == (chosen.etag if chosen is not None else self.etag)
        if if_range.startswith("W/") or self.last_modified is None:
            return False
        return parsedate(if_range) == self.last_modified

    def get_range_response(
        self, range_header: str, base_headers: list[tuple[str, str]], file_handle: IO | None
    ) -> Response:
        headers = [item for item in base_headers if item[0] != "Content-Length"]
        size = int(dict(base_headers)["Content-Length"])
        byte_range = self.get_byte_range(range_header, size)
        if byte_range is None:
            return self.get_range_not_satisfiable_response(file_handle, size)
        start, end = byte_range
        if file_handle is not None:
            file_handle = SlicedFile(file_handle, start, end)
        headers.append(("Content-Range", f"bytes {start}-{end}/{size}"))
        headers.append(("Content-Length", str(end - start + 1)))
        return Response(HTTPStatus.PARTIAL_CONTENT, headers, file_handle)

    def get_byte_range(self, range_header: str, size: int) -> tuple[int, int] | None:
        """First and last byte of the one range asked for; None if it is not satisfiable.

        Raises ValueError when the header is to be ignored (RFC 9110 14.2): malformed, a
        last byte before the first, or several ranges (answered with the whole file).
        """
        match = _BYTE_RANGE.fullmatch(range_header.strip())
        if match is None:
            raise ValueError(range_header)
        first, last = match.groups()
        if not first:  # "bytes=-N": the final N bytes
            if not last:
                raise ValueError(range_header)
            suffix = int(last)
            return (max(size - suffix, 0), size - 1) if suffix and size else None
        start = int(first)
        if last and int(last) < start:
            raise ValueError(range_header)
        if start >= size:
            return None
        return start, min(int(last), size - 1) if last else size - 1
