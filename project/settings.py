"""Django settings for Parley: every knob comes from the environment (PROTOCOL.md)."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF

from project.env import (
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    load_secret_key,
    parse_networks,
    parse_origins,
    parse_rate_limit,
)

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = load_secret_key(BASE_DIR / ".secret_key")
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "axes",
    "csp",
    "chat",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    # Inside CsrfViewMiddleware, so that it sees whether the page used a CSRF token.
    "project.middleware.PrivatePagesMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Authorization: Bearer <token>: that token's user for this request only, no CSRF;
    # a bad token is a 401 on every path (chat/token_auth.py).
    "chat.token_auth.TokenAuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as axes requires: it turns a locked-out login into its lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "chat.accounts.signup_settings",
                # parley_bots: bot usernames, for the badge (chat/token_views.py).
                "chat.token_views.bot_names",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=600,
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several threads (WSGI pool, chat store) and processes write at once: WAL lets readers
    # go on during a write, IMMEDIATE takes the write lock at BEGIN so two writers queue
    # on the busy timeout instead of failing with "database is locked" on lock upgrade.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": (
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=20000;"
        ),
    }
    # A persistent SQLite connection per thread is cheap and keeps the PRAGMAs applied.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = False

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "chat:room_list"
LOGOUT_REDIRECT_URL = "chat:room_list"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT") or BASE_DIR / "staticfiles")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "project.storage.ParleyStaticFilesStorage"
        )
    },
}

# Behind a trusted proxy the scheme comes from X-Forwarded-Proto; project/server.py only
# lets that header through from TRUSTED_PROXIES, so believing it here is safe.
TRUSTED_PROXIES = parse_networks(os.environ.get("TRUSTED_PROXIES", ""))
# Who may read /metrics (project/server.py); everyone else gets a 404.
METRICS_ALLOWED = parse_networks(
    os.environ.get("METRICS_ALLOWED", "127.0.0.0/8,::1"), "METRICS_ALLOWED"
)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if TRUSTED_PROXIES else None
CSRF_TRUSTED_ORIGINS = parse_origins(os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", ""))

# PARLEY_HTTPS=1: users reach Parley over HTTPS only (served directly with --tls-cert or
# through a trusted proxy), so cookies never travel in clear, browsers are told to
# insist on HTTPS (HSTS), and a page asked for over plain HTTP redirects. /healthz,
# /metrics and the live transports are Twisted resources that Django's redirect never
# sees, so a load balancer can still health-check over plain HTTP.
PARLEY_HTTPS = env_bool("PARLEY_HTTPS", False)
if PARLEY_HTTPS:
    SECURE_SSL_REDIRECT = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("PARLEY_HSTS_SECONDS", 365 * 24 * 3600)
    # includeSubDomains covers only names under Parley's own host; preload is a
    # declaration that has effect once the domain is submitted to the browsers' list.
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

# Content-Security-Policy on every Django page (django-csp 4 format). No inline script
# or style: the pages load chat/static/chat/*.js and *.css, and pass data to scripts in
# data-* attributes. connect-src 'self' covers ws:/wss: to the same host (CSP Level 3).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
        **({"upgrade-insecure-requests": True} if PARLEY_HTTPS else {}),
    }
}

# Accounts: login lockout (django-axes), signups.
AUTHENTICATION_BACKENDS = [
    # Refuses a login while its account or address is locked out, before any password
    # is checked; then Django's own backend.
    "axes.backends.AxesStandaloneBackend",
    # Bots sign in with tokens only: their password login is refused (chat/token_auth.py).
    "chat.token_auth.BotPasswordRefusal",
    "django.contrib.auth.backends.ModelBackend",
]
# N failures within the window lock the account, and separately the address, for the
# window; every further attempt during the lock starts it again.
_LOGIN_LOCKOUT = parse_rate_limit(
    os.environ.get("CHAT_LOGIN_LOCKOUT", "5/15m"), name="CHAT_LOGIN_LOCKOUT"
)
AXES_ENABLED = _LOGIN_LOCKOUT.enabled
AXES_FAILURE_LIMIT = max(_LOGIN_LOCKOUT.count, 1)
AXES_COOLOFF_TIME = timedelta(seconds=_LOGIN_LOCKOUT.seconds)
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_CLIENT_IP_CALLABLE = "chat.accounts.client_ip"
AXES_LOCKOUT_CALLABLE = "chat.accounts.lockout_response"
# Failed attempts are kept (and shown in the admin) until the window passes; successful
# logins are already in the access log, so axes does not store a row for each.
AXES_DISABLE_ACCESS_LOG = True
CHAT_SIGNUP = env_choice("CHAT_SIGNUP", "open", ("open", "closed"))
CHAT_SIGNUP_RATE = parse_rate_limit(
    os.environ.get("CHAT_SIGNUP_RATE", "5/h"), name="CHAT_SIGNUP_RATE"
)

CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    # Counters that every process and machine must share (signups per address) live in
    # the database they already share; serve.py creates the table with the migrations.
    "throttle": {
        "BACKEND": "django.core.cache.backends.db.DatabaseCache",
        "LOCATION": "parley_throttle",
        # Culling drops entries at random: set high enough that live counters never are.
        "OPTIONS": {"MAX_ENTRIES": 100_000},
    },
}
MAX_REQUEST_BYTES = env_int("MAX_REQUEST_BYTES", 10 * 1024 * 1024, minimum=1024)
# Django's own cap on form bodies matches the server's.
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BYTES

# Attachments (PROTOCOL.md "Attachments"; chat/uploads.py). The largest file accepted:
# the upload route's body may be this plus a multipart allowance (project/request.py),
# whatever MAX_REQUEST_BYTES says. Files go through Django's storage API (STORAGES'
# "default"), rooted at MEDIA_ROOT; they are served by chat/upload_serve.py, never as
# plain media files, so MEDIA_URL is not a public URL.
CHAT_MAX_UPLOAD_BYTES = env_int("CHAT_MAX_UPLOAD_BYTES", 10 * 1024 * 1024, minimum=1)
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT") or BASE_DIR / "media")
# An uploaded file is written to a temporary file once past 64 KiB (Django's default is
# 2.5 MB in memory): with ten uploads in flight the process holds no whole body, and
# FileSystemStorage then moves the temporary file into place instead of copying it.
FILE_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
# How often, in seconds, each server process removes the uploads never attached and
# older than 24 h (chat/live/service.py; also `manage.py parley_clean_uploads`).
CHAT_UPLOAD_CLEANUP_SECONDS = env_int("CHAT_UPLOAD_CLEANUP_SECONDS", 3600, minimum=1)

# Webhooks (PROTOCOL.md "Webhooks"; chat/webhooks/). Private, loopback and link-local
# targets are refused unless allowed; a delivery's whole answer must come within the
# timeout; a process's lease on a webhook lasts this long unless renewed (a killed
# holder's webhooks are taken over by another process after it).
CHAT_WEBHOOK_ALLOW_PRIVATE = env_bool("CHAT_WEBHOOK_ALLOW_PRIVATE", False)
CHAT_WEBHOOK_TIMEOUT_SECONDS = env_int("CHAT_WEBHOOK_TIMEOUT_SECONDS", 10, minimum=1)
CHAT_WEBHOOK_LEASE_SECONDS = env_int("CHAT_WEBHOOK_LEASE_SECONDS", 30, minimum=3)

# Live chat (PROTOCOL.md "Limits and configuration").
REDIS_URL = os.environ.get("REDIS_URL", "").strip() or None
# Prefix of Parley's Redis channels and keys, so that several deployments (or test runs)
# can share one Redis (pub/sub channels ignore the database number).
CHAT_REDIS_PREFIX = os.environ.get("CHAT_REDIS_PREFIX", "parley").strip() or "parley"
CHAT_MAX_MESSAGE_CHARS = env_int("CHAT_MAX_MESSAGE_CHARS", 4000, minimum=1)
CHAT_MAX_FRAME_BYTES = env_int("CHAT_MAX_FRAME_BYTES", 65536, minimum=1024)
# Live connections one user (or one anonymous address) may hold in one process.
CHAT_MAX_CONNECTIONS_PER_USER = env_int("CHAT_MAX_CONNECTIONS_PER_USER", 50, minimum=1)
# Every live room is compared with the database (missed events, access changes made by a
# process without a reactor) this often, in seconds (chat/live/service.py).
CHAT_ROOM_CHECK_SECONDS = env_int("CHAT_ROOM_CHECK_SECONDS", 5, minimum=1)
# How often a server compares its live rooms' cursors alone with the database, in seconds
# (0: off): the events the Python API appends from a process with no reactor and no Redis
# reach live clients this quickly (chat/live/service.py).
CHAT_CURSOR_CHECK_SECONDS = env_float("CHAT_CURSOR_CHECK_SECONDS", 0.25)
CHAT_RATE_LIMIT = parse_rate_limit(os.environ.get("CHAT_RATE_LIMIT", "20/10s"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
        # One line per request: written in batches (project/logs.py).
        "access": {"class": "project.logs.BufferedStreamHandler", "formatter": "plain"},
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "parley.access": {"handlers": ["access"], "propagate": False},
    },
}
