"""The counts, read positions, memberships and API tests again, on PostgreSQL.

Their SQL is hand-written (chat/counts.py, chat/positions.py, chat/membership.py: a
correlated LIMIT-ed subquery, an upsert with RETURNING, VALUES lists) and must hold on
both databases Parley supports. The unit run is SQLite; this runs the same modules in a
pytest of their own against the machine's PostgreSQL (127.0.0.1:5432, user postgres, as
tests/scale/ uses it), in a database of their own that pytest-django creates and drops.
Marked ``scale``: like those tests it needs the machine's PostgreSQL and fails without it.
"""

from __future__ import annotations

import pytest
from postgres_rerun import rerun_on_postgresql

pytestmark = pytest.mark.scale

MODULES = [
    "test_counts.py",
    "test_positions.py",
    "test_membership.py",
    "test_room_objects.py",
    "test_api_reads.py",
    "test_api_writes.py",
    # The session reads of every connect and of the room check (chat/sessions.py).
    "test_inbox_checks.py",
    # The Python API: its threads test needs a database that waits for its locks.
    "test_parley_api.py",
]


# A minute on a shared 2-core machine (the fuzz tests' examples are most of it).
@pytest.mark.timeout(300)
def test_the_hand_written_sql_holds_on_postgresql():
    rerun_on_postgresql("unit", MODULES)
