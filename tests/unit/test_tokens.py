"""API tokens on the Django side (PROTOCOL.md "Authentication"): chat/tokens.py, the token
middleware and the bot login refusal (chat/token_auth.py), the /accounts/tokens/ page
(chat/token_views.py) and the admin (chat/admin/account_admin.py).

Real Django test client, real database; the live side's part is
tests/integration/test_token_live.py.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from chat import tokens
from chat.live import publish
from chat.live.publish import SESSION
from chat.models import Message, Profile, Token

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("plain_static_storage")]

SEND = "/api/rooms/lobby/messages/"


def bearer(secret: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {secret}"}


def assert_unauthorized(response) -> None:
    assert response.status_code == 401, response.content
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "unauthorized"
    assert response["WWW-Authenticate"].startswith("Bearer")


def post_json(client, url, payload, **extra):
    return client.post(url, json.dumps(payload), content_type="application/json", **extra)


@pytest.fixture
def made(alice):
    return tokens.make(alice, "script")


# -- chat/tokens.py ---------------------------------------------------------------------


def test_only_the_digest_is_stored(made):
    token, secret = made
    assert secret.startswith("prl_") and len(secret) >= 4 + 32
    row = Token.objects.get(pk=token.pk)
    assert row.digest == hashlib.sha256(secret.encode()).hexdigest()
    assert row.prefix == secret[:12]
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM chat_token")
        stored = " ".join(str(v) for row in cursor.fetchall() for v in row)
    assert secret not in stored and secret[12:] not in stored


def test_check_gives_the_token_and_refuses_others(made, alice):
    token, secret = made
    assert tokens.check(secret).pk == token.pk
    other, other_secret = tokens.make(alice, "other")
    assert tokens.check(other_secret).pk == other.pk
    for bad in (None, "", "prl_", secret[:-1], secret + "x", secret.upper(), "Bearer " + secret):
        assert tokens.check(bad) is None, bad


def test_revoked_expired_and_inactive_sign_in_nobody(made, alice):
    token, secret = made
    tokens.revoke(token)
    assert tokens.check(secret) is None
    _expired, expired_secret = tokens.make(alice, "old", timezone.now() - timedelta(seconds=1))
    assert tokens.check(expired_secret) is None
    _fresh, fresh_secret = tokens.make(alice, "new", timezone.now() + timedelta(hours=1))
    assert tokens.check(fresh_secret) is not None
    alice.is_active = False
    alice.save()
    assert tokens.check(fresh_secret) is None


def test_last_used_is_written_at_most_once_a_minute(made, django_assert_num_queries):
    token, secret = made
    tokens.check(secret)
    first = Token.objects.get(pk=token.pk).last_used_at
    assert first is not None
    with django_assert_num_queries(1):  # the lookup only: no write within the minute
        tokens.check(secret)
    assert Token.objects.get(pk=token.pk).last_used_at == first
    Token.objects.filter(pk=token.pk).update(last_used_at=first - timedelta(seconds=61))
    tokens.check(secret)
    assert Token.objects.get(pk=token.pk).last_used_at > first


def test_revoking_announces_the_tokens_credential(made, django_capture_on_commit_callbacks):
    token, secret = made
    heard = []
    publish.install(lambda func, *args: func(*args), lambda event: None, heard.append)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            token.name = "renamed"
            token.save()  # still usable: nothing to end
        assert heard == []
        with django_capture_on_commit_callbacks(execute=True):
            tokens.revoke(token)
        with django_capture_on_commit_callbacks(execute=True):
            token.delete()
    finally:
        publish.uninstall()
    assert [(c.kind, c.session, c.users) for c in heard] == [
        (SESSION, tokens.credential(secret), (made[0].user_id,))
    ] * 2


def test_bearer_header_parsing():
    assert tokens.bearer_secret(None) is None
    assert tokens.bearer_secret("Basic YWxpY2U6eA==") is None
    assert tokens.bearer_secret("Bearer prl_abc") == "prl_abc"
    assert tokens.bearer_secret("bearer   prl_abc ") == "prl_abc"
    assert tokens.bearer_secret("Bearer") == ""
    assert tokens.bearer_secret("Bearer a b") == ""
    assert tokens.credential("not-a-token") == "token:"


# -- the middleware ---------------------------------------------------------------------


def test_bearer_is_the_user_for_that_request_only(client, made, lobby):
    _token, secret = made
    me = client.get("/api/me/", **bearer(secret))
    assert me.status_code == 200 and me.json()["user"] == "alice"
    assert me.json()["is_bot"] is False
    assert not me.cookies  # no session, no CSRF cookie
    assert client.get("/api/me/").status_code == 403  # the next request is anonymous


def test_bad_revoked_and_expired_tokens_are_401_everywhere(client, made, alice, lobby):
    token, secret = made
    _expired, expired_secret = tokens.make(alice, "old", timezone.now() - timedelta(minutes=1))
    tokens.revoke(token)
    for bad in (secret, expired_secret, "prl_" + "x" * 43, "junk", ""):
        for path in ("/api/me/", "/api/rooms/", "/", "/rooms/lobby/", "/accounts/tokens/"):
            assert_unauthorized(client.get(path, HTTP_AUTHORIZATION=f"Bearer {bad}"))
        assert_unauthorized(post_json(client, SEND, {"body": "x"}, **bearer(bad)))
    assert not Message.objects.exists()


def test_token_in_the_query_string_is_ignored(client, made, lobby):
    _token, secret = made
    for name in ("token", "access_token", "bearer"):
        assert client.get(f"/api/me/?{name}={secret}").status_code == 403
        response = post_json(client, f"{SEND}?{name}={secret}", {"body": "x"})
        assert response.status_code == 403
    assert not Message.objects.exists()
    assert Token.objects.get().last_used_at is None  # it was never even looked up


def test_token_request_needs_no_csrf_and_cookie_still_does(made, alice, lobby, user_password):
    _token, secret = made
    strict = Client(enforce_csrf_checks=True)
    sent = post_json(strict, SEND, {"body": "by token", "client_id": "t-1"}, **bearer(secret))
    assert sent.status_code == 201, sent.content
    assert Message.objects.get().user == alice
    strict.force_login(alice)
    refused = post_json(strict, SEND, {"body": "by cookie", "client_id": "c-1"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    assert Message.objects.count() == 1
    # The page's form too: Django's CSRF middleware refuses the cookie without a token.
    assert strict.post("/accounts/tokens/", {"name": "x"}).status_code == 403
    assert Token.objects.count() == 1


def test_a_token_request_with_a_cookie_is_the_tokens_user(made, bob, lobby):
    _token, secret = made
    client = Client(enforce_csrf_checks=True)
    client.force_login(bob)
    me = client.get("/api/me/", **bearer(secret))
    assert me.json()["user"] == "alice"
    assert client.get("/api/me/").json()["user"] == "bob"  # bob's session untouched


# -- bots --------------------------------------------------------------------------------


def test_bots_cannot_log_in_with_a_password(client, alice, user_password):
    Profile.objects.create(user=alice, is_bot=True)
    page = client.post("/accounts/login/", {"username": "alice", "password": user_password})
    assert page.status_code == 200 and "_auth_user_id" not in client.session
    admin = client.post("/admin/login/", {"username": "alice", "password": user_password})
    assert admin.status_code == 200 and "_auth_user_id" not in client.session
    _token, secret = tokens.make(alice, "bot")
    me = client.get("/api/me/", **bearer(secret))
    assert me.json()["is_bot"] is True


def test_flagging_a_bot_ends_the_sessions_it_already_had(client, alice, user_password):
    answer = client.post("/accounts/login/", {"username": "alice", "password": user_password})
    assert answer.status_code == 302
    assert client.get("/api/me/").json()["user"] == "alice"
    Profile.objects.create(user=alice, is_bot=True)
    alice.refresh_from_db()
    assert not alice.has_usable_password()
    me = client.get("/api/me/")  # the same session cookie: it signs nobody in now
    assert me.status_code == 403, me.content
    _token, secret = tokens.make(alice, "bot")
    assert client.get("/api/me/", **bearer(secret)).json()["user"] == "alice"


def test_humans_still_log_in(client, alice, user_password):
    Profile.objects.create(user=alice, is_bot=False)
    response = client.post("/accounts/login/", {"username": "alice", "password": user_password})
    assert response.status_code == 302


# -- the page ----------------------------------------------------------------------------


def test_page_anonymous_is_sent_to_login(client, db):
    response = client.get("/accounts/tokens/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    response = client.post("/accounts/tokens/", {"name": "x"})
    assert response.status_code == 302
    assert not Token.objects.exists()


def test_page_creates_shows_once_and_lists(client, alice):
    client.force_login(alice)
    made = client.post("/accounts/tokens/", {"action": "create", "name": "  backup  "})
    assert made.status_code == 201
    assert "no-store" in made["Cache-Control"]
    token = Token.objects.get()
    assert token.name == "backup" and token.user == alice
    html = made.content.decode()
    secret = html.split('id="token-secret" class="token-secret-value" value="')[1].split('"')[0]
    assert tokens.check(secret).pk == token.pk
    listed = client.get("/accounts/tokens/").content.decode()
    assert "backup" in listed and token.prefix in listed
    assert secret not in listed and token.digest not in listed


def test_page_refuses_bad_names(client, alice):
    client.force_login(alice)
    for name in ("", "   ", "x" * 5000, "a" * 101):
        response = client.post("/accounts/tokens/", {"action": "create", "name": name})
        assert response.status_code == 400, name
        assert "field-error" in response.content.decode()
    assert not Token.objects.exists()


def test_page_revokes_only_the_users_own(client, alice, bob):
    mine, _s = tokens.make(alice, "mine")
    theirs, _t = tokens.make(bob, "theirs")
    client.force_login(alice)
    for raw in (str(theirs.pk), "", "x", "-1", "9" * 40):
        client.post("/accounts/tokens/", {"action": "revoke", "token": raw})
    assert not Token.objects.filter(revoked_at__isnull=False).exists()
    response = client.post("/accounts/tokens/", {"action": "revoke", "token": str(mine.pk)})
    assert response.status_code == 302
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert mine.revoked_at is not None and theirs.revoked_at is None
    assert "revoked" in client.get("/accounts/tokens/").content.decode()


def test_header_links_the_page(client, alice):
    client.force_login(alice)
    assert 'href="/accounts/tokens/"' in client.get("/").content.decode()


# -- the admin ----------------------------------------------------------------------------


@pytest.fixture
def admin_client_(django_user_model):
    admin = django_user_model.objects.create_superuser("root", password="pw-root-12345")
    client = Client()
    client.force_login(admin)
    return client


def test_admin_makes_a_token_and_shows_it_once(admin_client_, alice):
    response = admin_client_.post("/admin/chat/token/add/", {"user": alice.pk, "name": "deploy"})
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    token = Token.objects.get()
    found = re.findall(r"prl_[A-Za-z0-9_-]{43}", response.content.decode())
    assert found and tokens.check(found[0]).pk == token.pk
    secret = found[0]
    assert all(secret not in morsel.value for morsel in response.cookies.values())
    change = admin_client_.get(f"/admin/chat/token/{token.pk}/change/").content.decode()
    assert token.digest not in change and secret not in change
    listing = admin_client_.get("/admin/chat/token/").content.decode()
    assert token.digest not in listing and secret not in listing


def test_admin_revoke_action(admin_client_, alice):
    token, secret = tokens.make(alice, "deploy")
    admin_client_.post(
        "/admin/chat/token/",
        {"action": "revoke_selected", "_selected_action": [token.pk]},
    )
    assert tokens.check(secret) is None


def test_admin_flags_a_bot(admin_client_, alice):
    page = admin_client_.get(f"/admin/auth/user/{alice.pk}/change/")
    assert page.status_code == 200 and "is_bot" in page.content.decode()
    Profile.objects.create(user=alice, is_bot=True)
    listing = admin_client_.get("/admin/auth/user/").content.decode()
    assert "bot-badge" in listing


def test_oversized_and_hostile_headers_cost_no_query(client, django_assert_num_queries):
    for value in (
        "Bearer prl_" + "A" * 5000,
        "Bearer prl_" + "é" * 40,
        "Bearer prl_" + "A" * 40 + "\x00",
        "Bearer  prl_a prl_b",
        "Bearer " + "x" * 20_000,
    ):
        with django_assert_num_queries(0):
            response = client.get("/api/me/", HTTP_AUTHORIZATION=value)
        assert_unauthorized(response)


def test_a_hostile_token_name_is_shown_as_text(client, alice):
    client.force_login(alice)
    hostile = '<img src=x onerror="alert(1)">'
    response = client.post("/accounts/tokens/", {"action": "create", "name": hostile})
    assert response.status_code == 201
    html = response.content.decode()
    assert hostile not in html and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html
    assert Token.objects.get().name == hostile


def test_live_tokens_per_user_are_bounded(client, alice):
    from chat import token_views

    client.force_login(alice)
    for i in range(token_views.MAX_TOKENS_PER_USER):
        tokens.make(alice, f"t{i}")
    response = client.post("/accounts/tokens/", {"action": "create", "name": "one more"})
    assert response.status_code == 400 and "revoke one" in response.content.decode()
    assert Token.objects.count() == token_views.MAX_TOKENS_PER_USER
    tokens.revoke(Token.objects.first())
    response = client.post("/accounts/tokens/", {"action": "create", "name": "one more"})
    assert response.status_code == 201


def test_admin_cannot_unrevoke(admin_client_, alice):
    token, secret = tokens.make(alice, "deploy")
    tokens.revoke(token)
    page = admin_client_.get(f"/admin/chat/token/{token.pk}/change/").content.decode()
    assert 'name="revoked_at' not in page
    admin_client_.post(
        f"/admin/chat/token/{token.pk}/change/",
        {"name": "deploy", "revoked_at_0": "", "revoked_at_1": "", "expires_at_0": ""},
    )
    assert tokens.check(secret) is None
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_an_expiry_set_in_the_past_is_a_recheck_not_an_end(
    made, django_capture_on_commit_callbacks
):
    from chat.live.publish import ACCOUNTS

    token, _secret = made
    heard = []
    publish.install(lambda func, *args: func(*args), lambda event: None, heard.append)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            token.expires_at = timezone.now() - timedelta(seconds=1)
            token.save()
    finally:
        publish.uninstall()
    assert [(c.kind, c.users) for c in heard] == [(ACCOUNTS, (token.user_id,))]


# -- many credentials at once (the room check) ------------------------------------------


def test_credential_users_answer_as_credential_user_does_one_query_for_all(
    alice, bob, django_assert_max_num_queries
):
    """The room check re-checks every live connection's token: one query for all of them,
    and the same answer as asking one at a time."""
    _good, good_secret = tokens.make(alice, "good")
    revoked, revoked_secret = tokens.make(alice, "revoked")
    tokens.revoke(revoked)
    _expired, expired_secret = tokens.make(alice, "expired", timezone.now() - timedelta(seconds=1))
    _inactive, inactive_secret = tokens.make(bob, "bob's")
    bob.is_active = False
    bob.save()
    keys = [tokens.credential(s) for s in
            (good_secret, revoked_secret, expired_secret, inactive_secret)]  # fmt: skip
    keys += [tokens.credential_of_digest("0" * 64), "token:"]  # unknown, empty
    Token.objects.update(last_used_at=timezone.now())  # none due: nothing to write
    with django_assert_max_num_queries(1):
        many = tokens.credential_users(keys)
    assert many == {key: tokens.credential_user(key) for key in keys}
    assert many[keys[0]].id == alice.id
    assert [many[k] for k in keys[1:]] == [None] * 5


def test_credential_users_touch_last_used_at_at_most_once_a_minute(alice):
    token, secret = tokens.make(alice, "script")
    key = tokens.credential(secret)
    tokens.credential_users([key])
    first = Token.objects.get(pk=token.pk).last_used_at
    assert first is not None
    tokens.credential_users([key])
    assert Token.objects.get(pk=token.pk).last_used_at == first
    Token.objects.filter(pk=token.pk).update(last_used_at=first - tokens.TOUCH_EVERY)
    tokens.credential_users([key])
    assert Token.objects.get(pk=token.pk).last_used_at > first
