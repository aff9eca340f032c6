"""Tokens for tests that run Parley for real: made in the server's database (the ORM in
one ``manage.py shell``, as the page and the admin make them), secrets returned."""

from __future__ import annotations

import json

_MAKE = """
import json
from datetime import timedelta
from django.contrib.auth.models import User
from django.utils import timezone
from chat import tokens
from chat.models import Profile
out = {}
for name, username, expires, bot in json.loads(%r):
    user = User.objects.get(username=username)
    if bot:
        Profile.objects.update_or_create(user=user, defaults={"is_bot": True})
    at = timezone.now() + timedelta(seconds=expires) if expires is not None else None
    out[name] = tokens.make(user, name, expires_at=at)[1]
print("TOKENS " + json.dumps(out))
"""


def make_tokens(server, *specs: tuple) -> dict[str, str]:
    """``specs``: ``(name, username)``, optionally with ``expires`` (seconds from now,
    negative: already expired) and ``bot`` (flag the account a bot). -> name: secret."""
    rows = [
        (s[0], s[1], s[2] if len(s) > 2 else None, bool(s[3]) if len(s) > 3 else False)
        for s in specs
    ]
    out = server.shell(_MAKE % json.dumps(rows))
    line = next(x for x in out.splitlines() if x.startswith("TOKENS "))
    return json.loads(line.removeprefix("TOKENS "))


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}
