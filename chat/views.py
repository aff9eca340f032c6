"""The chat pages: thin views over the models and the room log."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_safe

from chat import access, dms, history, room_objects
from chat.accounts import claim_signup, client_ip
from chat.forms import SignupForm
from chat.models import Room

# The page shows this many of the newest events; older ones come from the history API.
PAGE_EVENTS = 50
TRANSPORTS = ("ws", "sse", "longpoll")


@require_safe
def room_list(request: HttpRequest) -> HttpResponse:
    # Direct rooms are the sidebar's "Direct messages", not rooms to browse.
    rooms = Room.objects.visible_to(request.user).exclude(kind=Room.Kind.DIRECT)
    user_id = access.user_id_of(request.user)
    mine = {r["slug"]: r for r in room_objects.member_rooms(user_id)} if user_id else {}
    listed = [{"room": r, "shown": mine.get(r.slug)} for r in rooms]
    return render(request, "chat/room_list.html", {"rooms": listed})


@require_safe
def room(request: HttpRequest, slug: str) -> HttpResponse:
    room = get_object_or_404(Room, slug=slug)
    if not room.can_read(request.user):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        raise PermissionDenied
    # One extra event tells whether older ones exist (the client's "load more" needs it).
    events = history.read_page(room.id, room.slug, None, PAGE_EVENTS + 1)
    has_more = len(events) > PAGE_EVENTS
    events = events[-PAGE_EVENTS:]
    shown = room_objects.one(room, request.user)
    # Archival is checked here too: the composer must not invite a send that fails.
    can_post = room.can_post(request.user) and not room.is_archived
    shown["may_post"] = can_post
    user_id = access.user_id_of(request.user)
    # Signed in: the rooms they are a member of; anonymous: every room they may read.
    sidebar = room_objects.member_rooms(user_id) if user_id else room_objects.visible(request.user)
    transport = request.GET.get("transport", "")
    transport = transport if transport in TRANSPORTS else ""
    # The page's lines, drawn here for the first paint and without JavaScript; the
    # script redraws them from the same events. ``html`` is the server's own sanitized
    # rendering (chat/render.py); ``body`` only ever goes in escaped.
    lines = [
        {**event, "time": datetime.fromisoformat(event["ts"])}
        for event in events
        if event["type"] == "message"
    ]
    data = {
        "me": request.user.get_username() if user_id else None,
        "is_staff": bool(request.user.is_staff),
        "max_chars": settings.CHAT_MAX_MESSAGE_CHARS,
        "transport": transport,
        "room": shown,
        "events": events,
        "has_more": has_more,
        "rooms": sidebar,
        # Where chat.urls is mounted (a host project may put it under any prefix): the UI
        # prefixes its API paths with it (ui/dom.js). The live resources stay at the
        # port's root (/ws/, /events/, /poll/), whatever the prefix.
        "base": reverse("chat:room_list"),
    }
    context = {
        "room": room,
        "shown": shown,
        "messages": lines,
        "sidebar": sidebar,
        "can_post": can_post,
        "transport": transport,
        "max_chars": settings.CHAT_MAX_MESSAGE_CHARS,
        "parley_data": data,
    }
    return render(request, "chat/room.html", context)


@require_http_methods(["GET", "HEAD", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if settings.CHAT_SIGNUP != "open":
        # Closed means no form at all, so nothing here can create an account.
        return render(request, "registration/signup_closed.html", status=403)
    next_url = request.POST.get("next") or request.GET.get("next") or ""
    if not url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        next_url = ""
    status = 200
    if request.method == "POST":
        form = SignupForm(request.POST)
        if form.is_valid():
            # Counted only for a signup that would succeed: a typo in the form costs none.
            if claim_signup(client_ip(request)):
                user = form.save()
                login(request, user, backend="django.contrib.auth.backends.ModelBackend")
                return redirect(next_url or "chat:room_list")
            form.add_error(
                None,
                "Too many accounts were made from your address recently. Try again later.",
            )
            status = 429
    else:
        form = SignupForm()
    return render(
        request, "registration/signup.html", {"form": form, "next": next_url}, status=status
    )


# -- direct messages (PROTOCOL.md "/dm/<username>/") -------------------------------------

# Sec-Fetch-Site values of a navigation the user made on this site or by hand (typed,
# bookmarked); absent from clients that do not send it.
_OWN_NAVIGATION = (None, "same-origin", "none")


@require_http_methods(["GET", "HEAD", "POST"])
def direct(request: HttpRequest, username: str) -> HttpResponse:
    """Open the direct room with ``username``: a redirect to its room page, made first if
    needed. A GET from another site does not make it (a page elsewhere could otherwise
    send its visitors to /dm/<its author>/ and learn their usernames from the new room):
    it gets a confirmation whose button POSTs here, under Django's CSRF check."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    try:
        other = dms.find_user(username)
    except dms.NoSuchUser:
        raise Http404("No such user.") from None
    room = Room.objects.filter(slug=dms.direct_slug(request.user.pk, other.pk)).first()
    own = request.headers.get("Sec-Fetch-Site") in _OWN_NAVIGATION
    if request.method == "POST" or (request.method == "GET" and own):
        room, _created = dms.open_direct(request.user, other)
    if room is None or not room.members.filter(pk=request.user.pk).exists():
        return render(request, "chat/dm_confirm.html", {"other": other})
    return redirect("chat:room", slug=room.slug)
