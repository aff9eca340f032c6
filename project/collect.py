"""``collectstatic`` at every start, skipped when no source file changed.

whitenoise's manifest storage re-hashes and re-compresses every file on each run (about
ten seconds for Django's admin files on our machines). A fingerprint of the files the
finders would collect (paths, sizes, modification times) is kept in STATIC_ROOT; when it
matches, the collected files are current and the run is skipped.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from django.conf import settings
from django.contrib.staticfiles.finders import get_finders
from django.core.management import call_command

STAMP_NAME = ".parley-collected"


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
    try:
        if stamp.read_text() == fingerprint and (root / "staticfiles.json").exists():
            return False
    except FileNotFoundError:
        pass
    call_command("collectstatic", interactive=False, verbosity=0)
    stamp.write_text(fingerprint)
    return True
