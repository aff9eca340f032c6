"""The request head, checked once before any resource sees it (RFC 9112).

Twisted's parser is lenient where leniency is a way round a proxy or a way to smuggle a
request: ``GET xmetrics`` was served as ``/metrics`` (it cuts the first byte of any
target), ``Transfer-Encoding: identity`` left the body to be read as the next request,
a missing or doubled Host was served, and over-long lines were closed without a word.
``HeadReader`` reads one head line by line, refuses what RFC 9112 says to refuse with a
``HeadError`` carrying the status to answer, and hands back a head in canonical form
for Twisted to parse: origin-form target, one valid Host, and framing headers that mean
exactly one thing.

It is pure (bytes in, bytes or an exception out), so that a property test can throw
arbitrary heads at it; the channel in ``project/http.py`` feeds it.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

# A request line longer than this is refused with 414: no URL Parley serves comes near
# it, and browsers cap theirs at a few KiB. Header lines together (without their CRLF)
# may take HEADER_SECTION_LIMIT bytes, in at most MAX_HEADERS lines: more is 431. The
# limits bound what one connection makes the server hold before a request even starts.
REQUEST_LINE_LIMIT = 8 * 1024
HEADER_SECTION_LIMIT = 16 * 1024
MAX_HEADERS = 100

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Request targets: visible ASCII only. Raw spaces, controls and bytes over 0x7E are not
# part of any URI (clients percent-encode them).
_TARGET = re.compile(rb"[\x21-\x7e]+")
# A field value: visible characters, spaces, tabs and obs-text; never a control byte.
_FIELD_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
_ABSOLUTE = re.compile(rb"(?i:https?)://([^/?#]*)([/?].*)?", re.DOTALL)
# A host as Django accepts it (django.http.request.host_validation_re), plus an optional
# port; the bracketed form is checked again as an IPv6 address.
_HOST = re.compile(rb"(?i:([a-z0-9.-]+)|\[([a-f0-9:.]+)\])(?::([0-9]{1,5}))?")
_CONTENT_LENGTH = re.compile(rb"[0-9]{1,18}")
VERSIONS = (b"HTTP/1.0", b"HTTP/1.1")


class HeadError(Exception):
    """The head is refused: answer ``status`` and close the connection."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class RequestLine:
    method: bytes
    target: bytes  # origin-form ("/path?query") or "*"
    version: bytes
    authority: bytes | None = None  # the host of an absolute-form target

    def line(self) -> bytes:
        return b" ".join((self.method, self.target, self.version))


def parse_request_line(line: bytes) -> RequestLine:
    """``method SP request-target SP HTTP-version``, each part checked (RFC 9112 3)."""
    if len(line) > REQUEST_LINE_LIMIT:
        raise HeadError(414, "The request line is too long.")
    parts = line.split(b" ")
    if len(parts) != 3:
        raise HeadError(400, "The request line is not 'METHOD target HTTP/1.x'.")
    method, target, version = parts
    if not _TOKEN.fullmatch(method):
        raise HeadError(400, "The method is not a token.")
    if version not in VERSIONS:
        raise HeadError(400, "Only HTTP/1.0 and HTTP/1.1 are served.")
    if not _TARGET.fullmatch(target):
        raise HeadError(400, "The request target holds a character no URI has.")
    if target.startswith(b"/"):
        return RequestLine(method, target, version)
    if target == b"*":
        if method != b"OPTIONS":
            raise HeadError(400, "'*' is a target for OPTIONS only.")
        return RequestLine(method, target, version)
    absolute = _ABSOLUTE.fullmatch(target)
    if absolute is None:
        # Neither origin- nor absolute-form: authority-form (CONNECT) is for proxies,
        # and anything else is what Twisted would have served with its first byte cut.
        raise HeadError(400, "The request target must start with '/' or be an http(s) URL.")
    authority, rest = absolute.groups()
    if b"@" in authority:  # RFC 9110 4.2.4: userinfo in an http URI is an error
        raise HeadError(400, "The request target carries user information.")
    if not valid_host(authority):
        raise HeadError(400, "The request target's host is malformed.")
    path = rest or b"/"
    if path.startswith(b"?"):
        path = b"/" + path
    return RequestLine(method, path, version, authority=authority)


def valid_host(value: bytes) -> bool:
    """RFC 9110 7.2 ``uri-host [ ":" port ]``, kept to the hosts Django accepts."""
    match = _HOST.fullmatch(value)
    if match is None:
        return False
    _name, literal, port = match.groups()
    if literal is not None:
        try:
            ipaddress.IPv6Address(literal.decode("ascii"))
        except ValueError:
            return False
    return port is None or int(port) <= 65535


def parse_header_line(line: bytes) -> tuple[bytes, bytes]:
    """``field-name ":" OWS field-value OWS`` (RFC 9112 5), or HeadError 400."""
    if line[:1] in (b" ", b"\t"):
        # obs-fold (or whitespace before the first field): RFC 9112 5.2 allows refusing
        # it, and a proxy that unfolds differently would see other headers than we do.
        raise HeadError(400, "Folded header lines are not accepted.")
    name, colon, value = line.partition(b":")
    if not colon or not _TOKEN.fullmatch(name):
        raise HeadError(400, "A header line is not 'Name: value'.")
    value = value.strip(b" \t")
    if not _FIELD_VALUE.fullmatch(value):
        raise HeadError(400, "A header value holds a control character.")
    return name, value


@dataclass
class Head:
    request_line: RequestLine
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)

    def lines(self) -> list[bytes]:
        """The head as Twisted should parse it, the request line first."""
        return [self.request_line.line(), *(name + b": " + value for name, value in self.headers)]


def check_head(request_line: RequestLine, headers: list[tuple[bytes, bytes]]) -> Head:
    """The rules that need the whole head: Host, message framing, Upgrade."""
    by_name: dict[bytes, list[bytes]] = {}
    for name, value in headers:
        by_name.setdefault(name.lower(), []).append(value)
    version = request_line.version

    hosts = by_name.get(b"host", [])
    if len(hosts) > 1:
        raise HeadError(400, "More than one Host header.")
    if not hosts and version == b"HTTP/1.1":
        raise HeadError(400, "HTTP/1.1 needs a Host header.")
    if hosts and not valid_host(hosts[0]):
        raise HeadError(400, "The Host header is malformed.")

    codings = by_name.get(b"transfer-encoding")
    lengths = by_name.get(b"content-length")
    if codings is not None:
        if version != b"HTTP/1.1":  # RFC 9112 6.1: the framing of such a message is faulty
            raise HeadError(400, "Transfer-Encoding needs HTTP/1.1.")
        listed = [c.strip(b" \t").lower() for value in codings for c in value.split(b",")]
        if listed != [b"chunked"]:
            # Anything else (identity, gzip, chunked twice or not last) would leave the
            # body's end to guesswork; RFC 9112 6.3 says refuse and close.
            raise HeadError(400, "The only Transfer-Encoding accepted is 'chunked'.")
        if lengths is not None:
            raise HeadError(400, "Content-Length and Transfer-Encoding together.")
    if lengths is not None and (len(lengths) != 1 or not _CONTENT_LENGTH.fullmatch(lengths[0])):
        raise HeadError(400, "Content-Length must be one decimal number.")

    if version == b"HTTP/1.0" and b"upgrade" in by_name:
        # RFC 9110 7.8: HTTP/1.0 has no protocol switch. Refusing here keeps every
        # resource (the WebSocket one included) from answering 101 to it.
        raise HeadError(400, "Upgrade needs HTTP/1.1.")

    if request_line.authority is not None:
        # RFC 9112 3.2.2: with an absolute-form target, its host is the request's host.
        headers = [(n, v) for n, v in headers if n.lower() != b"host"]
        headers.append((b"Host", request_line.authority))
    return Head(request_line, headers)


class HeadReader:
    """One request head, fed line by line (without CRLF) as they arrive.

    ``feed()`` returns None while the head goes on and the checked ``Head`` at its empty
    line; it raises HeadError as soon as a line breaks a rule, so that a bad or
    oversized head is refused without being held whole.
    """

    def __init__(self) -> None:
        self.request_line: RequestLine | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.header_bytes = 0

    def feed(self, line: bytes) -> Head | None:
        if self.request_line is None:
            self.request_line = parse_request_line(line)
            return None
        if not line:
            return check_head(self.request_line, self.headers)
        self.header_bytes += len(line)
        if self.header_bytes > HEADER_SECTION_LIMIT or len(self.headers) >= MAX_HEADERS:
            raise HeadError(431, "The request's header section is too large.")
        self.headers.append(parse_header_line(line))
        return None

    def line_too_long(self) -> HeadError:
        """The error for a line over the line reader's limit, by where it fell."""
        if self.request_line is None:
            return HeadError(414, "The request line is too long.")
        return HeadError(431, "A request header line is too long.")
