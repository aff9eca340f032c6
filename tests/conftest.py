"""Fixtures shared by every test layer."""

from __future__ import annotations

import pytest
from parley_testing import ServerProcess


@pytest.fixture(scope="session")
def live_server(tmp_path_factory):
    """One ``serve.py`` for the session (SQLite, DEBUG off, collectstatic done), started
    as a fresh install (no template: its first start's migrate, lobby and collectstatic
    are tested on it).

    ``.url`` is its base URL, ``.static_root`` its STATIC_ROOT.
    """
    server = ServerProcess(tmp_path_factory.mktemp("live-server"), template=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def make_server(tmp_path):
    """Start extra servers: ``make_server(env={...}, args=[...], static_setup=fn)``.

    ``static_setup(static_root)`` runs after a first collectstatic and before the server
    that indexes STATIC_ROOT starts, for tests that plant files there.
    """
    servers: list[ServerProcess] = []

    def make(env=None, args=None, static_setup=None, name=None, database_url=None):
        workdir = tmp_path / (name or f"server-{len(servers)}")
        server = ServerProcess(workdir, env=env, args=args, database_url=database_url)
        if static_setup is not None:
            server.manage("collectstatic", "--noinput", "-v0")
            static_setup(server.static_root)
            server.args = [*server.args, "--no-collectstatic"]
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.kill()


@pytest.fixture(autouse=True)
def _live_server_helper():
    """pytest-django's autouse helper expects its own ``live_server``; ours is serve.py."""
    yield


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    """Attachments a test uploads go to its own directory, never the checkout's ./media."""
    settings.MEDIA_ROOT = str(tmp_path / "media")


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Django's default hasher spends ~0.3 s per password on purpose; tests need none of it."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# The files that take a minute or more of one worker (pytest --durations, 2026-12-03)
# start first, so that `make test`'s three workers (--dist loadfile hands out whole files
# in this order) do not end with one of them still running a long file alone. The first
# six go out round-robin: the soak and the chaos run (each a server, its clients and a
# database, two minutes) come third apart, so one worker runs them one after the other
# rather than two workers at once.
LONG_FILES = (
    "tests/reliability/test_short_soak.py",
    "tests/integration/test_accounts_security.py",
    "tests/integration/test_webhooks.py",
    "tests/reliability/test_short_chaos.py",
    "tests/scale/test_endpoints_workers.py",
    "tests/integration/test_openapi_schemathesis.py",
    "tests/unit/test_on_postgres.py",
    "tests/integration/test_python_client.py",
    "tests/integration/test_http_hardening.py",
    "tests/integration/test_irc_listeners.py",
)


def pytest_collection_modifyitems(items):
    """The long files first (``LONG_FILES``), browser tests last: Playwright's sync API
    keeps an event loop running in this thread while its browser is open, which the
    asyncio-based tests cannot share. The sort is stable: within each group, the order
    of collection (every xdist worker must collect the same order)."""

    def group(item) -> tuple[int, int]:
        if item.get_closest_marker("browser") is not None:
            return (2, 0)
        path = item.nodeid.split("::")[0]
        return (0, LONG_FILES.index(path)) if path in LONG_FILES else (1, 0)

    items.sort(key=group)
