"""Start-up preparation of serve.py: migrations and static files, safe to run at once
from several servers sharing a database.

``collectstatic`` runs at every start but is skipped when no source file changed:
whitenoise's manifest storage re-hashes and re-compresses every file on each run (about
ten seconds for Django's admin files on our machines). A fingerprint of the files the
finders would collect (paths, sizes, modification times) is kept in STATIC_ROOT; when it
matches, the collected files are current and the run is skipped.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings
from django.contrib.staticfiles.finders import get_finders
from django.core.management import call_command

STAMP_NAME = ".parley-collected"
# pg_advisory_lock key held while migrating ("parley" in ASCII).
MIGRATION_LOCK_KEY = 0x7061726C6579


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def migration_lock() -> Iterator[None]:
    """One migrating server at a time: a PostgreSQL advisory lock, a file lock for SQLite.

    Two machines started together against a fresh database would otherwise both try to
    create the same tables, and one would fail.
    """
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK_KEY])
        try:
            yield
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [MIGRATION_LOCK_KEY])
    elif connection.vendor == "sqlite" and connection.settings_dict["NAME"] != ":memory:":
        with file_lock(Path(f"{connection.settings_dict['NAME']}.migrate-lock")):
            yield
    else:
        yield


def migrate() -> bool:
    """Apply migrations, create cache tables; on a fresh install create the lobby (then True)."""
    from chat.setup import ensure_default_room

    with migration_lock():
        call_command("migrate", interactive=False, verbosity=0)
        # The database cache's table (settings.CACHES "throttle") is not a migration.
        call_command("createcachetable", verbosity=0)
        return ensure_default_room() is not None


def source_fingerprint() -> str:
    digest = hashlib.sha256(settings.STORAGES["staticfiles"]["BACKEND"].encode())
    for finder in get_finders():
        for path, storage in finder.list(["CVS", ".*", "*~"]):
            stat = os.stat(storage.path(path))
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def collect_static() -> bool:
    """Run collectstatic unless STATIC_ROOT is current; True when it ran."""
    root = Path(settings.STATIC_ROOT)
    stamp = root / STAMP_NAME
    fingerprint = source_fingerprint()
    with file_lock(root / ".parley-collect-lock"):
        try:
            if stamp.read_text() == fingerprint and (root / "staticfiles.json").exists():
                return False
        except FileNotFoundError:
            pass
        call_command("collectstatic", interactive=False, verbosity=0)
        stamp.write_text(fingerprint)
        return True
