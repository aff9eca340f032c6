"""Who is connecting, may they, and how fast may they send.

- ``Authorizer`` resolves the Django session cookie to a user and checks room access on
  the store's thread pool (never on the reactor), caching the answer briefly because a
  reconnect storm would otherwise turn into a storm of session queries.
- ``origin_allowed`` is the cross-site WebSocket hijacking check: a browser always sends
  ``Origin``, and a page on another site must not ride on our user's cookie.
- ``csrf_token_valid`` is Django's CSRF check for the long-poll POST.
- ``RateLimiter`` is a token bucket per user (CHAT_RATE_LIMIT).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.http.request import split_domain_port, validate_host
from twisted.internet import defer

from project.env import RateLimit


@dataclass(frozen=True, slots=True)
class UserInfo:
    id: int
    username: str


@dataclass(frozen=True, slots=True)
class Access:
    """The answer for one (session, room): room is None for an unknown room."""

    room: object  # chat.live.store.RoomInfo | None
    user: UserInfo | None
    can_read: bool


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


class RateLimiter:
    """Token bucket per user: ``count`` sends per ``seconds``, bursts up to ``count``.

    Buckets of users who stopped sending are swept once they are full again, so the map
    holds only users who sent within the last window.
    """

    def __init__(self, limit: RateLimit, clock=time.monotonic) -> None:
        self.limit = limit
        self.clock = clock
        self.rate = limit.count / limit.seconds if limit.enabled else 0.0
        self._buckets: dict[int, list[float]] = {}  # user id -> [tokens, updated]
        self._swept = clock()

    def _bucket(self, user_id: int, now: float) -> list[float]:
        bucket = self._buckets.get(user_id)
        if bucket is None:
            bucket = self._buckets[user_id] = [float(self.limit.count), now]
        else:
            bucket[0] = min(self.limit.count, bucket[0] + (now - bucket[1]) * self.rate)
            bucket[1] = now
        return bucket

    def allow(self, user_id: int) -> bool:
        if not self.limit.enabled:
            return True
        now = self.clock()
        if now - self._swept > self.limit.seconds:
            self._sweep(now)
        bucket = self._bucket(user_id, now)
        if bucket[0] >= 1.0:
            bucket[0] -= 1.0
            return True
        return False

    def refund(self, user_id: int) -> None:
        bucket = self._buckets.get(user_id)
        if bucket is not None:
            bucket[0] = min(self.limit.count, bucket[0] + 1.0)

    def _sweep(self, now: float) -> None:
        self._swept = now
        full = [
            user_id
            for user_id, (tokens, updated) in self._buckets.items()
            if tokens + (now - updated) * self.rate >= self.limit.count
        ]
        for user_id in full:
            del self._buckets[user_id]


class SharedRateLimiter(RateLimiter):
    """The local bucket, plus a per-user count of sends in every process (fixed windows).

    The count lives in Redis; each process knows it as of its last answer from Redis and
    decides at once from what it knows, so a send never waits on Redis and sends stay in
    order. Across processes the limit can be passed by the sends in flight at one moment.
    """

    def __init__(self, limit: RateLimit, counter, clock=time.monotonic, wall=time.time):
        super().__init__(limit, clock)
        self.counter = counter  # (user_id, window, seconds, amount) -> Deferred[int] | None
        self.wall = wall
        self.known: dict[tuple[int, int], int] = {}  # (user, window) -> sends, all processes

    def _window(self) -> int:
        return int(self.wall() // self.limit.seconds)

    def allow(self, user_id: int) -> bool:
        if not super().allow(user_id):
            return False
        if not self.limit.enabled:
            return True
        key = (user_id, self._window())
        if self.known.get(key, 0) >= self.limit.count:
            super().refund(user_id)
            return False
        self._count(key, 1)
        return True

    def refund(self, user_id: int) -> None:
        super().refund(user_id)
        key = (user_id, self._window())
        if key in self.known:
            self._count(key, -1)

    def _count(self, key: tuple[int, int], amount: int) -> None:
        self.known[key] = self.known.get(key, 0) + amount
        d = self.counter(key[0], key[1], self.limit.seconds, amount)
        if d is not None:

            def learned(total: int) -> None:
                if key in self.known:
                    self.known[key] = max(self.known[key], int(total))

            d.addCallbacks(learned, lambda _f: None)

    def _sweep(self, now: float) -> None:
        super()._sweep(now)
        current = self._window()
        for key in [k for k in self.known if k[1] < current]:
            del self.known[key]
