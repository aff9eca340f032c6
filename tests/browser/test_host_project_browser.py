"""Parley's room page in a host project, under ``/chat/``, in a real browser: two people in
two browser contexts chat live (the live resources at the port's root), the page's API
calls follow the prefix (ui/dom.js ``api``: history after a reload, the room object), and
a message posted by the Python API from another process appears.
tests/integration/test_host_project.py checks the same server without a browser.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from browser_helpers import line, send, unique
from conftest import TIMEOUT_MS, wait_live
from live_clients import provision
from parley_testing import REPO, ServerProcess
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

HOST = REPO / "tests" / "hostproject"
PASSWORD = "correct-horse-battery-9"


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("hostsite-browser")
    env = {
        "PYTHONPATH": os.pathsep.join([str(HOST), os.environ.get("PYTHONPATH", "")]),
        "HOSTSITE_DB": str(workdir / "host.sqlite3"),
        "CHAT_RATE_LIMIT": "0",
    }
    server = ServerProcess(workdir, env=env, args=["--settings", "hostsite.settings"]).start()
    server.manager = ServerProcess(
        workdir / "manage", env={**env, "DJANGO_SETTINGS_MODULE": "hostsite.settings"}
    )
    provision(
        server.manager,
        users=[("alice", PASSWORD), ("bob", PASSWORD)],
        rooms=[{"slug": "general", "members": ["alice", "bob"]}],
        sessions=False,
    )
    yield server
    server.stop()


def test_chat_under_the_prefix(browser, host):
    pages = []
    for name in ("alice", "bob"):
        context = browser.new_context(base_url=host.url, viewport={"width": 1000, "height": 700})
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        # The login page is Parley's (chat.account_urls); ``next`` brings them to the room.
        page.goto("/accounts/login/?next=/chat/rooms/general/")
        form = page.locator("main form", has=page.locator("input[name=password]"))
        form.locator("input[name=username]").fill(name)
        form.locator("input[name=password]").fill(PASSWORD)
        form.get_by_role("button", name="Log in").click()
        expect(page.locator(".account-name")).to_have_text(name)
        wait_live(page)
        pages.append(page)
    alice, bob = pages
    errors: list[str] = []
    for page in pages:
        page.on("pageerror", lambda error: errors.append(str(error)))
    text = unique("hello from the host site")
    send(alice, text)
    expect(line(bob, text)).to_have_count(1)
    expect(bob.locator('#room-nav a[data-slug="general"]')).to_have_attribute(
        "href", "/chat/rooms/general/"
    )
    # Posted by the Python API from another process: it arrives live too.
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "manage.py"),
            "parley_send",
            "general",
            "bob",
            "from a worker",
        ],
        cwd=REPO,
        env=host.manager.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    expect(line(alice, "from a worker")).to_have_count(1)
    # A reload draws the history from the server, through the prefixed API.
    bob.reload()
    wait_live(bob)
    expect(line(bob, text)).to_have_count(1)
    alice.screenshot(path="/tmp/host-project-chat.png")
    assert errors == []
    for page in pages:
        page.context.close()
