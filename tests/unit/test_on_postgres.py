"""The counts, read positions, memberships and API tests again, on PostgreSQL.

Their SQL is hand-written (chat/counts.py, chat/positions.py, chat/membership.py: a
correlated LIMIT-ed subquery, an upsert with RETURNING, VALUES lists) and must hold on
both databases Parley supports. The unit run is SQLite; this runs the same modules in a
pytest of their own against the machine's PostgreSQL (127.0.0.1:5432, user postgres, as
tests/scale/ uses it), in a database of their own that pytest-django creates and drops.
Marked ``scale``: like those tests it needs the machine's PostgreSQL and fails without it.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.scale

HERE = Path(__file__).resolve().parent
MODULES = [
    "test_counts.py",
    "test_positions.py",
    "test_membership.py",
    "test_room_objects.py",
    "test_api_reads.py",
    "test_api_writes.py",
    # The Python API: its threads test needs a database that waits for its locks.
    "test_parley_api.py",
]


# A minute on a shared 2-core machine (the fuzz tests' examples are most of it).
@pytest.mark.timeout(300)
def test_the_hand_written_sql_holds_on_postgresql():
    name = f"parley_t_unit_{secrets.token_hex(4)}"  # pytest-django makes test_<name>
    env = {**os.environ, "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{name}"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--create-db"]
        + [str(HERE / module) for module in MODULES],
        cwd=HERE.parent.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
