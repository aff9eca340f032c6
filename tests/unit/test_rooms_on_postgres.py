"""Direct messages, moderation and attachments again, on PostgreSQL, as
test_on_postgres.py runs its modules: the DM creation race (which only a database with
concurrent connections can run), the mute/ban/slow-mode queries of the append
transaction, and the uploads' ``FOR UPDATE SKIP LOCKED``. A file of its own so that a
parallel run (pytest-xdist) gives it its own worker. Marked ``scale``: it needs the
machine's PostgreSQL (127.0.0.1:5432, user postgres)."""

from __future__ import annotations

import pytest
from postgres_rerun import rerun_on_postgresql

pytestmark = pytest.mark.scale

MODULES = ["test_dms.py", "test_moderation.py", "test_log_rules.py", "test_uploads.py"]


@pytest.mark.timeout(300)
def test_rooms_moderation_and_uploads_hold_on_postgresql():
    done = rerun_on_postgresql("rooms", MODULES)
    # The DM race runs here (SQLite's in-memory test database cannot): nothing skipped.
    assert " skipped" not in done.stdout.splitlines()[-1], done.stdout[-2000:]
