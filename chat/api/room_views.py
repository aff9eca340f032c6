"""The API's rooms: the list, one room, the user's own rooms, read positions, join/leave.

PROTOCOL.md "HTTP API". Thin over chat/room_objects.py (the room object),
chat/positions.py (reads) and chat/membership.py (join and leave).
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from chat import access, membership, positions, room_objects, tokens
from chat.api.http import MAX_SEQ, ApiError, endpoint, json_body, readable_room
from chat.live import publish
from chat.live.records import ErrorCode, ReadNotice


@endpoint("GET")
def rooms(request: HttpRequest) -> JsonResponse:
    """``GET /api/rooms/``: the rooms the user may read (public + member of), archived
    too, each a room object with the user's counts."""
    return JsonResponse({"rooms": room_objects.visible(request.user)})


@endpoint("GET")
def room(request: HttpRequest, slug: str) -> JsonResponse:
    """``GET /api/rooms/<slug>/``: one room object."""
    return JsonResponse(room_objects.one(readable_room(request, slug), request.user))


@endpoint("GET")
def me(request: HttpRequest) -> JsonResponse:
    """``GET /api/me/``: who the user is and every room they are a member of (with
    counts), as the inbox hello has them. Anonymous: 403."""
    user = request.user
    if access.user_id_of(user) is None:
        raise ApiError(ErrorCode.FORBIDDEN, "Sign in to see your rooms.")
    return JsonResponse(
        {
            "user": user.get_username(),
            "is_staff": user.is_staff,
            "is_bot": tokens.is_bot(user),
            "rooms": room_objects.member_rooms(user.pk, is_staff=user.is_staff),
        }
    )


@endpoint("POST")
def read(request: HttpRequest, slug: str) -> JsonResponse:
    """``POST /api/rooms/<slug>/read/ {"seq": N}``: move the user's read position.

    Guarantee 8: a seq at or below the position changes nothing, one above ``last_seq``
    is clamped to it. Members only (a non-member has no position: 403). When it moved,
    the user's live connections hear of it (``announce_read``).
    """
    room = readable_room(request, slug)
    data = json_body(request)
    seq = data.get("seq")
    # A JSON integer (bool is an int to Python, and 3.0 is not a seq).
    if type(seq) is not int or not 0 <= seq <= MAX_SEQ:
        raise ApiError(ErrorCode.BAD_REQUEST, f"seq must be an integer from 0 to {MAX_SEQ}.")
    result = positions.mark_read(room.id, request.user.pk, seq)
    if result is None:
        raise ApiError(ErrorCode.FORBIDDEN, "Join the room to keep a read position in it.")
    if result.moved:
        publish.announce_read(
            ReadNotice(
                user_id=request.user.pk,
                room=room.slug,
                read_seq=result.read_seq,
                unread=result.unread,
                mentions=result.mentions,
                through=result.through,
            )
        )
    return JsonResponse(
        {"read_seq": result.read_seq, "unread": result.unread, "mentions": result.mentions}
    )


@endpoint("POST")
def join(request: HttpRequest, slug: str) -> JsonResponse:
    """``POST /api/rooms/<slug>/join/``: join a public room; the room object after."""
    target = readable_room(request, slug)
    try:
        membership.join(target, request.user)
    except membership.NotAllowed as exc:
        raise ApiError(ErrorCode.FORBIDDEN, str(exc)) from None
    return JsonResponse(room_objects.one(target, request.user))


@endpoint("POST")
def leave(request: HttpRequest, slug: str) -> JsonResponse:
    """``POST /api/rooms/<slug>/leave/``: leave a room (a private one for good, unless
    staff add the user back); the room object after."""
    target = readable_room(request, slug)
    try:
        membership.leave(target, request.user)
    except membership.NotAllowed as exc:
        raise ApiError(ErrorCode.FORBIDDEN, str(exc)) from None
    return JsonResponse(room_objects.one(target, request.user))
