"""Direct messages, moderation and attachments again, on PostgreSQL, as
test_on_postgres.py runs its modules: the DM creation race (which only a database with
concurrent connections can run), the mute/ban/slow-mode queries of the append
transaction, and the uploads' ``FOR UPDATE SKIP LOCKED``. A file of its own so that a
parallel run (pytest-xdist) gives it its own worker. Marked ``scale``: it needs the
machine's PostgreSQL (127.0.0.1:5432, user postgres)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.scale

HERE = Path(__file__).resolve().parent
MODULES = ["test_dms.py", "test_moderation.py", "test_log_rules.py", "test_uploads.py"]


@pytest.mark.timeout(300)
def test_rooms_moderation_and_uploads_hold_on_postgresql():
    name = f"parley_t_rooms_{secrets.token_hex(4)}"  # pytest-django makes test_<name>
    env = {**os.environ, "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{name}"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "--create-db"]
        + [str(HERE / module) for module in MODULES],
        cwd=HERE.parent.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " skipped" not in done.stdout.splitlines()[-1], done.stdout[-2000:]
