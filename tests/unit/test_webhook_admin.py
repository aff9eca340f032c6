"""The webhooks' admin: URL checked on save, secret generated, kinds checked, re-enable."""

from __future__ import annotations

import pytest

from chat.models import Webhook

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("plain_static_storage")]


def form(**fields) -> dict:
    data = {
        "url": "http://127.0.0.1:9/hook",
        "secret": "",
        "kinds": "[]",
        "is_active": "on",
        "room": "",
        "bot_user": "",
        "positions-TOTAL_FORMS": "0",
        "positions-INITIAL_FORMS": "0",
    }
    return {**data, **fields}


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9/hook", "http://localhost/", "http://[::1]/", "http://10.0.0.1/"]
)
def test_a_private_url_is_refused_unless_allowed(admin_client, settings, url):
    settings.CHAT_WEBHOOK_ALLOW_PRIVATE = False
    response = admin_client.post("/admin/chat/webhook/add/", form(url=url))
    assert response.status_code == 200
    assert "This URL is refused" in response.content.decode()
    assert not Webhook.objects.exists()


def test_an_allowed_url_is_saved_with_a_generated_secret(admin_client, settings, lobby):
    settings.CHAT_WEBHOOK_ALLOW_PRIVATE = True
    response = admin_client.post(
        "/admin/chat/webhook/add/", form(room=str(lobby.id), kinds='["message"]')
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    hook = Webhook.objects.get()
    assert len(hook.secret) >= 40 and hook.kinds == ["message"] and hook.room == lobby
    page = admin_client.get("/admin/chat/webhook/").content.decode()
    assert "http://127.0.0.1:9/hook" in page and "lobby" in page


@pytest.mark.parametrize("kinds", ['["shout"]', '"message"', "{}", "[1]"])
def test_unknown_kinds_are_refused(admin_client, settings, kinds):
    settings.CHAT_WEBHOOK_ALLOW_PRIVATE = True
    response = admin_client.post("/admin/chat/webhook/add/", form(kinds=kinds))
    assert response.status_code == 200
    assert not Webhook.objects.exists()


def test_a_url_that_is_not_http_is_refused(admin_client, settings):
    settings.CHAT_WEBHOOK_ALLOW_PRIVATE = True
    response = admin_client.post("/admin/chat/webhook/add/", form(url="ftp://example.com/"))
    assert response.status_code == 200 and not Webhook.objects.exists()


def test_reenable_clears_the_reason(admin_client):
    hook = Webhook.objects.create(url="https://example.com/", secret="k")
    Webhook.objects.filter(id=hook.id).update(is_active=False, disabled_reason="failing 24 hours")
    page = admin_client.get("/admin/chat/webhook/").content.decode()
    assert "failing 24 hours" in page
    response = admin_client.post(
        "/admin/chat/webhook/", {"action": "reenable", "_selected_action": [str(hook.id)]}
    )
    assert response.status_code == 302
    hook.refresh_from_db()
    assert hook.is_active and hook.disabled_reason == ""
