"""Browser fixtures: Playwright's sync API driving Debian's Chromium against ``live_server``.

Every user gets a fresh browser context (its own cookies), so one test can hold several
people in one room. Chromium is Debian's package (``scripts/install-chromium.sh``), never
a browser downloaded by ``playwright install``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from parley_testing import ServerProcess, create_user
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
# Long enough for a reconnect with backoff on a busy CI machine; expect() polls, so a
# passing assertion costs only the time it really takes.
TIMEOUT_MS = 15_000

expect.set_options(timeout=TIMEOUT_MS)


@dataclass
class ChatUser:
    name: str
    password: str
    page: Page

    def open_room(self, slug: str, transport: str | None = None) -> Page:
        """Open the room page and wait until its live connection is up."""
        query = f"?transport={transport}" if transport else ""
        self.page.goto(f"/rooms/{slug}/{query}")
        wait_live(self.page)
        return self.page


def wait_live(page: Page) -> None:
    expect(page.locator("#conn-state")).to_have_attribute("data-state", "live")


# Per module, not per session: Playwright's sync API runs an event loop in this thread
# while it is open, and a test of another layer that a parallel run (pytest-xdist) gives
# this worker next would find it running (asyncio.run refuses; Django's ORM takes the
# thread for an async context). Launching Chromium again costs about a second a module.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed: run scripts/install-chromium.sh")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def new_context(browser: Browser, live_server: ServerProcess) -> Iterator:
    """``new_context(server=live_server)``: a fresh browser context, closed after the test."""
    contexts: list[BrowserContext] = []

    def make(server: ServerProcess = live_server) -> BrowserContext:
        context = browser.new_context(base_url=server.url)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def chat_user(new_context, live_server: ServerProcess):
    """``chat_user("alice")``: a new account, signed in through the login form.

    The name gets a random suffix so that tests sharing the session's server never collide.
    """

    def make(prefix: str, staff: bool = False, server: ServerProcess = live_server) -> ChatUser:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        password = f"pw-{uuid.uuid4().hex}"
        create_user(server, name, password, staff=staff)
        page = new_context(server).new_page()
        log_in(page, name, password)
        return ChatUser(name, password, page)

    return make


def log_in(page: Page, username: str, password: str) -> None:
    page.goto("/accounts/login/")
    form = page.locator("main form", has=page.locator("input[name=password]"))
    form.locator("input[name=username]").fill(username)
    form.locator("input[name=password]").fill(password)
    form.get_by_role("button", name="Log in").click()
    expect(page).not_to_have_url(re.compile(r"/accounts/login/"))
    expect(page.locator(".account-name")).to_have_text(username)


@pytest.fixture
def make_room(live_server: ServerProcess):
    """``make_room("name")``: a new public room with a unique slug; returns the slug."""

    def make(prefix: str = "room", server: ServerProcess = live_server) -> str:
        slug = f"{prefix}-{uuid.uuid4().hex[:8]}"
        server.shell(
            "from chat.models import Room;"
            f"Room.objects.get_or_create(slug={slug!r}, defaults={{'name': {slug!r}}})",
        )
        return slug

    return make
