"""Who is connecting, may they, and how fast may they send.

- ``Authorizer`` resolves the Django session cookie to a user and checks room access on
  the store's thread pool (never on the reactor), caching the answer briefly because a
  reconnect storm would otherwise turn into a storm of session queries. Every access
  change the hub hears of (chat/live/publish.py ``AccessChange``, from this process or
  another) makes the answers it concerns stale at once, cached or still being read.
- ``origin_allowed`` is the cross-site WebSocket hijacking check: a browser always sends
  ``Origin``, and a page of another origin (another site, or another port or scheme of
  this host) must not ride on our user's cookie.
- ``csrf_token_valid`` is Django's CSRF check for the long-poll POST.
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections import OrderedDict
from collections.abc import Iterable

from django.http.request import split_domain_port, validate_host
from twisted.internet import defer

from chat.live.publish import ACCOUNTS, ROOM, SESSION, AccessChange
from chat.live.records import Access
from chat.live.store import StoreUnavailable
from chat.live.wire import parse_int

# A session's user and a room's access are re-read at most this often per (session,
# room): a reconnect storm costs one read per session and room, not one per attempt. A
# change of access does not wait for it: the change's notice makes the answers it
# concerns stale at once (``Authorizer.invalidate``), in every process. The time only
# bounds what no notice reports (a session that expired by itself).
AUTH_CACHE_SECONDS = 5.0
AUTH_CACHE_SIZE = 10_000
# Reads of one answer in a row that a change overtook (it was heard while the read ran,
# which may have seen the database before the change committed). Changes of one room,
# account or session come at the pace of people; three in a row within one read each is
# churn, and then the connection is answered `unavailable` (it retries): admitting it on
# an answer that may predate the change could leave it open after access was lost.
MAX_RESOLVES = 3
# Sessions that ended (logout), remembered so that a connection made with one is
# anonymous even before the session's row is gone: the notice is sent from the logout
# itself, a moment before Django deletes the session. Session keys are random and never
# reused, so forgetting the oldest past this bound only matters for a session that
# Django failed to delete.
ENDED_SESSIONS = 10_000


class _Entry:
    __slots__ = ("access", "at", "tick")

    def __init__(self, at: float, tick: int, access: Access) -> None:
        self.at = at  # when it was read
        self.tick = tick  # changes heard when its read started
        self.access = access


class Authorizer:
    def __init__(self, store, clock=time.monotonic) -> None:
        self.store = store
        self.clock = clock
        self._cache: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        # Changes are numbered as they are heard. An answer whose read started at tick T
        # is stale once a change of its room, its user or its session has a tick above
        # T. Each map keeps, per key, (tick, time) of its latest change, oldest first; a
        # change older than AUTH_CACHE_SECONDS is forgotten (every answer cached before it
        # has expired by then) unless a read that started before it is still running.
        self._tick = 0
        self._everything = 0  # the tick of a change of everything (the bus was away)
        self._rooms: OrderedDict[str, tuple[int, float]] = OrderedDict()
        # Membership changes concern only their users: (slug, user id) -> mark. Kept apart
        # from the room's own changes so that users joining a busy public room (sending
        # joins it) do not make every other reader's answer stale: reads overtaken three
        # times in a row are `unavailable`, and a room many people join at once did that.
        self._members: OrderedDict[tuple[str, int], tuple[int, float]] = OrderedDict()
        self._users: OrderedDict[int, tuple[int, float]] = OrderedDict()
        self._sessions: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._reading: dict[int, int] = {}  # tick at start -> reads started then, running
        self._ended: OrderedDict[str, None] = OrderedDict()

    def access(self, session_key: str | None, slug: str) -> defer.Deferred[Access]:
        key = (session_key or "", slug)
        hit = self._cache.get(key)
        if (
            hit is not None
            and self.clock() - hit.at < AUTH_CACHE_SECONDS
            and self._current(hit.tick, session_key, slug, hit.access)
        ):
            return defer.succeed(hit.access)
        return self._read(key, session_key, slug, 1)

    def _read(
        self, key: tuple[str, str], session_key: str | None, slug: str, attempt: int
    ) -> defer.Deferred[Access]:
        start = self._tick
        self._reading[start] = self._reading.get(start, 0) + 1
        ended = session_key is not None and session_key in self._ended
        d = self.store.run(_resolve_access, None if ended else session_key, slug)

        def finished(result):
            left = self._reading[start] - 1
            if left:
                self._reading[start] = left
            else:
                del self._reading[start]
            return result

        def answered(access: Access):
            if not self._current(start, session_key, slug, access):
                if attempt >= MAX_RESOLVES:
                    raise StoreUnavailable(f"access to {slug} kept changing while read")
                return self._read(key, session_key, slug, attempt + 1)
            self._cache[key] = _Entry(self.clock(), start, access)
            self._cache.move_to_end(key)
            while len(self._cache) > AUTH_CACHE_SIZE:
                self._cache.popitem(last=False)
            return access

        return d.addBoth(finished).addCallback(answered)

    def _current(self, tick: int, session_key: str | None, slug: str, access: Access) -> bool:
        """Whether an answer read from ``tick`` on has been overtaken by no change."""
        if self._everything > tick:
            return False
        changed = self._rooms.get(slug)
        if changed is not None and changed[0] > tick:
            return False
        if access.user is not None:
            changed = self._users.get(access.user.id)
            if changed is not None and changed[0] > tick:
                return False
            changed = self._members.get((slug, access.user.id))
            if changed is not None and changed[0] > tick:
                return False
        if session_key:
            changed = self._sessions.get(session_key)
            if changed is not None and changed[0] > tick:
                return False
        return True

    # -- changes -------------------------------------------------------------------

    def invalidate(self, change: AccessChange) -> None:
        """``change`` committed: the answers it concerns are stale, cached or being read."""
        self._tick += 1
        mark = (self._tick, self.clock())
        if change.kind == ROOM and change.room is not None and change.users is not None:
            for user_id in change.users:
                _mark(self._members, (change.room, user_id), mark)
        elif change.kind == ROOM and change.room is not None:
            _mark(self._rooms, change.room, mark)
        elif change.kind == ACCOUNTS:
            for user_id in change.users or ():
                _mark(self._users, user_id, mark)
        elif change.kind == SESSION and change.session:
            _mark(self._sessions, change.session, mark)
            self._ended[change.session] = None
            self._ended.move_to_end(change.session)
            while len(self._ended) > ENDED_SESSIONS:
                self._ended.popitem(last=False)
        self._prune()

    def invalidate_everything(self) -> None:
        """Changes may have been missed (the bus was away): every answer is stale."""
        self._tick += 1
        self._everything = self._tick
        self._cache.clear()

    def _prune(self) -> None:
        # A change must be kept while a cached answer may predate it (AUTH_CACHE_SECONDS)
        # and while a read that started before it runs; the maps hold only the changes
        # of the last few seconds, however many there were before.
        expired = self.clock() - AUTH_CACHE_SECONDS
        oldest_read = min(self._reading, default=self._tick)
        for changes in (self._rooms, self._members, self._users, self._sessions):
            while changes:
                tick, at = next(iter(changes.values()))
                if at >= expired or tick > oldest_read:
                    break
                changes.popitem(last=False)


def _mark(changes: OrderedDict, key, mark: tuple[int, float]) -> None:
    changes[key] = mark
    changes.move_to_end(key)


def _resolve_access(session_key: str | None, slug: str) -> Access:
    """Runs in a store thread: the same checks Django's views make."""
    from chat import access
    from chat.live.store import _room_info
    from chat.sessions import session_user

    user_info = session_user(session_key) if session_key else None
    room = _room_info(slug)
    if room is None:
        return Access(None, user_info, False)
    user_id = user_info.id if user_info is not None else None
    return Access(room, user_info, access.may_read(room, user_id))


# An origin as browsers serialize it (RFC 6454 6.2): scheme "://" host [":" port], nothing
# else: no user info, path (not even "/"), query or fragment. Hosts are names of letters,
# digits, hyphens and dots (browsers send IDNs as punycode) or bracketed IPv6 literals.
_ORIGIN = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://"
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)"
    r"(?::(?P<port>[0-9]{1,5}))?"
)
_DEFAULT_PORTS = {"http": 80, "https": 443}
Origin = tuple[str, str, int]  # (scheme, host, port), lowercased, the port always explicit


def parse_origin(text: str) -> Origin | None:
    """``text`` as a comparable http(s) origin, or None when it is not one."""
    match = _ORIGIN.fullmatch(text)
    if match is None:
        return None
    scheme, host = match["scheme"].lower(), match["host"].lower()
    if scheme not in _DEFAULT_PORTS:
        return None
    if host.startswith("["):
        try:
            host = f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
        except ValueError:
            return None
    if match["port"] is None:
        return scheme, host, _DEFAULT_PORTS[scheme]
    try:
        return scheme, host, parse_int(match["port"], "port", minimum=1, maximum=65535)
    except ValueError:
        return None


def server_origin(scheme: str, host: str | None, allowed_hosts: list[str]) -> Origin | None:
    """The origin a request was made to: its scheme and its ``Host`` header.

    None when the Host is missing, malformed or not in ALLOWED_HOSTS: a page served under
    a name that is not ours (DNS rebinding) has no origin we recognise as our own.
    """
    if not host:
        return None
    domain, _port = split_domain_port(host)
    if not domain or not validate_host(domain, allowed_hosts):
        return None
    return parse_origin(f"{scheme.lower()}://{host}")


def origin_allowed(origin: str | None, own: Origin | None, trusted: Iterable[str] = ()) -> bool:
    """The cross-site check of every live connection (PROTOCOL.md "Origin").

    No Origin (a non-browser client) is allowed. Otherwise it must be the server's own
    origin ``own``, scheme, host and port alike (a page on another port of the same host
    is another site: it must not ride on our user's cookie), or one of ``trusted``
    (CSRF_TRUSTED_ORIGINS, with Django's ``https://*.example.com`` wildcards). ``null``
    (sandboxed frames, file: pages, some redirects) is refused.
    """
    if origin is None:
        return True
    parsed = parse_origin(origin.strip())
    if parsed is None:
        return False
    if own is not None and parsed == own:
        return True
    return any(_trusted_match(parsed, entry) for entry in trusted)


def _trusted_match(origin: Origin, entry: str) -> bool:
    scheme, host, port = origin
    entry = entry.strip().rstrip("/")
    wildcard = "://*." in entry
    pattern = parse_origin(entry.replace("://*.", "://", 1) if wildcard else entry)
    if pattern is None:
        return False
    if not wildcard:
        return origin == pattern
    # As Django's CSRF check (is_same_domain): "https://*.example.com" is example.com and
    # every name under it, with the same scheme and port.
    domain = pattern[1]
    same_domain = host == domain or host.endswith("." + domain)
    return (scheme, port) == (pattern[0], pattern[2]) and same_domain


def csrf_token_valid(cookie_secret: str | None, header_token: str | None) -> bool:
    """Django's rule: the X-CSRFToken header matches the csrftoken cookie."""
    from chat.live.compat import CsrfTokenFormatError as InvalidTokenFormat
    from chat.live.compat import csrf_check_format as _check_token_format
    from chat.live.compat import csrf_token_matches as _does_token_match

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
