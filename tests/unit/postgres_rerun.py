"""Unit test modules run again on PostgreSQL: a pytest of their own against the machine's
PostgreSQL (127.0.0.1:5432, user postgres, as tests/scale/ uses it), in a database of
their own that pytest-django creates and drops. For the test_*_on_postgres.py modules."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def rerun_on_postgresql(name: str, modules: list[str]) -> subprocess.CompletedProcess:
    """``modules`` (file names in tests/unit/) in one pytest on a new PostgreSQL database;
    asserts they passed and that none was skipped for want of PostgreSQL's features."""
    database = f"parley_t_{name}_{secrets.token_hex(4)}"  # pytest-django makes test_<it>
    env = {**os.environ, "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{database}"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "--create-db"]
        + [str(HERE / module) for module in modules],
        cwd=HERE.parent.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    return done
