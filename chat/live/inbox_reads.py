"""What the inbox (chat/live/inbox.py, inbox_checks.py) reads from the database. Every
function here runs on a store thread (``Store.run``), never on the reactor, and imports
Django where it runs.

- ``member_rooms_of``: a user's rooms with their counts (the hello, a ``rooms`` frame).
- ``recount_rooms``: the counts of some members of some rooms, ONE statement for all of
  them (``chat.counts.counts_of_pairs``), so that each room's last_seq and counts are
  one snapshot.
- ``check_streams``: the room check's read for the inbox streams: whom their sessions
  sign in now (``signed_in``), and which rooms their users are members of now.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from chat.live.records import RoomInfo

# Pairs in one counts statement: chat/counts.py's own chunk. A room's pairs are never
# split between two statements, so that its answer is one snapshot.
PAIRS_PER_STATEMENT = 10_000
# Ids or keys in one IN (...): far below SQLite's 32,766 parameters.
KEYS_PER_QUERY = 5_000

RoomCounts = tuple[int, dict[int, tuple[Any, ...]]]


@dataclass(frozen=True, slots=True)
class StreamCheck:
    sessions: dict[str, int | None]  # session key -> the user id it signs in now (or None)
    rooms: dict[int, frozenset[str]]  # user id -> the slugs of their rooms (none: missing)


def member_rooms_of(user_id: int) -> list[dict]:
    from chat.room_objects import member_rooms

    return member_rooms(user_id)


def recount_rooms(asked: list[tuple[RoomInfo, list[int]]]) -> list[RoomCounts]:
    """For each ``(room, user ids)`` asked, ``(last_seq, {user_id: (read_seq, unread,
    mentions)})``; a user who is not a member is missing from it."""
    from chat.counts import counts_of_pairs

    found: dict = {}
    pairs: list[tuple[int, int]] = []
    for info, user_ids in asked:
        if pairs and len(pairs) + len(user_ids) > PAIRS_PER_STATEMENT:
            found.update(counts_of_pairs(pairs))
            pairs = []
        pairs.extend((info.id, user_id) for user_id in user_ids)
    if pairs:
        found.update(counts_of_pairs(pairs))
    answers: list[RoomCounts] = []
    for info, user_ids in asked:
        last_seq, rows = 0, {}
        for user_id in user_ids:
            counted = found.get((info.id, user_id))
            if counted is not None:
                last_seq = max(last_seq, counted.last_seq)
                rows[user_id] = (counted.read_seq, counted.unread, counted.mentions)
        answers.append((last_seq, rows))
    return answers


def check_streams(sessions: list[str], user_ids: list[int]) -> StreamCheck:
    found = signed_in(sessions, forget_others=True)
    return StreamCheck(found, member_slugs(user_ids) if user_ids else {})


def member_slugs(user_ids: list[int]) -> dict[int, frozenset[str]]:
    """user id -> the slugs of the rooms they are a member of: one query per 5,000 users."""
    from chat.models import Room

    through = Room.members.through.objects
    found: dict[int, set[str]] = {}
    for start in range(0, len(user_ids), KEYS_PER_QUERY):
        chunk = user_ids[start : start + KEYS_PER_QUERY]
        rows = through.filter(user_id__in=chunk).values_list("user_id", "room__slug")
        for user_id, slug in rows:
            found.setdefault(user_id, set()).add(slug)
    return {user_id: frozenset(slugs) for user_id, slugs in found.items()}


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

    Only what this function was asked about lately is kept: the room check asks about
    every inbox stream of the process and forgets every other key (``forget_others``);
    between two checks only the sessions of live connections are added.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.claims: dict[str, tuple[str, tuple[Any, str, str] | None]] = {}
        self.hashes: dict[Any, tuple[str, str]] = {}


_MEMO = _Memo()


def signed_in(keys: list[str], forget_others: bool = False) -> dict[str, int | None]:
    """session key -> the id of the user it signs in now, None when it signs in nobody:
    what chat.live.auth.session_user answers (Django's ``get_user``), in bulk.

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
    from django.contrib.auth.backends import ModelBackend
    from django.contrib.auth.base_user import AbstractBaseUser
    from django.contrib.sessions.backends.db import SessionStore as DatabaseSessions
    from django.core.exceptions import ValidationError
    from django.utils import timezone
    from django.utils.crypto import constant_time_compare

    from chat import tokens
    from chat.live.auth import session_user

    def exact(key: str) -> int | None:
        user = session_user(key)
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
            known = memo.claims.get(key)
            if known is not None and known[0] == value:
                claim = known[1]
            else:
                claim = _claim(decoder.decode(value), user_model, settings, auth, ValidationError)
                with memo.lock:
                    memo.claims[key] = (value, claim)
            if claim is not None:
                claims[key] = claim
    pks = sorted({claim[0] for claim in claims.values()})
    # Django's own hash is a function of the password field alone (and SECRET_KEY).
    own_hash = user_model.get_session_auth_hash is AbstractBaseUser.get_session_auth_hash
    backends = {path: auth.load_backend(path) for _pk, path, _h in claims.values()}
    # With Django's own checks throughout, an account is its (is_active, password) pair:
    # read as values, not as 8,000 model instances (half of what was left of a check).
    plain = own_hash and all(
        type(b).user_can_authenticate is ModelBackend.user_can_authenticate
        for b in backends.values()
        if isinstance(b, ModelBackend)
    )
    fields = ("pk", "is_active", "password") if _has_field(user_model, "is_active") else None
    users: dict[Any, Any] = {}
    for start in range(0, len(pks), KEYS_PER_QUERY):
        found = user_model._default_manager.filter(pk__in=pks[start : start + KEYS_PER_QUERY])
        if plain and fields:
            users.update((pk, (active, pw)) for pk, active, pw in found.values_list(*fields))
        else:
            users.update((u.pk, u) for u in found)
    answer: dict[str, int | None] = {}
    for key in keys:
        pk, backend_path, hashed = claims.get(key, (None, None, None))
        backend = backends.get(backend_path)
        if backend is not None and not isinstance(backend, ModelBackend):
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
    if forget_others:
        asked = set(keys)
        with memo.lock:
            memo.claims = {k: v for k, v in memo.claims.items() if k in asked}
            memo.hashes = {k: v for k, v in memo.hashes.items() if k in users}
    return by_token | answer


def _claim(session: dict, user_model, settings, auth, invalid) -> tuple[Any, str, str] | None:
    """(user pk, backend path, session hash) that a decoded session claims, or None when
    it claims no configured backend's user (as ``get_user`` would find nobody)."""
    try:
        pk = user_model._meta.pk.to_python(session[auth.SESSION_KEY])
        backend = session[auth.BACKEND_SESSION_KEY]
    except (KeyError, invalid):
        return None
    if backend not in settings.AUTHENTICATION_BACKENDS:
        return None
    return pk, backend, session.get(auth.HASH_SESSION_KEY) or ""


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
        memo.hashes[pk] = (password, hashed)
    return hashed
