"""Who is connecting, may they, and how fast may they send.

- ``Authorizer`` resolves the Django session cookie to a user and checks room access on
  the store's thread pool (never on the reactor), caching the answer briefly because a
  reconnect storm would otherwise turn into a storm of session queries.
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

from chat.live.records import Access, UserInfo
from chat.live.wire import parse_int

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

    from chat import access
    from chat.live.store import _room_info

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
