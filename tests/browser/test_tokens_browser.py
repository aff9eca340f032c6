"""The API tokens page and the bot badge in a real browser: make a token from the header's
link, see it once with a copy button, use it (the REST API as a bot would), revoke it;
a bot's messages get a "bot" badge on the room page."""

from __future__ import annotations

import re

import httpx
import pytest
from browser_helpers import line, unique
from playwright.sync_api import expect
from token_testing import bearer, make_tokens

pytestmark = pytest.mark.browser


def test_make_copy_use_and_revoke_a_token(chat_user, live_server, make_room):
    room = make_room("tokens")
    alice = chat_user("alice")
    page = alice.page
    page.goto("/")
    expect(page.locator("nav.account .account-tokens")).to_be_visible()
    # On a phone the Tokens link gives its room to the name, which links there too.
    page.set_viewport_size({"width": 360, "height": 800})
    expect(page.locator("nav.account .account-tokens")).to_be_hidden()
    page.locator("nav.account .account-name").click()
    expect(page.get_by_role("heading", name="API tokens")).to_be_visible()
    expect(page.locator(".empty")).to_have_text("No tokens yet.")
    page.get_by_label("Name").fill("deploy script")
    page.get_by_role("button", name="Create token").click()
    secret_box = page.locator("#token-secret")
    expect(secret_box).to_be_visible()
    secret = secret_box.input_value()
    assert secret.startswith("prl_") and len(secret) == 47
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == secret
    expect(page.locator(".token-name")).to_have_text("deploy script")
    page.screenshot(path="/tmp/tokens-page.png")
    page.emulate_media(color_scheme="dark")
    page.locator(".token-list").scroll_into_view_if_needed()
    page.screenshot(path="/tmp/tokens-page-dark.png")
    page.emulate_media(color_scheme="light")

    # The token works from a script, and a reload never shows the secret again.
    with httpx.Client(base_url=live_server.url, headers=bearer(secret), timeout=10) as api:
        sent = api.post(f"/api/rooms/{room}/messages/", json={"body": "from a script"})
        assert sent.status_code == 201, sent.text
        page.goto("/accounts/tokens/")  # (a reload would post the form again)
        expect(page.locator("#token-secret")).to_have_count(0)
        assert secret not in page.content()
        expect(page.locator(".token-dates")).not_to_contain_text("Last used never")

        page.get_by_role("button", name="Revoke deploy script").click()
        expect(page.locator(".token-messages")).to_contain_text("revoked")
        expect(page.locator(".token-item .badge")).to_have_text("revoked")
        assert api.get("/api/me/").status_code == 401
    page.screenshot(path="/tmp/tokens-revoked.png")


def test_a_bots_messages_have_a_badge(chat_user, live_server, make_room):
    room = make_room("bots")
    alice = chat_user("alice")
    botname = f"bot-{unique('x').split()[1]}"
    live_server.shell(
        f"from django.contrib.auth.models import User; User.objects.create_user({botname!r})",
    )
    secret = make_tokens(live_server, ("bot", botname, None, True))["bot"]
    alice.open_room(room)
    human = unique("from a human")
    alice.page.locator("#composer textarea").fill(human)
    alice.page.locator("#composer textarea").press("Enter")
    expect(line(alice.page, human)).to_have_count(1)
    text = unique("beep from the bot")
    with httpx.Client(base_url=live_server.url, headers=bearer(secret), timeout=10) as api:
        assert api.post(f"/api/rooms/{room}/messages/", json={"body": text}).status_code == 201
    expect(line(alice.page, text).locator(".bot-badge")).to_have_text("bot")
    expect(line(alice.page, human).locator(".bot-badge")).to_have_count(0)
    alice.page.reload()  # history renders it the same way
    expect(line(alice.page, text).locator(".bot-badge")).to_have_text("bot")
    alice.page.screenshot(path="/tmp/tokens-bot-badge.png")


def test_staff_make_a_bot_token_in_the_admin(chat_user, live_server):
    boss = chat_user("boss", staff=True)
    helper = chat_user("helper")
    page = boss.page
    page.goto("/admin/auth/user/?q=" + helper.name)
    page.get_by_role("link", name=helper.name).click()
    page.locator("#id_chat_profile-0-is_bot").check()
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".bot-badge").first).to_have_text("bot")
    page.goto("/admin/chat/token/add/")
    # The user field is the admin's autocomplete (select2): type, then pick.
    page.locator(".field-user .select2-selection").click()
    page.locator(".select2-search__field").fill(helper.name)
    page.locator(".select2-results__option", has_text=helper.name).click()
    page.get_by_label("Name").fill("helper bot")
    page.get_by_role("button", name="Save", exact=True).click()
    secret = page.locator("#token-secret").input_value()
    assert secret.startswith("prl_")
    page.screenshot(path="/tmp/tokens-admin-secret.png")
    with httpx.Client(base_url=live_server.url, headers=bearer(secret), timeout=10) as api:
        me = api.get("/api/me/").json()
        assert me["user"] == helper.name and me["is_bot"] is True
    # The bot's password no longer signs it in.
    helper.page.context.clear_cookies()
    helper.page.goto("/accounts/login/")
    helper.page.locator("main input[name=username]").fill(helper.name)
    helper.page.locator("main input[name=password]").fill(helper.password)
    helper.page.locator("main form").get_by_role("button", name="Log in").click()
    expect(helper.page).to_have_url(re.compile(r"/accounts/login/"))
    expect(helper.page.locator(".account-name")).to_have_count(0)
