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
from django.views.decorators.csrf import csrf_exempt

from chat import access
from chat.api.http import ApiError, endpoint, error, readable_room
from chat.live.records import ErrorCode
from chat.uploads import UploadRefused, attachment_of, store_upload

# The multipart framing around the file (boundaries, part headers, the CSRF field):
# project/request.py allows the same on top of CHAT_MAX_UPLOAD_BYTES.
UPLOAD_OVERHEAD_BYTES = 64 * 1024


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
    files = request.FILES.getlist("file")
    if len(files) != 1:
        raise ApiError(ErrorCode.BAD_REQUEST, "Send exactly one file, in the field 'file'.")
    try:
        upload = store_upload(room, user_id, files[0])
    except UploadRefused as exc:
        raise ApiError(exc.code, exc.detail) from None
    return JsonResponse({"upload": attachment_of(upload)}, status=201)
