"""``POST /api/rooms/<slug>/moderation/`` (PROTOCOL.md "Moderation"): thin over
chat/moderation.py.

Answers ``200 {"action": {...}, "room": room object}``: what was done and the room as the
moderator sees it after (``slow_mode_seconds`` included). Refusals, in this order: not
signed in or no CSRF token (403, the endpoint's), an unknown room (404), a room the user
may not read or moderate (403 ``forbidden``), a malformed body (400 ``bad_request``), an
unknown user (404 ``not_found``), a mute, kick or ban of a moderator, of staff or of
oneself (403 ``forbidden``). The moderator check comes before the body's: a user who may
not moderate learns nothing of which usernames exist.
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from chat import access, moderation, room_objects
from chat.api.http import ApiError, endpoint, json_body, readable_room
from chat.live.records import ErrorCode


@endpoint("POST")
def moderate(request: HttpRequest, slug: str) -> JsonResponse:
    room = readable_room(request, slug)
    if not access.may_moderate(room, request.user.pk):
        raise ApiError(ErrorCode.FORBIDDEN, "Only moderators of this room may do that.")
    try:
        wanted = moderation.parse(json_body(request))
        record = moderation.perform(room, request.user, wanted)
    except moderation.ModerationError as exc:
        raise ApiError(exc.code, exc.detail) from None
    room.refresh_from_db()
    return JsonResponse(
        {
            "action": moderation.describe(record, wanted.username),
            "room": room_objects.one(room, request.user),
        }
    )
