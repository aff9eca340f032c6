"""The many-room scenario's population: Zipf-like room sizes, who is in which room, and
the users, rooms, memberships and sessions bulk-inserted into a Parley database.

Signing 10,000 users in through the login form would cost ~0.3 s of password hashing
each; the sessions are made the way ``django.contrib.auth.login`` makes them instead, in
one ``manage.py shell`` of Parley's venv (as bench/inbox_cost.py does for one room).
"""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

from common import PARLEY_PY, REPO, parley_env

MIN_ROOM = 3


def zipf_sizes(rooms: int, users: int, per_user: int, largest: int | None = None) -> list[int]:
    """Room sizes, largest first: ``largest / rank**s`` floored at MIN_ROOM, with ``s``
    fitted so that the sizes add up to exactly ``users * per_user`` memberships."""
    total = users * per_user
    # A tenth of the users by default (1000 of 10,000), but at least twice the mean room.
    default = max(MIN_ROOM, users // 10, -(-2 * total // rooms))
    top = min(users, largest if largest is not None else default)
    if not MIN_ROOM * rooms <= total <= top * rooms:
        raise ValueError(f"{rooms} rooms of {MIN_ROOM}..{top} cannot hold {total} memberships")

    def sizes(s: float) -> list[int]:
        return [max(MIN_ROOM, round(top / (rank**s))) for rank in range(1, rooms + 1)]

    low, high = 0.0, 20.0  # the sum falls as s grows
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if sum(sizes(mid)) > total else (low, mid)
    found = sizes(high)
    # Rounding leaves a few memberships over or short: taken from / given to the rooms
    # from the middle of the law on, never below MIN_ROOM nor above ``top``.
    diff = total - sum(found)
    index = rooms // 2
    while diff:
        step = 1 if diff > 0 else -1
        if MIN_ROOM <= found[index] + step <= top:
            found[index] += step
            diff -= step
        index = (index + 1) % rooms
    return found


def assign(users: int, sizes: list[int], seed: int = 1) -> list[list[int]]:
    """Members of each room (user indices). A cursor walks the shuffled users round and
    round, so every user gets the same number of rooms and no room has a user twice
    (every size is at most ``users``)."""
    order = list(range(users))
    random.Random(seed).shuffle(order)
    members, cursor = [], 0
    for size in sizes:
        members.append([order[(cursor + k) % users] for k in range(size)])
        cursor = (cursor + size) % users
    return members


_PROVISION = """
import json
from importlib import import_module
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import User
from django.db import transaction
from chat.models import Room
spec = json.load(open({spec_path!r}))
password = make_password("bench-scenario-pw")
names = spec["users"]
User.objects.bulk_create([User(username=n, password=password) for n in names], batch_size=500)
by_name = {{u.username: u for u in User.objects.filter(username__in=names)}}
users = [by_name[n] for n in names]
store = import_module(settings.SESSION_ENGINE).SessionStore
cookies = []
with transaction.atomic():
    for user in users:
        session = store()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        cookies.append("sessionid=" + session.session_key)
with transaction.atomic():
    for slug, members in zip(spec["rooms"], spec["members"]):
        room = Room.objects.create(slug=slug, name=slug, is_public=True)
        room.members.add(*[users[i] for i in members])  # m2m_changed: read positions
print("PROVISIONED " + json.dumps(cookies))
"""


def provision(
    db_url: str, static_root: Path, workdir: Path, names: list[str], rooms: list[str],
    members: list[list[int]],
) -> list[str]:  # fmt: skip
    """Create the users, rooms and memberships; the session cookie of each user."""
    spec_path = workdir / "scenario-spec.json"
    spec_path.write_text(json.dumps({"users": names, "rooms": rooms, "members": members}))
    done = subprocess.run(
        [str(PARLEY_PY), "manage.py", "shell", "-c", _PROVISION.format(spec_path=str(spec_path))],
        cwd=REPO,
        env=parley_env(db_url, static_root),
        capture_output=True,
        text=True,
        timeout=900,
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("PROVISIONED ")), None)
    if line is None:
        raise RuntimeError(f"provisioning failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
    return json.loads(line.removeprefix("PROVISIONED "))
