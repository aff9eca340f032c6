"""The request: its body capped before it is buffered, its headers cleaned before any
resource sees them, and the client's address as a trusted proxy reports it."""

from __future__ import annotations

import ipaddress
import json
import re
import time

from django.conf import settings
from twisted.web.server import Request

from chat.live.records import ErrorCode, error_body
from project import metrics

# Headers that describe the client as seen by a proxy; only a trusted proxy may set them.
FORWARDED_HEADERS = (b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host")

_TOO_LARGE_BODY = json.dumps(
    error_body(ErrorCode.TOO_LARGE, "The request body is too large.")
).encode()

# Attachments (PROTOCOL.md "Attachments"): the upload route's body is capped by
# CHAT_MAX_UPLOAD_BYTES plus this allowance for the multipart framing (boundaries, part
# headers, a CSRF field), not by MAX_REQUEST_BYTES; the view refuses a file over the
# limit itself. The path is read from the request line, which is all there is when the
# length arrives (before Twisted's requestReceived).
UPLOAD_OVERHEAD_BYTES = 64 * 1024
_UPLOAD_PATH = re.compile(rb"/api/rooms/[a-z0-9][a-z0-9-]{0,49}/uploads/?")


def body_limit(target: bytes | None) -> int:
    """The largest body a request to ``target`` (the request line's target) may send."""
    if target is not None:
        path = target.split(b"?", 1)[0]
        if _UPLOAD_PATH.fullmatch(path):
            return settings.CHAT_MAX_UPLOAD_BYTES + UPLOAD_OVERHEAD_BYTES
    return settings.MAX_REQUEST_BYTES


class ParleyRequest(Request):
    """A request whose body is capped and whose headers are cleaned before any resource."""

    _refused = False
    body_bytes = 0
    max_body_bytes = None  # set in gotLength: MAX_REQUEST_BYTES, or the upload route's

    def gotLength(self, length: int | None) -> None:
        self.started_at = time.monotonic()
        self._clean_headers()
        line = getattr(self.channel, "_request_line", None)
        self.max_body_bytes = body_limit(getattr(line, "target", None))
        if length is not None and length > self.max_body_bytes:
            self._refuse_body()
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            return
        self.body_bytes += len(data)
        limit = self.max_body_bytes or settings.MAX_REQUEST_BYTES
        if self.body_bytes > limit:  # chunked bodies have no length
            self._refuse_body()
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self._refused:
            return
        super().requestReceived(command, path, version)

    def connectionLost(self, reason) -> None:
        # Twisted logs a request from finish(), which WSGIResource skips when the client
        # has already gone, even after the whole response was written: log it here.
        if not self.finished and not self._refused and hasattr(self, "started_at"):
            self.channel.site.log(self)
        super().connectionLost(reason)

    def _refuse_body(self) -> None:
        """Answer 413 and close, before the body is read into memory or a temporary file."""
        self.requestHeaders.removeHeader(b"expect")  # no "100 Continue" after a 413
        if self.content is not None:
            self.content.close()
            self.content = None
        metrics.REFUSED_BODIES.inc()
        self.channel.refuse(413, _TOO_LARGE_BODY, content_type=b"application/json")

    def _clean_headers(self) -> None:
        headers = self.requestHeaders
        # WSGI maps a header name to HTTP_<NAME> with "-" turned into "_", so a client's
        # "X_Forwarded_For" would overwrite a proxy's "X-Forwarded-For" in Django's eyes.
        # Names with "_" are never needed by Parley: drop them (as nginx does by default).
        for name, _values in list(headers.getAllRawHeaders()):
            if b"_" in name:
                headers.removeHeader(name)
        if not self.from_trusted_proxy():
            for name in FORWARDED_HEADERS:
                headers.removeHeader(name)

    def from_trusted_proxy(self) -> bool:
        return address_in(getattr(self.getClientAddress(), "host", None), settings.TRUSTED_PROXIES)

    def client_ip(self) -> str:
        """The client's address: the proxy's word for it when the proxy is trusted."""
        forwarded = self.getHeader(b"x-forwarded-for")
        if forwarded and self.from_trusted_proxy():
            # The proxy appends the address it saw: the last entry is the one it vouches for.
            return forwarded.decode("latin-1").split(",")[-1].strip()
        return getattr(self.getClientAddress(), "host", "-")


def address_in(host: str | None, networks) -> bool:
    """Whether ``host`` (an IPv4-mapped IPv6 address counts as its IPv4) is in ``networks``."""
    if not networks or not host:
        return False
    try:
        address = ipaddress.ip_address(host.strip())
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return any(address in net or (mapped is not None and mapped in net) for net in networks)
