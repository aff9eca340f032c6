"""Who is connecting, may they, and how fast may they send.

- ``Authorizer`` resolves the Django session cookie to a user and checks room access on
  the store's thread pool (never on the reactor), caching the answer briefly because a
  reconnect storm would otherwise turn into a storm of session queries.
- ``origin_allowed`` is the cross-site WebSocket hijacking check: a browser always sends
  ``Origin``, and a page on another site must not ride on our user's cookie.
- ``csrf_token_valid`` is Django's CSRF check for the long-poll POST.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from urllib.parse import urlsplit

from django.http.request import split_domain_port, validate_host
from twisted.internet import defer

from chat.live.records import Access, UserInfo

# A session's user and a room's access are re-read at most this often per (session,
# room). Short, so that a logout, a removal from a private room or an archival takes
# effect on the next connection within seconds; sends re-check inside the append.
AUTH_CACHE_SECONDS = 5.0
AUTH_CACHE_SIZE = 10_000


class Authorizer:
    def __init__(self, store, clock=time.monotonic) -> None:
        self.store = store
        self.clock = clock
        self._cache: OrderedDict[tuple[str, str], tuple[float, Access]] = OrderedDict()

    def access(self, session_key: str | None, slug: str) -> defer.Deferred[Access]:
        key = (session_key or "", slug)
        hit = self._cache.get(key)
        now = self.clock()
        if hit is not None and now - hit[0] < AUTH_CACHE_SECONDS:
            return defer.succeed(hit[1])

        def remember(access: Access) -> Access:
            self._cache[key] = (self.clock(), access)
            self._cache.move_to_end(key)
            while len(self._cache) > AUTH_CACHE_SIZE:
                self._cache.popitem(last=False)
            return access

        return self.store.run(_resolve_access, session_key, slug).addCallback(remember)


def _resolve_access(session_key: str | None, slug: str) -> Access:
    """Runs in a store thread: the same checks Django's views make."""
    from django.conf import settings
    from django.contrib.auth import get_user
    from django.http import HttpRequest

    from chat.live.store import _room_info
    from chat.models import Room

    user_info = None
    user = None
    if session_key:
        from importlib import import_module

        engine = import_module(settings.SESSION_ENGINE)
        request = HttpRequest()
        request.session = engine.SessionStore(session_key)
        user = get_user(request)  # verifies the session hash, as AuthenticationMiddleware
        if user.is_authenticated:
            user_info = UserInfo(user.pk, user.get_username())
    room = _room_info(slug)
    if room is None:
        return Access(None, user_info, False)
    if room.is_public:
        can_read = True
    elif user_info is None:
        can_read = False
    else:
        can_read = Room.members.through.objects.filter(
            room_id=room.id, user_id=user_info.id
        ).exists()
    return Access(room, user_info, can_read)


def origin_allowed(origin: str | None, allowed_hosts: list[str]) -> bool:
    """No Origin (a non-browser client) is allowed; else its host must be an allowed host."""
    if origin is None:
        return True
    origin = origin.strip()
    if origin == "null" or not origin:
        return False
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    host, _port = split_domain_port(parts.netloc)
    return bool(host) and validate_host(host, allowed_hosts)


def csrf_token_valid(cookie_secret: str | None, header_token: str | None) -> bool:
    """Django's rule: the X-CSRFToken header matches the csrftoken cookie."""
    from django.middleware.csrf import InvalidTokenFormat, _check_token_format, _does_token_match

    if not cookie_secret or not header_token:
        return False
    try:
        _check_token_format(cookie_secret)
        _check_token_format(header_token)
    except InvalidTokenFormat:
        return False
    if len(cookie_secret) != 32:  # the cookie holds the unmasked secret
        return False
    return _does_token_match(header_token, cookie_secret)
