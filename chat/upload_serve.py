"""``GET /uploads/<id>/<name>`` and ``/uploads/<id>/thumb/``: attachments, to readers of
their room only (PROTOCOL.md "Attachments").

Why a Django view (served through WSGIResource) and not a Twisted resource: whether a
file may be served is ORM work (the upload, its message, ``chat.access.may_read``), and
its bytes come from Django's storage API, whose ``open`` and ``read`` block (a disk, or
S3 over the network): both belong on a WSGI thread, never on the reactor. The body is a
``StreamingHttpResponse`` of 64 KiB reads, so a file is never read whole, and a slow
client blocks its WSGI thread at the channel's WriteGate (project/backpressure.py)
instead of filling memory. The price is a WSGI thread per download in progress; thumbnails
are small and files are at most CHAT_MAX_UPLOAD_BYTES.

Who sees what: an upload attached to a live message is served to whoever may read its
room; an upload not attached yet only to its uploader (the composer's preview); anyone
else, a deleted message's upload, an unknown id: 404, the same answer for all, so an id
cannot be probed. Every answer (304 and 206 too) carries ``X-Content-Type-Options:
nosniff``, ``Content-Security-Policy: sandbox`` (a file opened in a tab runs no script and
reaches no origin), ``Cache-Control: private, no-cache`` (a browser keeps the bytes but
asks again, so a deletion or a lost membership takes effect at once; the answer is a
304) and ``Cross-Origin-Resource-Policy: same-origin`` (no other site embeds them).
Everything but PNG, JPEG, GIF and WebP is ``Content-Disposition: attachment``.

Conditional requests: ``ETag`` (the id and size: an upload never changes) and
``Last-Modified`` (its creation), ``If-None-Match`` / ``If-Modified-Since`` -> 304,
``If-Match`` / ``If-Unmodified-Since`` -> 412 (Django's ``get_conditional_response``).
``Range``: one range of bytes (``a-b``, ``a-``, ``-n``) -> 206 with ``Content-Range``; a
range beyond the end -> 416 with ``Content-Range: bytes */size``; several ranges, or an
``If-Range`` that does not match -> the whole file (200), as RFC 9110 allows.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.utils.cache import get_conditional_response
from django.utils.http import content_disposition_header, http_date, parse_http_date_safe

from chat import access
from chat.live.validation import UPLOAD_ID
from chat.models import Upload
from chat.uploads import RASTER, TEXT, THUMBNAIL_TYPE

CHUNK_BYTES = 64 * 1024
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_ALLOWED = "GET, HEAD"


def serve_file(request: HttpRequest, upload_id: str, name: str) -> HttpResponseBase:
    """The file; ``name`` is for the browser's sake (the id alone names the upload)."""
    return _serve(request, upload_id, thumbnail=False)


def serve_thumbnail(request: HttpRequest, upload_id: str) -> HttpResponseBase:
    return _serve(request, upload_id, thumbnail=True)


def readable_upload(request: HttpRequest, upload_id: str) -> Upload | None:
    """The upload if this request's user may have its bytes (see the module's text)."""
    if not UPLOAD_ID.fullmatch(upload_id):
        return None
    upload = Upload.objects.select_related("room", "message").filter(pk=upload_id).first()
    if upload is None:
        return None
    user_id = access.user_id_of(request.user)
    if upload.message is None:
        return upload if user_id is not None and user_id == upload.user_id else None
    if upload.message.deleted_at is not None:
        return None
    return upload if access.may_read(upload.room, user_id) else None


def _serve(request: HttpRequest, upload_id: str, thumbnail: bool) -> HttpResponseBase:
    if request.method not in ("GET", "HEAD"):
        response = HttpResponse(b"Method Not Allowed\n", status=405, content_type="text/plain")
        response["Allow"] = _ALLOWED
        return _secured(response)
    upload = readable_upload(request, upload_id)
    field = None if upload is None else (upload.thumbnail if thumbnail else upload.file)
    if not field:
        return _secured(HttpResponse(b"Not Found\n", status=404, content_type="text/plain"))
    size = field.storage.size(field.name) if thumbnail else upload.size
    etag = f'"{upload.id}{"-t" if thumbnail else ""}-{size}"'
    modified = int(upload.created_at.timestamp())
    headers = {"ETag": etag, "Last-Modified": http_date(modified), "Accept-Ranges": "bytes"}

    conditional = get_conditional_response(request, etag=etag, last_modified=modified)
    if conditional is not None:
        for header, value in headers.items():
            conditional[header] = value
        return _secured(conditional)

    content_type = THUMBNAIL_TYPE if thumbnail else upload.content_type
    inline = content_type in RASTER
    if content_type == TEXT:
        content_type = "text/plain; charset=utf-8"
    wanted = byte_range(request, size, etag, modified)
    if wanted == "unsatisfiable":
        response = HttpResponse(b"", status=416, content_type="text/plain")
        response["Content-Range"] = f"bytes */{size}"
        return _secured(response, headers)
    start, end = wanted if wanted is not None else (0, size - 1)
    length = max(0, end - start + 1)
    if request.method == "HEAD":
        response = HttpResponse(b"", content_type=content_type)
    else:
        response = StreamingHttpResponse(_chunks(field, start, length), content_type=content_type)
    response["Content-Length"] = str(length)
    if wanted is not None:
        response.status_code = 206
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
    name = f"{upload.name}.webp" if thumbnail else upload.name
    response["Content-Disposition"] = content_disposition_header(not inline, name)
    return _secured(response, headers)


def byte_range(
    request: HttpRequest, size: int, etag: str, modified: int
) -> tuple[int, int] | str | None:
    """The one range of bytes ``Range`` asks for, "unsatisfiable", or None for the whole."""
    header = request.headers.get("Range")
    if not header:
        return None
    if_range = request.headers.get("If-Range")
    if if_range:
        stamp = parse_http_date_safe(if_range)
        # A strong validator only: an ETag equal to ours, or exactly our Last-Modified.
        if if_range != etag and (stamp is None or stamp != modified):
            return None
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return None  # several ranges, another unit, or nonsense: the whole file
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        suffix = int(last)
        if suffix == 0:
            return "unsatisfiable"
        return max(0, size - suffix), size - 1
    start = int(first)
    end = size - 1 if not last else min(int(last), size - 1)
    if last and int(last) < start:
        return None  # invalid: RFC 9110 says ignore the header
    if start >= size:
        return "unsatisfiable"
    return start, end


def _chunks(field, start: int, length: int) -> Iterator[bytes]:
    """``length`` bytes of ``field``'s file from ``start``, 64 KiB per read."""
    with field.storage.open(field.name, "rb") as file:
        if start:
            file.seek(start)
        left = length
        while left > 0:
            chunk = file.read(min(CHUNK_BYTES, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk


def _secured(response: HttpResponseBase, headers: dict | None = None) -> HttpResponseBase:
    for header, value in (headers or {}).items():
        response[header] = value
    response["X-Content-Type-Options"] = "nosniff"
    # Set here, so django-csp's middleware leaves it as it is (it never overwrites).
    response["Content-Security-Policy"] = "sandbox"
    response["Cache-Control"] = "private, no-cache"
    # Another site's page may not embed a file of a public room (hotlinking).
    response["Cross-Origin-Resource-Policy"] = "same-origin"
    return response
