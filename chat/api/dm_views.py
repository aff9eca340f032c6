"""``POST /api/dms/ {"user": "bob"}``: the direct room with that user (PROTOCOL.md "HTTP
API"), ``201`` when this request made it, ``200`` when it existed; thin over chat/dms.py."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.http import HttpRequest, JsonResponse

from chat import dms, room_objects
from chat.api.http import ApiError, endpoint, json_body
from chat.live.records import ErrorCode
from chat.live.validation import storable


def _username_limit() -> int:
    field = get_user_model()._meta.get_field(get_user_model().USERNAME_FIELD)
    return field.max_length or 150


@endpoint("POST")
def open_dm(request: HttpRequest) -> JsonResponse:
    data = json_body(request)
    username = data.get("user")
    limit = _username_limit()
    # A name no account can have is the client's mistake (400), not an unknown user.
    if not isinstance(username, str) or not username:
        raise ApiError(ErrorCode.BAD_REQUEST, "user must be a username (a non-empty string).")
    if len(username) > limit:
        raise ApiError(ErrorCode.BAD_REQUEST, f"user is longer than {limit} characters.")
    if not storable(username):
        raise ApiError(ErrorCode.BAD_REQUEST, "user holds characters no username can have.")
    try:
        other = dms.find_user(username)
    except dms.NoSuchUser:
        raise ApiError(ErrorCode.NOT_FOUND, "No such user.") from None
    room, created = dms.open_direct(request.user, other)
    return JsonResponse(room_objects.one(room, request.user), status=201 if created else 200)
