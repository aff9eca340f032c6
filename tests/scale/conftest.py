"""Fixtures of the scale tests: the machine's PostgreSQL and Redis, shared safely.

PostgreSQL (127.0.0.1:5432, user postgres) and Redis (127.0.0.1:6379) must be running:
CI starts them (.ci/), and a missing one fails these tests instead of skipping them.
"""

from __future__ import annotations

import os
import random
import secrets
import subprocess
import sys
from types import SimpleNamespace

import psycopg
import pytest
from parley_testing import REPO
from scale_support import (
    PG_ADMIN_DB,
    PG_HOST,
    PG_PORT,
    REDIS_HOST,
    REDIS_PORT,
    Cluster,
    OwnRedis,
    database_url,
    new_database_name,
    pg_admin,
    pg_connect,
    redis_delete_prefix,
    redis_ping,
)


@pytest.fixture(scope="session")
def scale_services():
    """Fail (not skip) when PostgreSQL or Redis is not there: CI starts both."""
    try:
        with pg_connect() as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as error:
        pytest.fail(
            f"PostgreSQL is not reachable at {PG_HOST}:{PG_PORT} (user postgres, database "
            f"{PG_ADMIN_DB!r}); the scale tests need it (CI starts it in .ci/): {error}",
            pytrace=False,
        )
    if not redis_ping():
        pytest.fail(
            f"Redis is not reachable at {REDIS_HOST}:{REDIS_PORT}; the scale tests need it "
            "(CI starts it in .ci/)",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def scale_base(scale_services, tmp_path_factory):
    """Done once: a migrated template database and a collected STATIC_ROOT.

    Every test's database is a copy of the template (CREATE DATABASE ... TEMPLATE, a
    fraction of a second) and every server skips collectstatic (seconds each).
    """
    template = new_database_name("tmpl_")
    static_root = tmp_path_factory.mktemp("scale-static")
    pg_admin(f'CREATE DATABASE "{template}"')
    try:
        env = {
            "DATABASE_URL": database_url(template),
            "STATIC_ROOT": str(static_root),
            "DJANGO_SECRET_KEY": "parley-tests-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        }
        script = (
            "from django.core.management import call_command;"
            "call_command('migrate', interactive=False, verbosity=0);"
            "call_command('collectstatic', interactive=False, verbosity=0)"
        )
        done = subprocess.run(
            [sys.executable, str(REPO / "manage.py"), "shell", "-c", script],
            cwd=REPO,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, f"migrate/collectstatic failed:\n{done.stderr[-3000:]}"
        yield SimpleNamespace(template=template, static_root=static_root)
    finally:
        pg_admin(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')


@pytest.fixture
def make_database(scale_base):
    """``make_database(template)`` -> a new database's name; all dropped at teardown."""
    made: list[str] = []

    def make(template: str | None) -> str:
        name = new_database_name()
        clause = f' TEMPLATE "{template}"' if template else ""
        pg_admin(f'CREATE DATABASE "{name}"{clause}')
        made.append(name)
        return name

    yield make
    for name in made:
        pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def redis_namespace(scale_services):
    """A key/channel prefix and a database number of the shared Redis for this test.

    Pub/sub channels ignore database numbers, so the prefix is what keeps tests (and
    developers' servers) apart; the keys under it are deleted at teardown.
    """
    prefix = f"parley-t-{secrets.token_hex(5)}"
    db = random.randint(1, 15)
    yield SimpleNamespace(
        prefix=prefix, db=db, url=f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}", port=REDIS_PORT
    )
    redis_delete_prefix(prefix, db)


@pytest.fixture
def own_redis(tmp_path, scale_services):
    """A redis-server owned by the test (so that it may be stopped), on a spare port."""
    redis = OwnRedis(tmp_path / "redis").start()
    yield redis
    redis.kill()


@pytest.fixture
def cluster(tmp_path, scale_base, make_database, redis_namespace):
    """The test's servers; killed (workers included) before its database is dropped."""
    made = Cluster(
        tmp_path, scale_base.static_root, scale_base.template, redis_namespace, make_database
    )
    try:
        yield made
    finally:
        made.close()
        if made.servers:  # shown by pytest only when the test failed
            print(made.logs())
