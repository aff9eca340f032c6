"""The search tests again, on PostgreSQL (its GIN index over ``to_tsvector('simple',
body)`` and its tsquery building), in a throwaway database of their own as
test_on_postgres.py runs its modules. Marked ``scale``: it needs the machine's
PostgreSQL (127.0.0.1:5432, user postgres)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.scale

HERE = Path(__file__).resolve().parent


@pytest.mark.timeout(300)
def test_search_holds_on_postgresql():
    name = f"parley_t_search_{secrets.token_hex(4)}"  # pytest-django makes test_<name>
    env = {**os.environ, "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{name}"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--create-db", str(HERE / "test_search.py")],
        cwd=HERE.parent.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
