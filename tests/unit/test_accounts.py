"""Account safety (chat/accounts.py, the signup form, django-axes' settings): look-alike
usernames, signups per address, CHAT_SIGNUP, login lockout on both login pages, the
client address behind a proxy, and the Content-Security-Policy of every page."""

from __future__ import annotations

import ipaddress
import re
import time
from datetime import timedelta

import pytest
from django.test import Client

from chat.accounts import (
    address_bucket,
    claim_signup,
    client_ip,
    mixes_scripts_confusably,
    skeleton,
    username_keys,
)
from chat.live.records import RateLimit

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery-9"
CYRILLIC_A = "\u0430"
GREEK_OMICRON = "\u03bf"


@pytest.fixture(autouse=True)
def plain_static_storage(settings):
    # The manifest storage of DEBUG=0 needs collectstatic; these tests only need URLs.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice", password=PASSWORD)


def signup(client: Client, username: str, **meta):
    return client.post(
        "/accounts/signup/",
        {"username": username, "password1": PASSWORD, "password2": PASSWORD},
        **meta,
    )


def log_in(client: Client, username: str, password: str, path="/accounts/login/", **meta):
    return client.post(path, {"username": username, "password": password}, **meta)


# look-alike usernames


@pytest.mark.parametrize(
    ("new", "existing"),
    [
        (f"{CYRILLIC_A}lice", "alice"),  # Cyrillic small a
        (f"{CYRILLIC_A.upper()}lice", "alice"),  # Cyrillic capital A, and case
        ("ALICE", "alice"),
        ("aIice", "alice"),  # capital I for l
        ("a1ice", "alice"),  # digit one for l
        ("rnike", "mike"),  # r + n for m
        (f"b{GREEK_OMICRON}b", "bob"),  # Greek omicron
        ("b0b", "bob"),  # digit zero for o
        ("\u217fike", "mike"),  # SMALL ROMAN NUMERAL ONE THOUSAND
        ("ali\u200dce", "alice"),  # an invisible joiner
    ],
)
def test_lookalike_usernames_share_a_key(new, existing):
    assert username_keys(new) & username_keys(existing)


@pytest.mark.parametrize(
    ("new", "existing"),
    [("alicia", "alice"), ("alice2", "alice"), ("bobby", "bob"), ("alicé", "alice")],
)
def test_different_usernames_do_not_share_a_key(new, existing):
    assert not username_keys(new) & username_keys(existing)


def test_skeleton_is_stable_and_idempotent():
    for name in ["alice", f"{CYRILLIC_A}lice", "rnike", "Ωmega", "日本語"]:
        once = skeleton(name)
        assert skeleton(once) == once


@pytest.mark.parametrize(
    ("name", "dangerous"),
    [
        (f"{CYRILLIC_A}lice", True),
        (f"paypa{GREEK_OMICRON}l", True),
        ("alice", False),
        ("Алексей", False),  # all Cyrillic: one script
        ("user_1.b-2@x+y", False),  # Latin with the punctuation Django allows
        ("日本語", False),
    ],
)
def test_mixed_scripts_with_confusable_letters(name, dangerous):
    assert mixes_scripts_confusably(name) is dangerous


@pytest.mark.parametrize(
    "lookalike",
    [f"{CYRILLIC_A}lice", "ALICE", "aIice", "a1ice", "\uff41lice"],  # last: fullwidth a
)
def test_signup_refuses_a_lookalike_of_an_existing_user(
    client, django_user_model, alice, lookalike
):
    response = signup(client, lookalike)
    assert response.status_code == 200
    assert b"field-error" in response.content
    assert django_user_model.objects.count() == 1
    assert "_auth_user_id" not in client.session


def test_signup_refuses_mixed_scripts_even_with_no_lookalike(client, django_user_model):
    response = signup(client, f"n{CYRILLIC_A}me")
    assert b"mixes letters of different scripts" in response.content
    assert not django_user_model.objects.exists()


def test_signup_accepts_a_name_that_only_resembles_in_spelling(client, django_user_model, alice):
    assert signup(client, "alicia").status_code == 302
    assert django_user_model.objects.filter(username="alicia").exists()


def test_the_admin_may_create_a_lookalike(client, django_user_model, alice):
    admin = django_user_model.objects.create_superuser("root", password=PASSWORD)
    client.force_login(admin)
    response = client.post(
        "/admin/auth/user/add/",
        {"username": f"{CYRILLIC_A}lice", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert response.status_code == 302, response.content[:2000]
    assert django_user_model.objects.filter(username=f"{CYRILLIC_A}lice").exists()


# CHAT_SIGNUP


def test_closed_signup_has_no_form_and_creates_nothing(client, django_user_model, settings):
    settings.CHAT_SIGNUP = "closed"
    page = client.get("/accounts/signup/")
    assert page.status_code == 403
    assert b"Signups are closed" in page.content
    assert b'name="password1"' not in page.content
    assert signup(client, "newbie").status_code == 403
    assert not django_user_model.objects.exists()
    # Nothing offers the page any more.
    for path in ["/", "/accounts/login/"]:
        assert b"/accounts/signup/" not in client.get(path).content


def test_open_signup_is_offered(client):
    for path in ["/", "/accounts/login/"]:
        assert b"/accounts/signup/" in client.get(path).content


# signups per address


def test_signups_per_address_are_throttled(client, django_user_model, settings):
    settings.CHAT_SIGNUP_RATE = RateLimit(2, 3600)
    here = {"REMOTE_ADDR": "203.0.113.7"}
    # A form with errors costs nothing.
    for _ in range(5):
        signup_bad = client.post(
            "/accounts/signup/",
            {"username": "typo", "password1": PASSWORD, "password2": "other"},
            **here,
        )
        assert signup_bad.status_code == 200
    assert signup(Client(), "first", **here).status_code == 302
    assert signup(Client(), "second", **here).status_code == 302
    refused = signup(Client(), "third", **here)
    assert refused.status_code == 429
    assert b"Too many accounts were made from your address" in refused.content
    assert not django_user_model.objects.filter(username="third").exists()
    # Another address has its own allowance.
    assert signup(Client(), "third", REMOTE_ADDR="203.0.113.8").status_code == 302


def test_signup_slots_are_per_window_and_atomic_per_slot(settings):
    settings.CHAT_SIGNUP_RATE = RateLimit(2, 60)
    clock = [1_000_000.0]
    assert claim_signup("198.51.100.1", clock=lambda: clock[0])
    assert claim_signup("198.51.100.1", clock=lambda: clock[0])
    assert not claim_signup("198.51.100.1", clock=lambda: clock[0])
    clock[0] += 60
    assert claim_signup("198.51.100.1", clock=lambda: clock[0])


def test_signup_limit_zero_is_off(settings):
    settings.CHAT_SIGNUP_RATE = RateLimit(0, 1)
    assert all(claim_signup("198.51.100.2") for _ in range(50))


def test_an_ipv6_slash_64_is_one_client():
    assert address_bucket("2001:db8:1:2::1") == address_bucket("2001:db8:1:2:ffff::9")
    assert address_bucket("2001:db8:1:2::1") != address_bucket("2001:db8:1:3::1")
    assert address_bucket("::ffff:198.51.100.3") == "198.51.100.3"
    assert address_bucket("198.51.100.3") == "198.51.100.3"
    assert address_bucket("not an address") == "not an address"


# the client's address


class FakeRequest:
    def __init__(self, **meta: str) -> None:
        self.META = meta


def test_client_ip_believes_forwarded_for_only_from_a_trusted_proxy(settings):
    settings.TRUSTED_PROXIES = (ipaddress.ip_network("127.0.0.1/32"),)
    forwarded = "198.51.100.66, 203.0.113.9"  # the client's own claim, then the proxy's
    assert client_ip(FakeRequest(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR=forwarded)) == (
        "203.0.113.9"
    )
    assert (
        client_ip(FakeRequest(REMOTE_ADDR="203.0.113.50", HTTP_X_FORWARDED_FOR=forwarded))
        == "203.0.113.50"
    )
    garbage = FakeRequest(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="1.2.3.4, <script>")
    assert client_ip(garbage) == "127.0.0.1"
    settings.TRUSTED_PROXIES = ()
    assert client_ip(FakeRequest(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR=forwarded)) == (
        "127.0.0.1"
    )


# login lockout (django-axes)


@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/"])
def test_failures_lock_the_account_even_with_the_right_password(client, django_user_model, path):
    django_user_model.objects.create_superuser("boss", password=PASSWORD)
    for attempt in range(5):
        # Each from another address: the account is what is counted here. The fifth
        # failure is answered with the lockout already.
        response = log_in(Client(), "boss", "wrong", path, REMOTE_ADDR=f"203.0.113.{attempt}")
        assert response.status_code == (429 if attempt == 4 else 200)
    locked = log_in(client, "boss", PASSWORD, path, REMOTE_ADDR="203.0.113.99")
    assert locked.status_code == 429
    assert b"Too many failed logins" in locked.content
    assert b"Try again in 15 minutes" in locked.content
    assert locked["Retry-After"] == "900"
    assert "_auth_user_id" not in client.session


def test_failures_lock_the_address_across_accounts(client, django_user_model):
    django_user_model.objects.create_user("bob", password=PASSWORD)
    here = {"REMOTE_ADDR": "203.0.113.20"}
    for attempt in range(5):
        response = log_in(Client(), f"guess{attempt}", "wrong", **here)
        assert response.status_code == (429 if attempt == 4 else 200)
    assert log_in(Client(), "bob", PASSWORD, **here).status_code == 429
    # bob himself, from his own address, is not locked out.
    assert log_in(client, "bob", PASSWORD, REMOTE_ADDR="203.0.113.21").status_code == 302


def test_the_lock_ends_after_the_cool_off(client, django_user_model, settings):
    settings.AXES_COOLOFF_TIME = timedelta(seconds=1)
    django_user_model.objects.create_user("carol", password=PASSWORD)
    for _ in range(5):
        log_in(Client(), "carol", "wrong")
    assert log_in(Client(), "carol", PASSWORD).status_code == 429
    time.sleep(1.2)
    assert log_in(client, "carol", PASSWORD).status_code == 302


def test_four_failures_do_not_lock(client, django_user_model):
    django_user_model.objects.create_user("dave", password=PASSWORD)
    for _ in range(4):
        log_in(Client(), "dave", "wrong")
    assert log_in(client, "dave", PASSWORD).status_code == 302


# Content-Security-Policy


INLINE = [
    (re.compile(rb"<script(?![^>]*\bsrc=)[^>]*>", re.I), "inline <script>"),
    (re.compile(rb"<[a-z][^>]*\son[a-z]+\s*=", re.I), "inline event handler"),
    (re.compile(rb"<[a-z][^>]*\sstyle\s*=", re.I), "style attribute"),
    (re.compile(rb"javascript:", re.I), "javascript: URL"),
]


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/rooms/lobby/",
        "/accounts/login/",
        "/accounts/signup/",
        "/admin/",
        "/admin/chat/room/",
        "/admin/chat/room/add/",
        "/admin/auth/user/add/",
        "/no-such-page/",
    ],
)
def test_every_page_has_a_csp_and_nothing_it_would_block(client, django_user_model, path):
    from chat.models import Room

    Room.objects.create(slug="lobby", name="Lobby")
    client.force_login(django_user_model.objects.create_superuser("root", password=PASSWORD))
    response = client.get(path)
    assert response.status_code in (200, 404), (path, response.status_code)
    policy = dict(
        part.strip().split(" ", 1) for part in response["Content-Security-Policy"].split(";")
    )
    assert policy["script-src"] == "'self'"
    assert policy["style-src"] == "'self'"
    assert policy["object-src"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"
    assert "unsafe" not in response["Content-Security-Policy"]
    # json_script's <script type="application/json"> is data, never run: allowed.
    body = re.sub(rb'<script[^>]*type="application/json"[^>]*>.*?</script>', b"", response.content)
    for pattern, what in INLINE:
        found = pattern.search(body)
        assert found is None, f"{path}: {what}: {found.group(0)[:120]!r}"
