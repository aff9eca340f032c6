"""Fixtures shared by every test layer."""

from __future__ import annotations

import pytest
from parley_testing import ServerProcess


@pytest.fixture(scope="session")
def live_server(tmp_path_factory):
    """One ``serve.py`` for the session (SQLite, DEBUG off, collectstatic done).

    ``.url`` is its base URL, ``.static_root`` its STATIC_ROOT.
    """
    server = ServerProcess(tmp_path_factory.mktemp("live-server"))
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


def pytest_collection_modifyitems(items):
    """Browser tests last: they are the slowest, and Playwright's sync API keeps an event
    loop running in this thread while its browser is open, which the asyncio-based tests
    cannot share."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)
