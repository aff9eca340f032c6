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
    return StreamCheck(signed_in(sessions), member_slugs(user_ids) if user_ids else {})


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


def signed_in(keys: list[str]) -> dict[str, int | None]:
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
    now = timezone.now()
    data: dict[str, dict] = {}
    for start in range(0, len(keys), KEYS_PER_QUERY):
        rows = model.objects.filter(
            session_key__in=keys[start : start + KEYS_PER_QUERY], expire_date__gt=now
        ).values_list("session_key", "session_data")
        data.update((key, decoder.decode(value)) for key, value in rows)
    user_model = auth.get_user_model()
    claims: dict[str, tuple[Any, str]] = {}  # key -> (user pk, backend path)
    for key, session in data.items():
        try:
            pk = user_model._meta.pk.to_python(session[auth.SESSION_KEY])
            backend = session[auth.BACKEND_SESSION_KEY]
        except (KeyError, ValidationError):
            continue
        if backend in settings.AUTHENTICATION_BACKENDS:
            claims[key] = (pk, backend)
    pks = sorted({pk for pk, _backend in claims.values()})
    users = {}
    for start in range(0, len(pks), KEYS_PER_QUERY):
        chunk = pks[start : start + KEYS_PER_QUERY]
        users.update((u.pk, u) for u in user_model._default_manager.filter(pk__in=chunk))
    answer: dict[str, int | None] = {}
    for key in keys:
        pk, backend_path = claims.get(key, (None, None))
        backend = auth.load_backend(backend_path) if backend_path else None
        if backend is not None and not isinstance(backend, ModelBackend):
            answer[key] = exact(key)  # a backend whose get_user is not ModelBackend's
            continue
        user = users.get(pk)
        if user is None or not backend.user_can_authenticate(user):
            answer[key] = exact(key)
            continue
        hashed = data[key].get(auth.HASH_SESSION_KEY)
        if hashed and (
            constant_time_compare(hashed, user.get_session_auth_hash())
            or any(constant_time_compare(hashed, h) for h in user.get_session_auth_fallback_hash())
        ):
            answer[key] = user.pk
        else:
            answer[key] = exact(key)
    return by_token | answer
