"""Account safety of the public pages: who the client is, look-alike usernames, signups
per address and the login lockout page.

Login failures are counted by django-axes (settings ``AXES_*``); this module only tells
it the client's address and renders its lockout page. Signups are counted here, in a
cache every process shares, because axes counts logins only.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import time
import unicodedata
from collections.abc import Callable

from confusable_homoglyphs import confusables
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import caches
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

# The cache alias of counters shared by every process and machine (settings.CACHES).
THROTTLE_CACHE = "throttle"
# A whole IPv6 /64 is one client: one machine commonly holds any number of its addresses.
IPV6_BUCKET_PREFIX = 64
# Marks the Unicode data puts around right-to-left glyphs in its comments, which
# confusable_homoglyphs keeps in its strings; they are not part of any glyph.
_DIRECTION_MARKS = str.maketrans("", "", "\u200e\u200f")


def client_ip(request: HttpRequest) -> str:
    """The client's address: the last ``X-Forwarded-For`` entry from a trusted proxy.

    Parley's HTTP server already drops ``X-Forwarded-For`` from anyone outside
    ``TRUSTED_PROXIES``; it is checked again here so that the rule holds under any WSGI
    server. The last entry is the one the proxy itself appended (what it saw); earlier
    entries are the client's own word. Used by axes (``AXES_CLIENT_IP_CALLABLE``).
    """
    remote = request.META.get("REMOTE_ADDR", "") or ""
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if forwarded and _is_trusted_proxy(remote):
        candidate = forwarded.split(",")[-1].strip()
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            pass
    return remote


def _is_trusted_proxy(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in settings.TRUSTED_PROXIES)


def address_bucket(address: str) -> str:
    """The unit a per-address limit counts: the address, or its /64 for IPv6."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address or "-"
    if ip.version == 4:
        return str(ip)
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.ip_network(f"{ip}/{IPV6_BUCKET_PREFIX}", strict=False))


def claim_signup(address: str, clock: Callable[[], float] = time.time) -> bool:
    """Take one of the ``CHAT_SIGNUP_RATE`` signups this address has in the current window.

    Each signup claims a numbered slot with ``cache.add``, which is atomic in every
    Django cache backend (an INSERT on a primary key in the database cache): two
    processes racing for the last slot cannot both get it, as they could with a
    read-then-write counter.
    """
    limit = settings.CHAT_SIGNUP_RATE
    if not limit.enabled:
        return True
    now = clock()
    window = int(now // limit.seconds)
    ttl = max(1, math.ceil((window + 1) * limit.seconds - now))
    cache = caches[THROTTLE_CACHE]
    bucket = address_bucket(address)
    for slot in range(limit.count):
        if cache.add(f"signup:{bucket}:{window}:{slot}", 1, timeout=ttl):
            return True
    return False


@functools.cache
def _prototypes() -> dict[str, str]:
    """Code point -> the glyph class it belongs to, from Unicode's confusables data.

    confusable_homoglyphs stores each line of confusables.txt (source -> prototype) in
    both directions, so every class is a star: the prototype linked to each of its
    sources. A class's prototype is the node with more than one link; in a class of
    two, the one that is more than one code point (sources are single code points),
    else either of them, chosen once: equal skeletons stay equal under any consistent
    choice. Prototypes of several code points are mapped through the table again so
    that their parts use the same choices.
    """
    links: dict[str, set[str]] = {}
    for char, homoglyphs in confusables.confusables_data.items():
        a = char.translate(_DIRECTION_MARKS)
        for homoglyph in homoglyphs:
            b = homoglyph["c"].translate(_DIRECTION_MARKS)
            if a and b and a != b:
                links.setdefault(a, set()).add(b)
                links.setdefault(b, set()).add(a)
    table: dict[str, str] = {}
    seen: set[str] = set()
    for start in links:
        if start in seen:
            continue
        group, stack = set(), [start]
        while stack:
            node = stack.pop()
            if node not in group:
                group.add(node)
                stack.extend(links[node])
        seen |= group
        centre = [node for node in group if len(links[node]) > 1]
        prototype = centre[0] if centre else max(group, key=lambda node: (len(node), node))
        for node in group:
            if len(node) == 1:
                table[node] = prototype
    for char, prototype in table.items():
        if len(prototype) > 1:
            table[char] = "".join(table.get(part, part) for part in prototype)
    return table


def _is_ignorable(char: str) -> bool:
    # Format characters (joiners, direction marks, soft hyphen) and variation selectors
    # are invisible: UTS #39 removes them before comparing.
    return unicodedata.category(char) == "Cf" or "\ufe00" <= char <= "\ufe0f"


def skeleton(text: str) -> str:
    """UTS #39 skeleton: two strings that look alike have the same skeleton."""
    table = _prototypes()
    decomposed = unicodedata.normalize("NFD", text)
    mapped = "".join(table.get(char, char) for char in decomposed if not _is_ignorable(char))
    return unicodedata.normalize("NFD", mapped)


@functools.lru_cache(maxsize=65536)
def username_keys(name: str) -> frozenset[str]:
    """What a username is compared by: its skeleton, with case folded before and after.

    Folding after the skeleton matches ``Alice`` with ``\u0430lice`` (a Cyrillic a); folding
    before it matches ``ALICE`` with ``alice`` through the capital I, which the skeleton
    alone maps to ``l``. Two names are look-alikes when they share a key.
    """
    return frozenset({skeleton(name).casefold(), skeleton(name.casefold()).casefold()})


def lookalike_of(name: str) -> str | None:
    """An existing username that ``name`` could be mistaken for, if any.

    Reads every username: signups are few and throttled, and a stored skeleton would
    need a column on Django's user model. ``username_keys`` is cached per name.
    """
    keys = username_keys(name)
    user_model = get_user_model()
    existing = user_model.objects.values_list(user_model.USERNAME_FIELD, flat=True)
    for other in existing.iterator(chunk_size=2000):
        if other != name and keys & username_keys(other):
            return other
    return None


def mixes_scripts_confusably(name: str) -> bool:
    """Letters of several scripts, one of which could pass for a letter of another."""
    return bool(confusables.is_dangerous(name))


def signup_settings(request: HttpRequest) -> dict[str, bool]:
    """Template context: whether to offer the signup page."""
    return {"signup_open": settings.CHAT_SIGNUP == "open"}


def lockout_response(
    request: HttpRequest,
    original_response: HttpResponse | None = None,
    credentials: dict | None = None,
) -> HttpResponse:
    """axes' answer to a login while locked out (``AXES_LOCKOUT_CALLABLE``): 429, a page
    that says why and for how long, and ``Retry-After``."""
    seconds = int(settings.AXES_COOLOFF_TIME.total_seconds())
    wait = f"{math.ceil(seconds / 60)} minutes" if seconds >= 120 else f"{seconds} seconds"
    response = render(
        request,
        "registration/locked_out.html",
        {"failure_limit": settings.AXES_FAILURE_LIMIT, "wait": wait},
        status=429,
    )
    response["Retry-After"] = str(seconds)
    return response
