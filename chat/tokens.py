"""API tokens (PROTOCOL.md "Authentication"): made, checked, revoked.

A token's secret is ``prl_`` and 43 random URL-safe characters (32 bytes from
``secrets``), shown once when it is made. Only its SHA-256 digest is stored, with the
first characters (``prefix``) to tell tokens apart in lists. Checking a secret is one
lookup of its digest in the unique index: no comparison of secrets at all, so nothing
leaks through timing (an attacker cannot steer the digest of what they send toward a
stored one). A slow hash (PBKDF2) buys nothing here: the secret has 256 random bits, not
a password's few.

Every transport reads the token from ``Authorization: Bearer`` only: a secret in a URL
ends up in access logs, proxies and browser history, so ``?token=`` is never read.

The live side (chat/live/) knows a token as a *credential key*, ``token:<digest>``,
used wherever a session key would be: the Authorizer caches by it, connections are
opened with it, and its revocation is the ``session`` AccessChange of that key, so every
path that ends a logged-out session's connections (here and, over the bus, in every
process) ends a revoked token's. Django session keys are 32 letters and digits: never
``token:...``.

``last_used_at`` is written at most once a minute per token (``TOUCH_EVERY``): a script
polling every second must not turn every request into a write.

Django-side (models imported in the functions: chat/live/ imports this module at start).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta

from chat.live.records import UserInfo

SECRET_PREFIX = "prl_"
SECRET_BYTES = 32  # 43 URL-safe characters
# A secret as we make them (with room for longer ones later); anything else is refused
# before any query.
_SECRET = re.compile(r"prl_[A-Za-z0-9_-]{32,200}")
DISPLAY_CHARS = 12  # "prl_" and 8 characters: enough to tell tokens apart, useless alone
TOUCH_EVERY = timedelta(seconds=60)
CREDENTIAL_PREFIX = "token:"


def digest_of(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def bearer_secret(authorization: str | None) -> str | None:
    """The secret of an ``Authorization: Bearer <secret>`` header ("" when it names none
    or more than one word: a bad token), None when the header is absent or of another
    scheme (not a token request at all)."""
    if authorization is None:
        return None
    scheme, _space, rest = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    rest = rest.strip()
    return "" if not rest or " " in rest else rest


def credential(secret: str) -> str:
    """The live side's key for a token request (see the module's docstring); a secret
    that is not one we make has the key with no digest, which signs in nobody."""
    if not _SECRET.fullmatch(secret):
        return CREDENTIAL_PREFIX
    return CREDENTIAL_PREFIX + digest_of(secret)


def credential_of_digest(digest: str) -> str:
    return CREDENTIAL_PREFIX + digest


def is_credential(key: str | None) -> bool:
    return key is not None and key.startswith(CREDENTIAL_PREFIX)


def make(user, name: str, expires_at: datetime | None = None):
    """A new token of ``user``: (the Token row, its secret). The secret exists only in
    the return value: show it once, it cannot be read back."""
    from chat.models import Token

    secret = SECRET_PREFIX + secrets.token_urlsafe(SECRET_BYTES)
    token = Token.objects.create(
        user=user,
        name=name,
        prefix=secret[:DISPLAY_CHARS],
        digest=digest_of(secret),
        expires_at=expires_at,
    )
    return token, secret


def usable(token, now: datetime | None = None) -> bool:
    """Whether ``token`` signs its user in now: not revoked, not expired, user active."""
    from django.utils import timezone

    now = now or timezone.now()
    if token.revoked_at is not None:
        return False
    if token.expires_at is not None and token.expires_at <= now:
        return False
    return bool(token.user.is_active)


def _by_digest(digest: str):
    from chat.models import Token

    return Token.objects.select_related("user").filter(digest=digest).first()


def check(secret: str | None):
    """The Token that ``secret`` is, if it signs its user in now (else None); its
    ``last_used_at`` is brought up to date, at most once a minute."""
    if not secret or not _SECRET.fullmatch(secret):
        return None
    return _checked(_by_digest(digest_of(secret)))


def _checked(token):
    from django.utils import timezone

    now = timezone.now()
    if token is None or not usable(token, now):
        return None
    if token.last_used_at is None or now - token.last_used_at >= TOUCH_EVERY:
        # A conditional UPDATE: of many requests at once, one writes.
        type(token).objects.filter(pk=token.pk, last_used_at=token.last_used_at).update(
            last_used_at=now
        )
        token.last_used_at = now
    return token


def credential_user(key: str) -> UserInfo | None:
    """Runs in a store thread: the user the credential key ``key`` signs in now."""
    digest = key[len(CREDENTIAL_PREFIX) :]
    token = _checked(_by_digest(digest)) if digest else None
    if token is None:
        return None
    return UserInfo(token.user.pk, token.user.get_username())


# Digests per query of ``credential_users``: well under SQLite's bound on parameters.
_DIGESTS_PER_QUERY = 5_000


def credential_users(keys: list[str]) -> dict[str, UserInfo | None]:
    """Runs in a store thread: ``credential_user`` for many keys at once, one query per
    5,000. The room check re-checks every live connection's token every 5 s: a query
    each was a quarter of a worker's busy thread samples in a soak of 2,000 clients.
    The same answer as ``credential_user``: the token usable now (``usable``), its
    ``last_used_at`` brought up to date at most once a minute, in one UPDATE."""
    from django.db.models import Q
    from django.utils import timezone

    from chat.models import Token

    digests = {key: key[len(CREDENTIAL_PREFIX) :] for key in keys}
    wanted = sorted({d for d in digests.values() if d})
    found = {}
    for start in range(0, len(wanted), _DIGESTS_PER_QUERY):
        chunk = wanted[start : start + _DIGESTS_PER_QUERY]
        found.update(
            (t.digest, t) for t in Token.objects.select_related("user").filter(digest__in=chunk)
        )
    now = timezone.now()
    due = [t.pk for t in found.values() if usable(t, now) and _due(t, now)]
    stale = Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - TOUCH_EVERY)
    for start in range(0, len(due), _DIGESTS_PER_QUERY):
        # Conditional, as in ``_checked``: a token another request touched meanwhile is left.
        chunk = due[start : start + _DIGESTS_PER_QUERY]
        Token.objects.filter(stale, pk__in=chunk).update(last_used_at=now)
    answer: dict[str, UserInfo | None] = {}
    for key, digest in digests.items():
        token = found.get(digest)
        if token is None or not usable(token, now):
            answer[key] = None
        else:
            answer[key] = UserInfo(token.user.pk, token.user.get_username())
    return answer


def _due(token, now) -> bool:
    return token.last_used_at is None or now - token.last_used_at >= TOUCH_EVERY


def revoke(token) -> None:
    """Revoke ``token`` (its live connections end: ``token_saved``)."""
    from django.utils import timezone

    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])


def is_bot(user) -> bool:
    """Whether ``user`` is flagged a bot (Profile.is_bot); False for anonymous."""
    from chat.models import Profile

    if user is None or not getattr(user, "is_authenticated", False):
        return False
    try:
        return bool(user.chat_profile.is_bot)
    except Profile.DoesNotExist:
        return False


# -- ending a token's live connections ---------------------------------------------------


def token_saved(sender, instance, using: str, **kwargs) -> None:
    """A revoked token (the page, the admin's action or field, ``revoke``, any save()):
    its connections end at once in every process, by the logout's path, and every
    server remembers its credential as ended (a token is never un-revoked: the admin
    refuses it). One saved with an expiry already past is re-checked instead, as an
    account change: the database decides, and nothing is remembered, so an expiry moved
    later again is honoured. Announcing an unusable token again costs one Authorizer
    mark, nothing more."""
    from django.utils import timezone

    from chat.live.publish import AccessChange
    from chat.signals import announce

    if instance.revoked_at is not None:
        announce(_ended(instance), using)
    elif instance.expires_at is not None and instance.expires_at <= timezone.now():
        announce(AccessChange.accounts_changed((instance.user_id,)), using)


def token_deleted(sender, instance, using: str, **kwargs) -> None:
    from chat.signals import announce

    announce(_ended(instance), using)


def _ended(token):
    from chat.live.publish import AccessChange

    return AccessChange.session_ended(credential_of_digest(token.digest), token.user_id)


def connect() -> None:
    """Connect the receivers (from chat.signals.connect; the uids make it idempotent)."""
    from django.db.models.signals import post_delete, post_save

    from chat.models import Token

    post_save.connect(token_saved, sender=Token, dispatch_uid="chat.tokens.saved")
    post_delete.connect(token_deleted, sender=Token, dispatch_uid="chat.tokens.deleted")
