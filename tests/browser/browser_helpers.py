"""Helpers of the room page's browser tests: sending, finding lines, the JSON API as the
signed-in user of a page, and a hidden tab."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from parley_testing import wait_for_js
from playwright.sync_api import Page, expect

SHOTS = Path("/tmp/shots")


def log_in(page: Page, username: str, password: str) -> None:
    """Signs in through the login form (as conftest's chat_user does)."""
    page.goto("/accounts/login/")
    form = page.locator("main form", has=page.locator("input[name=password]"))
    form.locator("input[name=username]").fill(username)
    form.locator("input[name=password]").fill(password)
    form.get_by_role("button", name="Log in").click()
    expect(page.locator(".account-name")).to_have_text(username)


def unique(text: str) -> str:
    return f"{text} {uuid.uuid4().hex[:8]}"


def send(page: Page, text: str) -> None:
    box = page.locator("#composer textarea")
    box.fill(text)
    box.press("Enter")


def line(page: Page, text: str):
    """The message line whose text contains ``text`` (confirmed by the log: a seq)."""
    return page.locator("#messages li.msg[data-seq]:not(.pending)", has_text=text)


def seq_of(page: Page, text: str) -> int:
    expect(line(page, text)).to_have_count(1)
    return int(line(page, text).get_attribute("data-seq"))


def api(page: Page, method: str, path: str, body: dict | None = None) -> dict:
    """A JSON API call with the page's session and CSRF token; returns the answer's JSON."""
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    response = page.request.fetch(
        path,
        method=method,
        headers={"X-CSRFToken": cookies.get("csrftoken", ""), "Content-Type": "application/json"},
        data=json.dumps(body) if body is not None else None,
    )
    assert response.ok, (method, path, response.status, response.text())
    return response.json() if response.text() else {}


def join(page: Page, slug: str) -> None:
    api(page, "POST", f"/api/rooms/{slug}/join/")


def post(page: Page, slug: str, body: str, reply_to: int | None = None) -> int:
    """Sends through the REST API (not the page); returns the seq."""
    payload: dict = {"body": body, "client_id": f"t-{uuid.uuid4().hex}"}
    if reply_to is not None:
        payload["reply_to"] = reply_to
    return api(page, "POST", f"/api/rooms/{slug}/messages/", payload)["seq"]


def seed(server, slug: str, username: str, bodies: list[str], reply_to: int | None = None) -> None:
    """Appends messages to a room's log directly (no rate limit), like a busy past."""
    server.shell(
        "from django.contrib.auth.models import User; from chat import log;"
        "from chat.live import records;"
        f"u = User.objects.get(username={username!r});"
        "log.append_events(["
        f"records.SendRequest({slug!r}, u.id, u.username, body, None, reply_to={reply_to!r})"
        f" for body in {bodies!r}])",
    )


def hide_tab(page: Page) -> None:
    """As if the user switched to another tab: the page's visibility says hidden."""
    page.evaluate(
        """() => {
          const hidden = (name, value) =>
            Object.defineProperty(document, name, {configurable: true, get: () => value});
          hidden("visibilityState", "hidden");
          hidden("hidden", true);
          document.dispatchEvent(new Event("visibilitychange"));
        }"""
    )


def show_tab(page: Page) -> None:
    page.evaluate(
        """() => {
          delete document.visibilityState;
          delete document.hidden;
          document.dispatchEvent(new Event("visibilitychange"));
        }"""
    )


def wait_room(page: Page, slug: str) -> None:
    """The page shows room ``slug`` (switched in place) and its connection is live."""
    wait_for_js(page, f"window.parley && window.parley.room() === {slug!r}")
    expect(page.locator("#conn-state")).to_have_attribute("data-state", "live")


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))
