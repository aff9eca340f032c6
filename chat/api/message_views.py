"""The API's room log: history pages, one message, and the writes (send, edit, delete,
react), all of which go through chat/writes.py, the REST API's one door to the log.

PROTOCOL.md "HTTP API". A write answers ``{"seq", "event"}``: ``201`` for a new message,
``200`` for the other writes and for a repeat of a client_id already stored (with the
original event, read back from the log), and ``"seq": null`` for a reaction that changed
nothing.
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from chat import log, writes
from chat.api.http import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    ApiError,
    endpoint,
    failed,
    json_body,
    query_int,
    readable_room,
    seq_in_path,
)
from chat.live.records import ErrorCode
from chat.models import Room


@endpoint("GET", "POST")
def messages(request: HttpRequest, slug: str) -> JsonResponse:
    """``GET``: one page of the log; ``POST {"body", "client_id", "reply_to",
    "attachments"}``: send."""
    room = readable_room(request, slug)
    if request.method == "POST":
        data = json_body(request)
        frame = {"type": "send", **_fields(data, "body", "client_id", "reply_to")}
        if "attachments" in data:  # upload ids: checked by validation.py, claimed by the log
            frame["attachments"] = data["attachments"]
        return _write(request, room, frame, created_status=201)
    return _page(request, room)


@endpoint("GET", "PATCH", "DELETE")
def message(request: HttpRequest, slug: str, seq: str) -> JsonResponse:
    """``GET``: the event at ``seq``; ``PATCH {"body", "client_id"}``: edit it;
    ``DELETE ?client_id=``: delete it."""
    room = readable_room(request, slug)
    target = seq_in_path(seq)
    if request.method == "PATCH":
        data = json_body(request)
        frame = {"type": "edit", "target": target, **_fields(data, "body", "client_id")}
        return _write(request, room, frame)
    if request.method == "DELETE":
        frame = {"type": "delete", "target": target, "client_id": request.GET.get("client_id")}
        return _write(request, room, frame)
    event = log.read_message(room.id, room.slug, target)
    if event is None:
        raise ApiError(ErrorCode.NOT_FOUND, "No such message.")
    return JsonResponse({"event": event})


@endpoint("POST")
def reactions(request: HttpRequest, slug: str, seq: str) -> JsonResponse:
    """``POST {"emoji", "op", "client_id"}``: add or remove a reaction."""
    room = readable_room(request, slug)
    target = seq_in_path(seq)
    data = json_body(request)
    frame = {"type": "react", "target": target, **_fields(data, "emoji", "op", "client_id")}
    return _write(request, room, frame)


def _fields(data: dict, *names: str) -> dict:
    """Only the fields a write of this URL has: a body's ``type`` or ``target`` cannot turn
    a send into an edit of another message."""
    return {name: data.get(name) for name in names}


def _write(request: HttpRequest, room: Room, frame: dict, created_status: int = 200):
    result = writes.submit(room.slug, request.user, frame)
    if result.error is not None:
        raise failed(result)
    if result.created:
        return JsonResponse({"seq": result.seq, "event": result.event}, status=created_status)
    # A repeat of a stored client_id: the original seq, and its event as the log has it.
    event = None if result.seq is None else log.read_message(room.id, room.slug, result.seq)
    return JsonResponse({"seq": result.seq, "event": event})


def _page(request: HttpRequest, room: Room) -> JsonResponse:
    """``?before=<seq>&after=<seq>&limit=<n>``: without ``after``, the newest ``limit``
    events below ``before`` (the newest of all without it); with ``after``, the oldest
    ``limit`` above it; both, the events strictly between. ``has_more``: whether more
    events lie beyond the page in the direction it was read (older without ``after``,
    newer with it). ``limit`` default 50, above 200 treated as 200 (PROTOCOL.md).
    """
    try:
        before = query_int(request.GET.get("before"), "before")
        after = query_int(request.GET.get("after"), "after")
        limit = query_int(request.GET.get("limit"), "limit")
    except ValueError as exc:
        raise ApiError(ErrorCode.BAD_REQUEST, str(exc)) from None
    limit = DEFAULT_LIMIT if limit is None else min(limit, MAX_LIMIT)
    # One extra row tells whether there is more, without a second query.
    events = log.read_page(room.id, room.slug, before, limit + 1, after=after)
    has_more = len(events) > limit
    if has_more:
        events = events[:limit] if after is not None else events[1:]
    return JsonResponse({"events": events, "has_more": has_more})
