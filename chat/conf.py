"""Parley's settings in a Django project that is not Parley's own (PROTOCOL.md "Hosting
your own Django project"): read from the project's settings when present, with the
environment variables of PROTOCOL.md's table as defaults.

A host project adds ``"chat"`` to ``INSTALLED_APPS`` and need define none of these:
``ChatConfig.ready`` calls ``apply_defaults``, which sets every one the project's
settings lack, parsed from the environment exactly as project/settings.py parses them
(tests/unit/test_host_settings.py holds the two to the same values). It only ever adds:
a value the project set is kept as it is.

Django settings that Django itself defaults to nothing useful for Parley (``STATIC_ROOT``,
``MEDIA_ROOT``) are filled only when the project left them empty, relative to the
working directory (where ``serve.py`` runs). The ``throttle`` cache (shared counters,
chat/accounts.py) is added to ``CACHES`` when missing; ``serve.py`` creates its table.
"""

from __future__ import annotations

import os
from pathlib import Path

from chat.env import (
    env_bool,
    env_choice,
    env_float,
    env_int,
    parse_networks,
    parse_origins,
    parse_rate_limit,
)

THROTTLE_CACHE = {
    "BACKEND": "django.core.cache.backends.db.DatabaseCache",
    "LOCATION": "parley_throttle",
    "OPTIONS": {"MAX_ENTRIES": 100_000},
}


def environment_defaults(environ=os.environ) -> dict[str, object]:
    """Every Parley setting the code in chat/ and project/ reads, from ``environ``."""
    get = environ.get
    max_request = env_int("MAX_REQUEST_BYTES", 10 * 1024 * 1024, minimum=1024, environ=environ)
    return {
        "REDIS_URL": get("REDIS_URL", "").strip() or None,
        "CHAT_REDIS_PREFIX": get("CHAT_REDIS_PREFIX", "parley").strip() or "parley",
        "CHAT_MAX_MESSAGE_CHARS": env_int("CHAT_MAX_MESSAGE_CHARS", 4000, 1, environ),
        "CHAT_MAX_FRAME_BYTES": env_int("CHAT_MAX_FRAME_BYTES", 65536, 1024, environ),
        "CHAT_MAX_CONNECTIONS_PER_USER": env_int("CHAT_MAX_CONNECTIONS_PER_USER", 50, 1, environ),
        "CHAT_ROOM_CHECK_SECONDS": env_int("CHAT_ROOM_CHECK_SECONDS", 5, 1, environ),
        "CHAT_CURSOR_CHECK_SECONDS": env_float("CHAT_CURSOR_CHECK_SECONDS", 0.25, 0, environ),
        "CHAT_RATE_LIMIT": parse_rate_limit(get("CHAT_RATE_LIMIT", "20/10s")),
        "CHAT_SIGNUP": env_choice("CHAT_SIGNUP", "open", ("open", "closed"), environ),
        "CHAT_SIGNUP_RATE": parse_rate_limit(get("CHAT_SIGNUP_RATE", "5/h"), "CHAT_SIGNUP_RATE"),
        "CHAT_MAX_UPLOAD_BYTES": env_int("CHAT_MAX_UPLOAD_BYTES", 10 * 1024 * 1024, 1, environ),
        "CHAT_UPLOAD_CLEANUP_SECONDS": env_int("CHAT_UPLOAD_CLEANUP_SECONDS", 3600, 1, environ),
        "CHAT_WEBHOOK_ALLOW_PRIVATE": env_bool("CHAT_WEBHOOK_ALLOW_PRIVATE", False, environ),
        "CHAT_WEBHOOK_TIMEOUT_SECONDS": env_int("CHAT_WEBHOOK_TIMEOUT_SECONDS", 10, 1, environ),
        "CHAT_WEBHOOK_LEASE_SECONDS": env_int("CHAT_WEBHOOK_LEASE_SECONDS", 30, 3, environ),
        "TRUSTED_PROXIES": parse_networks(get("TRUSTED_PROXIES", "")),
        "METRICS_ALLOWED": parse_networks(
            get("METRICS_ALLOWED", "127.0.0.0/8,::1"), "METRICS_ALLOWED"
        ),
        "MAX_REQUEST_BYTES": max_request,
        "PARLEY_HTTPS": env_bool("PARLEY_HTTPS", False, environ),
        "CSRF_TRUSTED_ORIGINS": parse_origins(get("DJANGO_CSRF_TRUSTED_ORIGINS", "")),
    }


# Django defines these (to None or ""), so "missing" means empty for them.
_EMPTY_BY_DEFAULT = {
    "STATIC_ROOT": lambda environ: Path(environ.get("STATIC_ROOT") or "staticfiles").resolve(),
    "MEDIA_ROOT": lambda environ: Path(environ.get("MEDIA_ROOT") or "media").resolve(),
    "CSRF_TRUSTED_ORIGINS": None,  # Django's [] : the environment's when empty
}


def apply_defaults(settings, environ=os.environ) -> list[str]:
    """Set on ``settings`` every Parley setting it lacks; the names set, in order."""
    added = []
    for name, value in environment_defaults(environ).items():
        if name in _EMPTY_BY_DEFAULT:
            missing = not getattr(settings, name, None) and bool(value)
        else:
            missing = not hasattr(settings, name)
        if missing:
            setattr(settings, name, value)
            added.append(name)
    for name, default in _EMPTY_BY_DEFAULT.items():
        if default is not None and not getattr(settings, name, None):
            setattr(settings, name, default(environ))
            added.append(name)
    if "throttle" not in settings.CACHES:
        settings.CACHES = {**settings.CACHES, "throttle": THROTTLE_CACHE}
        added.append("CACHES")
    return added
