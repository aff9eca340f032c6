"""Attachments: an uploaded file checked, typed, measured and stored (PROTOCOL.md
"Attachments"); the attachment object; the removal of uploads never attached.

The body never sits whole in memory. Twisted spools a request body over 100 KB to a
temporary file and caps the upload route at CHAT_MAX_UPLOAD_BYTES plus the multipart
framing (project/request.py); Django's multipart parser writes the file part to another
temporary file past FILE_UPLOAD_MAX_MEMORY_SIZE (64 KiB); here the file is read in
chunks (the first 8 KiB to sniff, all of it, chunk by chunk, for the UTF-8 test) and
``Storage.save`` moves the temporary file into place (FileSystemStorage) or streams it
(any other storage, S3 included).

The content type is the server's, from the content (``filetype``'s magic numbers), never
the client's claim nor the name's extension. A raster image (PNG, JPEG, GIF, WebP) is one
only if Pillow opens it as that format, passes ``verify`` and decodes: then it gets its
width, height and a WebP thumbnail at most 400 px on the long side. A file with an image's
magic and something else behind it is ``application/octet-stream``. Text is
``text/plain`` only if it decodes as UTF-8 (and holds no NUL); HTML, SVG and script are
text like any other and are served as attachments. An image whose pixel count is over
``PIL.Image.MAX_IMAGE_PIXELS`` (Pillow's decompression-bomb limit, read at each call) is
refused with 400 and nothing is stored.

This runs on a WSGI thread (the upload view): Pillow's decoding is CPU work that must not
run on the reactor, and the WSGI pool is where Django's blocking work lives.
"""

from __future__ import annotations

import codecs
import logging
import os
import unicodedata
import warnings
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from io import BytesIO
from urllib.parse import quote

import filetype
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django.utils import timezone
from PIL import Image, ImageOps, UnidentifiedImageError

from chat.live.records import ErrorCode
from chat.models import Room, Upload
from chat.models_extra import thumbnail_path, upload_path

logger = logging.getLogger(__name__)

# Pillow's format names of the raster images shown inline (PROTOCOL.md).
RASTER = {"image/png": "PNG", "image/jpeg": "JPEG", "image/gif": "GIF", "image/webp": "WEBP"}
TEXT = "text/plain"
BINARY = "application/octet-stream"
THUMBNAIL_SIDE = 400
THUMBNAIL_TYPE = "image/webp"  # WebP keeps alpha (PNG, GIF) and is small for photos
EXIF_ORIENTATION = 0x0112
SNIFF_BYTES = 8192  # filetype needs 261; the rest is slack for formats with a late magic
CHUNK_BYTES = 64 * 1024
# The model's ``name`` column; a longer name is cut, keeping its extension (below).
MAX_NAME_CHARS = Upload._meta.get_field("name").max_length
MAX_EXTENSION_CHARS = 16  # ".tar.gz" yes; a 5 KB "extension" is part of the name
DEFAULT_NAME = "file"
# PROTOCOL.md: an upload never attached is removed after 24 h.
UNATTACHED_LIFETIME = timedelta(hours=24)
CLEANUP_BATCH = 500


class UploadRefused(Exception):
    """A file that is not stored; ``code`` and ``detail`` are the API error's."""

    def __init__(self, code: ErrorCode, detail: str) -> None:
        super().__init__(detail)
        self.code, self.detail = code, detail


@dataclass(frozen=True, slots=True)
class Picture:
    """What Pillow found in a raster image: its size and the thumbnail's bytes."""

    width: int
    height: int
    thumbnail: bytes


# -- names ------------------------------------------------------------------------------


def clean_name(raw: object) -> str:
    """The name to show and serve for a client's file name.

    Only the last path segment (``../../etc/passwd`` -> ``passwd``, ``C:\\x\\y.txt`` ->
    ``y.txt``), NFC, no control, format, surrogate or unassigned character (so no NUL,
    no bidi override that would show ``exe.txt`` for ``txt.exe``), no leading dots or
    spaces, no trailing dots or spaces (Windows drops them when saving). A name over
    MAX_NAME_CHARS is cut, not refused: browsers send whatever the file system holds,
    and the user meant that file; the extension (up to 16 chars) is kept. Nothing left:
    ``file``. The stored path never uses this name (chat/models_extra.py).
    """
    text = raw if isinstance(raw, str) else ""
    text = text.replace("\\", "/").rsplit("/", 1)[-1]
    text = unicodedata.normalize("NFC", text)
    text = "".join(ch for ch in text if not unicodedata.category(ch).startswith("C"))
    text = text.lstrip(". ").rstrip(". ")
    if not text:
        return DEFAULT_NAME
    if len(text) > MAX_NAME_CHARS:
        stem, ext = os.path.splitext(text)
        if len(ext) > MAX_EXTENSION_CHARS:
            stem, ext = text, ""
        text = stem[: MAX_NAME_CHARS - len(ext)].rstrip(". ") + ext
    return text


# -- content ----------------------------------------------------------------------------


def sniff(file: UploadedFile) -> tuple[str, Picture | None]:
    """The content type of ``file``, decided from its bytes, and its picture if it is a
    raster image. Raises UploadRefused for an image over the bomb limit."""
    file.seek(0)
    head = file.read(SNIFF_BYTES)
    kind = filetype.guess(head) if head else None
    if kind is not None and kind.mime in RASTER:
        picture = probe_image(file, RASTER[kind.mime])
        return (kind.mime, picture) if picture is not None else (BINARY, None)
    if kind is not None:
        return kind.mime, None
    return (TEXT if is_utf8_text(file) else BINARY), None


def is_utf8_text(file: UploadedFile) -> bool:
    """Whether the whole file decodes as UTF-8 and holds no NUL (read chunk by chunk)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    file.seek(0)
    try:
        for chunk in file.chunks(CHUNK_BYTES):
            if b"\x00" in chunk:
                return False
            decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def probe_image(file: UploadedFile, fmt: str) -> Picture | None:
    """Size and thumbnail of an image Pillow reads as ``fmt``; None if it is not one.

    The pixel count is checked against ``Image.MAX_IMAGE_PIXELS`` from the header, before
    anything is decoded; Pillow's own check (its warning made an error, its error) is the
    second line.
    """
    limit = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            file.seek(0)
            with Image.open(file, formats=[fmt]) as image:
                width, height = image.size
                if limit is not None and width * height > limit:
                    raise _bomb(width, height, limit)
                image.verify()  # structure and checksums, without decoding
            file.seek(0)
            with Image.open(file, formats=[fmt]) as image:
                if image.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8):
                    width, height = height, width  # shown turned, as browsers show it
                return Picture(width, height, thumbnail_of(image))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _bomb(None, None, limit) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, IndexError):
        # Pillow's ways of saying "not a valid image of that format" (truncated data,
        # bad chunks, a checksum): the file is kept, but as bytes, not as an image.
        return None


def thumbnail_of(image: Image.Image) -> bytes:
    """The first frame, at most THUMBNAIL_SIDE px on the long side, as WebP.

    Shrunk before anything else is done to it (a JPEG is even decoded at a fraction of its
    size), so that a large image is held once at full size, while it is decoded, and the
    conversions and the turn work on the small one.
    """
    image.seek(0)
    if image.format == "JPEG":
        image.draft("RGB", (THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    mode = "RGBA" if alpha else "RGB"
    if image.mode not in ("RGB", "RGBA", "L", "LA", "CMYK"):
        image = image.convert(mode)  # palette and 16-bit images resize badly, or not at all
    image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    frame = image.convert(mode) if image.mode != mode else image
    # A phone's photo is stored sideways with an EXIF orientation that browsers apply to
    # the full image: the thumbnail is turned the same way.
    ImageOps.exif_transpose(frame, in_place=True)
    out = BytesIO()
    frame.save(out, "WEBP", quality=80)
    return out.getvalue()


def _bomb(width: int | None, height: int | None, limit: int | None) -> UploadRefused:
    size = f" ({width} x {height})" if width else ""
    return UploadRefused(
        ErrorCode.BAD_REQUEST,
        f"The image{size} has more pixels than the server decodes ({limit}).",
    )


# -- storing ----------------------------------------------------------------------------


def store_upload(room: Room, user_id: int, file: UploadedFile) -> Upload:
    """Check, type and store ``file`` as ``user_id``'s upload to ``room`` (the caller has
    checked that they may post there); raises UploadRefused with nothing stored."""
    limit = settings.CHAT_MAX_UPLOAD_BYTES
    if file.size is None or file.size > limit:
        raise UploadRefused(ErrorCode.TOO_LARGE, f"The file is over {limit} bytes.")
    if file.size == 0:
        raise UploadRefused(ErrorCode.BAD_REQUEST, "The file is empty.")
    content_type, picture = sniff(file)
    upload = Upload(
        room=room,
        user_id=user_id,
        name=clean_name(file.name),
        size=file.size,
        content_type=content_type,
        width=picture.width if picture else None,
        height=picture.height if picture else None,
    )
    file.seek(0)
    try:
        # The storage names come from the id (chat/models_extra.py upload_path).
        upload.file.save("file", file, save=False)
        if picture is not None:
            upload.thumbnail.save("thumb", ContentFile(picture.thumbnail), save=False)
        upload.save(force_insert=True)
    except OSError as error:
        # The storage is full (ENOSPC, EDQUOT) or failing: nothing is kept of this file,
        # and the sender is told to try again, as for any outage (a chaos run's full
        # disk answered Django's HTML 500 page before).
        # Django's storage leaves what it wrote of a file it could not finish; the names
        # come from the id alone (upload_path), so they are known without it.
        delete_files([upload_path(upload, ""), thumbnail_path(upload, "")])
        logger.error("could not store an upload to %s: %s", room.slug, error)
        raise UploadRefused(ErrorCode.UNAVAILABLE, "The file could not be stored now.") from None
    except BaseException:
        delete_files([upload.file.name, upload.thumbnail.name])
        raise
    return upload


def delete_files(names) -> None:
    """Remove these names from the storage; one that fails is logged, not raised."""
    storage = Upload._meta.get_field("file").storage
    for name in names:
        if not name:
            continue
        try:
            storage.delete(name)
        except Exception:
            logger.exception("could not delete %s from the storage", name)


# -- the attachment object ----------------------------------------------------------------


def file_url(upload_id: str, name: str) -> str:
    return f"/uploads/{upload_id}/{quote(name, safe='')}"


def thumbnail_url(upload_id: str) -> str:
    # "thumb/" (with its slash) is not a name: names never hold "/", so a file named
    # "thumb" is /uploads/<id>/thumb and cannot be confused with this.
    return f"/uploads/{upload_id}/thumb/"


def attachment(
    upload_id: str,
    name: str,
    size: int,
    content_type: str,
    width: int | None,
    height: int | None,
    has_thumbnail: bool,
) -> dict:
    """PROTOCOL.md's attachment object."""
    return {
        "id": upload_id,
        "name": name,
        "size": size,
        "content_type": content_type,
        "url": file_url(upload_id, name),
        "width": width,
        "height": height,
        "thumbnail_url": thumbnail_url(upload_id) if has_thumbnail else None,
    }


ATTACHMENT_FIELDS = ("id", "name", "size", "content_type", "width", "height", "thumbnail")


def attachment_of(upload: Upload) -> dict:
    return attachment(
        upload.id,
        upload.name,
        upload.size,
        upload.content_type,
        upload.width,
        upload.height,
        bool(upload.thumbnail),
    )


# -- cleanup ------------------------------------------------------------------------------


def remove_unattached(now=None, lifetime: timedelta = UNATTACHED_LIFETIME) -> int:
    """Delete uploads never attached and older than ``lifetime``; returns how many.
    Batches of CLEANUP_BATCH walk the partial index ``chat_upload_unattached``.

    The rows are locked first (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite's write
    transaction locks the database): a send claiming one of them at the same moment
    either got its lock first (the row is skipped here, and attached) or waits and then
    finds it gone (``bad_request``). Files go once the deletion has committed
    (``_files_follow_their_row``).
    """
    cutoff = (now or timezone.now()) - lifetime
    removed = 0
    while True:
        with transaction.atomic():
            ids = list(
                Upload.objects.select_for_update(skip_locked=True)
                .filter(message__isnull=True, created_at__lt=cutoff)
                .order_by("created_at")
                .values_list("id", flat=True)[:CLEANUP_BATCH]
            )
            if ids:
                _, by_model = Upload.objects.filter(id__in=ids, message__isnull=True).delete()
                removed += by_model.get(Upload._meta.label, 0)
        if len(ids) < CLEANUP_BATCH:
            return removed


@receiver(post_delete, sender=Upload, dispatch_uid="chat.uploads.files_follow_their_row")
def _files_follow_their_row(sender, instance: Upload, **kwargs) -> None:
    """An upload's files leave the storage with its row, whoever deletes it (the cleanup,
    the admin, a room's deletion cascading), after the commit: a rolled-back deletion
    keeps its files. Connected when this module is imported, which the admin (loaded at
    start-up), the URLconf and the live service all do."""
    names = [instance.file.name, instance.thumbnail.name]
    transaction.on_commit(partial(delete_files, names), robust=True)
