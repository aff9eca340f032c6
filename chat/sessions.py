"""Whom a session key (or a token's credential key) signs in, as Django's own code would
decide, and faster than ``get_user`` for the cases that are Django's own. The Django side
(it imports no Twisted): the live side calls it on its store's threads.

- ``session_user``: one key, for a connection being opened (chat/live/auth.py): a
  token's key as the token middleware would; a session's with ``quick_user``, two plain
  statements (chat/fast_queries.py) instead of the ORM's two queries, which built them in
  about 1 ms of the 1.2 ms a connect's session cost (cProfile, SQLite, 2026-12-07), and
  else with Django's ``get_user`` itself (``django_session_user``).
- ``signed_in``: many keys at once (the room check asks for every inbox stream of the
  process every 5 s), two queries for all of them.

Both fast paths answer "yes" only on the checks ``get_user`` makes (the session not
expired, its backend configured, the account there, active and with the password the
session was made with); every "no" and every case that is not Django's own (another
session engine, backend, user manager or hash) is left to ``django_session_user``, so
nobody is dropped, or let in, on a fast path's word alone.
"""

from __future__ import annotations

import threading
from collections.abc import Collection
from typing import Any

from chat.live.records import UserInfo

# Keys in one IN (...): far below SQLite's 32,766 parameters.
KEYS_PER_QUERY = 5_000
# Entries the memo keeps at most, of each kind (about 500 bytes each): the room check
# prunes it to the inbox streams every 5 s, but a process with no inbox stream never
# runs that check, and every connect adds its session. Past the bound it starts again
# empty, which costs decodes, never a wrong answer.
MEMO_SIZE = 50_000


def session_user(session_key: str) -> UserInfo | None:
    """The user ``session_key`` signs in now, as Django's AuthenticationMiddleware would
    decide (None: nobody, or an ended session); a token's credential key, as the token
    middleware would."""
    from chat import tokens

    if tokens.is_credential(session_key):  # a bearer token (chat/tokens.py)
        return tokens.credential_user(session_key)
    quick = quick_user(session_key)
    if quick is not None:
        return quick
    return django_session_user(session_key)


def django_session_user(session_key: str) -> UserInfo | None:
    """``session_user``'s answer for a session key, as Django's own code gives it."""
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import get_user
    from django.http import HttpRequest

    engine = import_module(settings.SESSION_ENGINE)
    request = HttpRequest()
    request.session = engine.SessionStore(session_key)
    user = get_user(request)  # verifies the session hash, as AuthenticationMiddleware
    if not user.is_authenticated:
        return None
    return UserInfo(user.pk, user.get_username())


class _Memo:
    """What ``signed_in`` worked out last time, so that the check of 8,000 unchanged
    streams does not decode 8,000 sessions and hash 8,000 passwords again every 5 s: a
    check of 8,000 sessions on SQLite took 0.83 s of a core before, 0.16-0.27 s with this
    and the accounts read as values (2026-12-07, one process, nothing else running).

    - ``claims``: session key -> (its row's session_data, what it claims: (user pk,
      backend path, session hash) or None). A row whose data is the same string decodes
      to the same claim: the decode depends on nothing else but SECRET_KEY, fixed for the
      process's life.
    - ``hashes``: user pk -> (password field, ``get_session_auth_hash()``), for user
      models that keep Django's own ``get_session_auth_hash`` (a function of the password
      field and SECRET_KEY only).

    Only what is still in use is kept: once a round the room check (which asks about a
    part of the inbox streams at a time) names every inbox stream's key (``keep``) and
    every other key is forgotten; between two rounds only the sessions of connections
    opened are added, and never past MEMO_SIZE.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.claims: dict[str, tuple[str, tuple[Any, str, str] | None]] = {}
        self.hashes: dict[Any, tuple[str, str]] = {}


_MEMO = _Memo()


def signed_in(keys: list[str], keep: Collection[str] | None = None) -> dict[str, int | None]:
    """session key -> the id of the user it signs in now, None when it signs in nobody:
    what ``session_user`` answers (Django's ``get_user``), in bulk.

    ``session_user`` costs two queries per session (the session, its user); the room check
    asks for every inbox stream of the process every 5 s, so here it is one query of the
    sessions (database-backed engines) and one of their users, with ``get_user``'s
    checks made on them: the session not expired, its backend still configured, the
    account there and allowed by that backend (``user_can_authenticate``: active), and
    the session's hash that of the account's password now (or of a fallback secret).
    Any other engine or backend, and every "no", is asked of ``session_user`` itself,
    so that nobody is dropped on this function's word alone.
    """
    from importlib import import_module

    from django.conf import settings
    from django.contrib import auth
    from django.contrib.sessions.backends.db import SessionStore as DatabaseSessions
    from django.utils import timezone
    from django.utils.crypto import constant_time_compare

    from chat import tokens

    def exact(key: str) -> int | None:
        # A token's key is session_user's to answer; a session's, Django's (the bulk
        # read above already made quick_user's checks).
        user = session_user(key) if tokens.is_credential(key) else django_session_user(key)
        return user.id if user is not None else None

    engine = import_module(settings.SESSION_ENGINE)
    if not keys:
        return {}
    # Bearer tokens' credential keys (chat/tokens.py), in bulk too; the rest are sessions.
    credentials = [key for key in keys if tokens.is_credential(key)]
    by_token = {
        key: user.id if user is not None else None
        for key, user in tokens.credential_users(credentials).items()
    }
    keys = [key for key in keys if not tokens.is_credential(key)]
    if not keys:
        return by_token
    if not issubclass(engine.SessionStore, DatabaseSessions):
        return by_token | {key: exact(key) for key in keys}
    model = engine.SessionStore.get_model_class()
    decoder = engine.SessionStore()
    user_model = auth.get_user_model()
    now = timezone.now()
    memo = _MEMO
    # key -> (user pk, backend path, session hash): what each live session claims.
    claims: dict[str, tuple[Any, str, str]] = {}
    for start in range(0, len(keys), KEYS_PER_QUERY):
        rows = model.objects.filter(
            session_key__in=keys[start : start + KEYS_PER_QUERY], expire_date__gt=now
        ).values_list("session_key", "session_data")
        for key, value in rows:
            claim = _remembered_claim(key, value, decoder, user_model)
            if claim is not None:
                claims[key] = claim
    pks = sorted({claim[0] for claim in claims.values()})
    backends = {path: auth.load_backend(path) for _pk, path, _h in claims.values()}
    # With Django's own checks throughout, an account is its (is_active, password) pair:
    # read as values, not as 8,000 model instances (half of what was left of a check).
    plain = _plain_accounts(user_model, [b for b in backends.values() if _own_get_user(b)])
    users: dict[Any, Any] = {}
    for start in range(0, len(pks), KEYS_PER_QUERY):
        found = user_model._default_manager.filter(pk__in=pks[start : start + KEYS_PER_QUERY])
        if plain:
            fields = ("pk", "is_active", "password")
            users.update((pk, (active, pw)) for pk, active, pw in found.values_list(*fields))
        else:
            users.update((u.pk, u) for u in found)
    answer: dict[str, int | None] = {}
    for key in keys:
        pk, backend_path, hashed = claims.get(key, (None, None, None))
        backend = backends.get(backend_path)
        if backend is not None and not _own_get_user(backend):
            answer[key] = exact(key)  # a backend whose get_user is not ModelBackend's
            continue
        user = users.get(pk)
        if user is None:
            answer[key] = exact(key)
        elif isinstance(user, tuple):
            active, password = user
            if active and hashed and constant_time_compare(hashed, _hash_of(pk, password, memo)):
                answer[key] = pk
            else:
                answer[key] = exact(key)  # inactive, or a fallback secret's hash
        elif (
            backend.user_can_authenticate(user)
            and hashed
            and (
                constant_time_compare(hashed, user.get_session_auth_hash())
                or any(
                    constant_time_compare(hashed, h) for h in user.get_session_auth_fallback_hash()
                )
            )
        ):
            answer[key] = user.pk
        else:
            answer[key] = exact(key)
    if keep is not None:
        kept = set(keep)
        with memo.lock:
            memo.claims = {k: v for k, v in memo.claims.items() if k in kept}
            named = {v[1][0] for v in memo.claims.values() if v[1] is not None}
            memo.hashes = {k: v for k, v in memo.hashes.items() if k in named}
    return by_token | answer


def _claim(session: dict, user_model, auth, invalid) -> tuple[Any, str, str] | None:
    """(user pk, backend path, session hash) that a decoded session claims, or None when
    it claims nobody (as ``get_user`` would find nobody)."""
    try:
        pk = user_model._meta.pk.to_python(session[auth.SESSION_KEY])
        backend = session[auth.BACKEND_SESSION_KEY]
    except (KeyError, invalid):
        return None
    return pk, backend, session.get(auth.HASH_SESSION_KEY) or ""


def quick_user(key: str) -> UserInfo | None:
    """The user session ``key`` signs in, read with two plain statements, when the answer
    is "yes" and every part of it is Django's own (``_plain_accounts``); None otherwise,
    for ``session_user``'s Django path to answer (a "no" included: Django's ``get_user``
    also flushes a session whose hash is stale, which only that path does)."""
    from importlib import import_module

    from django.conf import settings
    from django.contrib import auth
    from django.contrib.sessions.backends.db import SessionStore as DatabaseSessions
    from django.utils import timezone
    from django.utils.crypto import constant_time_compare

    from chat import fast_queries

    engine = import_module(settings.SESSION_ENGINE)
    if not issubclass(engine.SessionStore, DatabaseSessions):
        return None
    model = engine.SessionStore.get_model_class()
    data = fast_queries.session_data(model, key, timezone.now())
    if data is None:
        return None
    user_model = auth.get_user_model()
    claim = _remembered_claim(key, data, engine.SessionStore(), user_model)
    if claim is None or not claim[2]:
        return None
    pk, path, hashed = claim
    if not _plain_accounts(user_model, [auth.load_backend(path)]):
        return None
    account = fast_queries.account(user_model, pk)
    if account is None or not account[0]:
        return None
    if not constant_time_compare(hashed, _hash_of(pk, account[1], _MEMO)):
        return None
    return UserInfo(pk, account[2])


def _remembered_claim(key: str, data: str, decoder, user_model) -> tuple[Any, str, str] | None:
    """What session row ``data`` claims, decoded only if the row changed since last time;
    None when it claims nobody, or a backend that is not configured (now: the settings
    are asked on every call, not remembered)."""
    from django.conf import settings
    from django.contrib import auth
    from django.core.exceptions import ValidationError

    known = _MEMO.claims.get(key)
    if known is not None and known[0] == data:
        claim = known[1]
    else:
        claim = _claim(decoder.decode(data), user_model, auth, ValidationError)
        with _MEMO.lock:
            if len(_MEMO.claims) >= MEMO_SIZE:
                _MEMO.claims = {}
            _MEMO.claims[key] = (data, claim)
    if claim is None or claim[1] not in settings.AUTHENTICATION_BACKENDS:
        return None
    return claim


def _own_get_user(backend) -> bool:
    """Whether ``backend`` finds a session's user as Django's ModelBackend does."""
    from django.contrib.auth.backends import ModelBackend

    return isinstance(backend, ModelBackend) and type(backend).get_user is ModelBackend.get_user


def _plain_accounts(user_model, backends) -> bool:
    """Whether, for these backends, whom a session signs in depends on nothing but the
    account row's ``is_active`` and ``password``: Django's own ModelBackend checks, its
    session hash (a function of the password field and SECRET_KEY) and a default manager
    that filters nothing out."""
    from django.contrib.auth.backends import ModelBackend
    from django.contrib.auth.base_user import AbstractBaseUser
    from django.db.models.manager import BaseManager

    return (
        user_model.get_session_auth_hash is AbstractBaseUser.get_session_auth_hash
        and _has_field(user_model, "is_active")
        and type(user_model._default_manager).get_queryset is BaseManager.get_queryset
        and all(
            _own_get_user(b)
            and type(b).user_can_authenticate is ModelBackend.user_can_authenticate
            for b in backends
        )
    )


def _has_field(model, name: str) -> bool:
    try:
        model._meta.get_field(name)
    except Exception:  # FieldDoesNotExist: is_active is the class's constant True then
        return False
    return True


def _hash_of(pk, password: str, memo: _Memo) -> str:
    """Django's session hash of an account whose password field is ``password``,
    computed again only when it changed."""
    from django.contrib.auth import get_user_model

    known = memo.hashes.get(pk)
    if known is not None and known[0] == password:
        return known[1]
    hashed = get_user_model()(pk=pk, password=password).get_session_auth_hash()
    with memo.lock:
        if len(memo.hashes) >= MEMO_SIZE:
            memo.hashes = {}
        memo.hashes[pk] = (password, hashed)
    return hashed
