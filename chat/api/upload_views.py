"""``POST /api/rooms/<slug>/uploads/``: upload an attachment (PROTOCOL.md "Attachments").

A multipart form with one field ``file``, from a member who may post in the room; the
answer is ``201 {"upload": attachment object}``. The checks come in the order of their
cost: the declared length (413 before a byte of the body is read, here as in
project/request.py, which refuses it before Twisted buffers it), then the CSRF token and
the sign-in (``endpoint``), the room and the right to post, and only then the body, which
Django's parser streams to a temporary file (FILE_UPLOAD_MAX_MEMORY_SIZE) and
chat/uploads.py types and stores.
"""

from __future__ import annotations

from functools import wraps

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import HttpRequest, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from chat import access
from chat.api.http import ApiError, endpoint, error, readable_room
from chat.live.records import ErrorCode
from chat.log_rules import seconds_until
from chat.models import Mute, Upload
from chat.uploads import UploadRefused, attachment_of, store_upload

# The multipart framing around the file (boundaries, part headers, the CSRF field):
# project/request.py allows the same on top of CHAT_MAX_UPLOAD_BYTES.
UPLOAD_OVERHEAD_BYTES = 64 * 1024
# Uploads of one user not attached to a message yet: past this, the next is refused until
# one is sent or removed (24 h). What a user can make the server keep on disk without
# posting is bounded by it (x CHAT_MAX_UPLOAD_BYTES); what they post, by the rate limit.
MAX_PENDING_UPLOADS = 20


def _check_posting(room, user_id: int) -> None:
    """A muted user may not upload either (what for: the send would be refused), and a
    user with MAX_PENDING_UPLOADS files not sent yet must send or wait first."""
    now = timezone.now()
    until = (
        Mute.objects.filter(room_id=room.id, user_id=user_id, until__gt=now)
        .values_list("until", flat=True)
        .first()
    )
    if until is not None:
        raise ApiError(
            ErrorCode.FORBIDDEN,
            "You are muted in this room.",
            retry_after=seconds_until(until, now),
        )
    pending = Upload.objects.filter(user_id=user_id, message__isnull=True)[
        :MAX_PENDING_UPLOADS
    ].count()
    if pending >= MAX_PENDING_UPLOADS:
        raise ApiError(
            ErrorCode.RATE_LIMITED,
            f"You have {MAX_PENDING_UPLOADS} uploads not sent yet: send them first (unsent "
            "uploads are removed after 24 h).",
            retry_after=60,
        )


def _declared_length(request: HttpRequest) -> int | None:
    try:
        return int(request.META.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None


def refuse_oversized(view):
    """413 when the declared body is over the limit, before anything reads it; 400 for a
    POST that is not a well-formed multipart form, before the view (the CSRF check of
    ``endpoint`` reads a form body to look for its token, and would fail on a broken one
    with a 500)."""

    @wraps(view)
    def checked(request: HttpRequest, *args, **kwargs):
        declared = _declared_length(request)
        limit = settings.CHAT_MAX_UPLOAD_BYTES
        if declared is not None and declared > limit + UPLOAD_OVERHEAD_BYTES:
            return error(ErrorCode.TOO_LARGE, f"The file is over {limit} bytes.")
        if request.method == "POST":
            if request.content_type != "multipart/form-data":
                return error(ErrorCode.BAD_REQUEST, "Send a multipart/form-data body with a file.")
            try:
                request.FILES  # noqa: B018 - parsed here, streamed to temporary files
            except RequestDataTooBig:
                return error(ErrorCode.TOO_LARGE, "The form's fields are too large.")
            except (MultiPartParserError, SuspiciousOperation) as exc:
                # SuspiciousOperation: too many fields or files.
                return error(ErrorCode.BAD_REQUEST, f"The form is malformed: {exc}"[:200])
        return view(request, *args, **kwargs)

    return csrf_exempt(checked)


@refuse_oversized
@endpoint("POST")
def uploads(request: HttpRequest, slug: str) -> JsonResponse:
    """One file, ``file``, for the room ``slug``: its attachment object."""
    room = readable_room(request, slug)
    user_id = access.user_id_of(request.user)
    if not access.may_post(room, user_id):
        raise ApiError(ErrorCode.FORBIDDEN, "You may not post in this room.")
    _check_posting(room, user_id)
    files = request.FILES.getlist("file")
    if len(files) != 1:
        raise ApiError(ErrorCode.BAD_REQUEST, "Send exactly one file, in the field 'file'.")
    try:
        upload = store_upload(room, user_id, files[0])
    except UploadRefused as exc:
        raise ApiError(exc.code, exc.detail) from None
    return JsonResponse({"upload": attachment_of(upload)}, status=201)
