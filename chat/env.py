"""Parsing of the environment variables that configure Parley (PROTOCOL.md's table).

In chat/ (not project/) because the app reads them too: a host project's settings need
not define Parley's, whose defaults come from the environment (chat/conf.py).
project/env.py re-exports these for Parley's own settings.

Each parser raises ``ImproperlyConfigured`` with the variable's name on bad input, so a
typo in a deployment stops the server at start-up with a clear message instead of
running with a silent default.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from chat.live.records import RateLimit

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_bool(name: str, default: bool = False, environ=os.environ) -> bool:
    raw = environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r}: expected 0/1, true/false, yes/no or on/off")


def env_int(name: str, default: int, minimum: int = 0, environ=os.environ) -> int:
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r}: expected an integer") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name}={raw!r}: must be at least {minimum}")
    return value


def env_float(name: str, default: float, minimum: float = 0.0, environ=os.environ) -> float:
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r}: expected a number") from None
    if not value >= minimum or value == float("inf"):  # NaN compares false
        raise ImproperlyConfigured(f"{name}={raw!r}: must be a number from {minimum}")
    return value


def env_list(name: str, default: str, environ=os.environ) -> list[str]:
    raw = environ.get(name, default)
    return [item.strip() for item in raw.split(",") if item.strip()]


# COUNT/WINDOW where the window is a number, a unit, or both: "20/10s", "30/m", "5/60".
_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*(?=\d|[smh])(\d+(?:\.\d+)?)?\s*(s|m|h)?\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, None: 1}


def parse_rate_limit(raw: str, name: str = "CHAT_RATE_LIMIT") -> RateLimit:
    """``"20/10s"`` -> 20 sends per 10 seconds; ``"30/m"`` per minute; ``"0"`` is off."""
    if raw.strip() == "0":
        return RateLimit(0, 1.0)
    match = _RATE_RE.match(raw)
    if not match:
        raise ImproperlyConfigured(
            f"{name}={raw!r}: expected COUNT/WINDOW such as 20/10s, 30/m or 0 for no limit"
        )
    count, amount, unit = match.groups()
    seconds = float(amount or 1) * _UNIT_SECONDS[unit]
    if int(count) <= 0 or seconds <= 0:
        raise ImproperlyConfigured(f"{name}={raw!r}: count and window must be positive")
    return RateLimit(int(count), seconds)


def parse_networks(
    raw: str, name: str = "TRUSTED_PROXIES"
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Comma-separated addresses or CIDRs -> networks (a bare address is a /32 or /128)."""
    networks = []
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ImproperlyConfigured(f"{name}: {item!r} is not an address or CIDR") from None
    return tuple(networks)


def env_choice(name: str, default: str, choices: tuple[str, ...], environ=os.environ) -> str:
    """One of ``choices`` (case-insensitive); unset or blank is ``default``."""
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value not in choices:
        raise ImproperlyConfigured(f"{name}={raw!r}: expected one of {', '.join(choices)}")
    return value


# scheme://host[:port], where host may start with "*." (Django's wildcard for subdomains).
_ORIGIN_RE = re.compile(
    r"^(https?)://(\*\.)?([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(:\d{1,5})?$"
)


def parse_origins(raw: str, name: str = "DJANGO_CSRF_TRUSTED_ORIGINS") -> list[str]:
    """Comma-separated origins such as ``https://chat.example.com`` (no path, no query).

    Django compares them with the ``Origin`` header as strings: anything but a bare
    origin (a trailing slash, a path, a missing scheme) would silently never match.
    """
    origins = []
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        match = _ORIGIN_RE.match(item)
        if not match or (match.group(4) and not 0 < int(match.group(4)[1:]) < 65536):
            raise ImproperlyConfigured(
                f"{name}: {item!r} is not an origin such as https://chat.example.com "
                "(scheme and host, optional port, nothing after it)"
            )
        origins.append(item.lower())
    return origins


def load_secret_key(path: Path, environ=os.environ) -> str:
    """``DJANGO_SECRET_KEY``, or a development key generated once into ``path``."""
    key = environ.get("DJANGO_SECRET_KEY", "").strip()
    if key:
        return key
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    # Written to a temporary file and linked into place, so that workers starting at
    # the same moment all end up with the one key that won.
    key = secrets.token_urlsafe(50)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    try:
        os.link(tmp, path)
    except FileExistsError:
        key = path.read_text().strip()
    finally:
        tmp.unlink()
    return key
