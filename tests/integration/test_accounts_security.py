"""Accounts and production settings against a real serve.py: login lockout on both login
pages (per account, per address, behind a trusted proxy and not), signups per address,
CHAT_SIGNUP=closed, look-alike usernames, PARLEY_HTTPS and `check --deploy`, and bad
values of every new variable stopping start-up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from parley_testing import REPO, create_user
from tls_testing import run_serve

PASSWORD = "correct-horse-battery-staple"
REAL_KEY = "k4Q-9zv_T2m8pX6wLr3bN7cJ1yHs5dFgAeUoWiRtYqZxVnMlKjPbCh0DuEaSfGi2"


def form_post(client: httpx.Client, path: str, data: dict, **headers: str) -> httpx.Response:
    """GET the form (for the CSRF cookie), then POST it as a browser would."""
    client.get(path, headers=headers)
    return client.post(
        path,
        data={**data, "csrfmiddlewaretoken": client.cookies["csrftoken"]},
        headers={"Referer": f"{client.base_url}{path}", **headers},
    )


def log_in(server, username: str, password: str, path="/accounts/login/", **headers: str):
    with server.client() as client:
        return form_post(client, path, {"username": username, "password": password}, **headers)


def sign_up(server, username: str, **headers: str) -> httpx.Response:
    with server.client() as client:
        data = {"username": username, "password1": PASSWORD, "password2": PASSWORD}
        return form_post(client, "/accounts/signup/", data, **headers)


def user_exists(server, username: str) -> bool:
    out = server.manage(
        "shell",
        "-c",
        "from django.contrib.auth.models import User;"
        f"print(User.objects.filter(username={username!r}).exists())",
    )
    return out.strip().endswith("True")


@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/"])
def test_forty_wrong_passwords_do_not_end_in_a_login(make_server, path):
    server = make_server()
    create_user(server, "boss", PASSWORD, staff=True)
    statuses = [log_in(server, "boss", f"guess-{n}", path).status_code for n in range(40)]
    assert statuses[:4] == [200] * 4 and set(statuses[4:]) == {429}, statuses
    locked = log_in(server, "boss", PASSWORD, path)
    assert locked.status_code == 429
    assert "Too many failed logins" in locked.text and "Try again in 15 minutes" in locked.text
    assert "sessionid" not in locked.cookies
    assert "script-src 'self'" in locked.headers["content-security-policy"]
    # The address is locked too (another account from it is refused); the server is
    # healthy and serves its pages.
    create_user(server, "other", PASSWORD)
    assert log_in(server, "other", PASSWORD, "/accounts/login/").status_code == 429
    with server.client() as client:
        assert client.get("/healthz").json()["status"] == "ok"
        assert client.get("/rooms/lobby/").status_code == 200


def test_lockout_by_address_behind_a_trusted_proxy(make_server):
    """TRUSTED_PROXIES=127.0.0.1: the proxy's X-Forwarded-For is the address counted."""
    server = make_server(env={"TRUSTED_PROXIES": "127.0.0.1"})
    create_user(server, "bob", PASSWORD)
    attacker = {"X-Forwarded-For": "203.0.113.66"}
    for n in range(5):
        log_in(server, f"nobody-{n}", "wrong", **attacker)
    assert log_in(server, "bob", PASSWORD, **attacker).status_code == 429
    # bob from his own address is not locked out: his account had no failures.
    assert log_in(server, "bob", PASSWORD, **{"X-Forwarded-For": "198.51.100.7"}).status_code == (
        302
    )


def test_forged_forwarded_for_does_not_escape_the_address_lockout(make_server):
    """No trusted proxy: X-Forwarded-For is the client's own word, and it is ignored."""
    server = make_server()
    create_user(server, "bob", PASSWORD)
    for n in range(5):
        log_in(server, f"nobody-{n}", "wrong", **{"X-Forwarded-For": f"203.0.113.{n}"})
    fresh = {"X-Forwarded-For": "198.51.100.99"}
    assert log_in(server, "bob", PASSWORD, **fresh).status_code == 429


def test_signups_are_throttled_per_address(make_server):
    server = make_server(env={"CHAT_SIGNUP_RATE": "2/h"})
    assert sign_up(server, "first").status_code == 302
    assert sign_up(server, "second").status_code == 302
    refused = sign_up(server, "third")
    assert refused.status_code == 429
    assert "Too many accounts were made from your address" in refused.text
    assert not user_exists(server, "third")


def test_closed_signup_creates_no_account(make_server):
    server = make_server(env={"CHAT_SIGNUP": "closed"})
    with server.client() as client:
        page = client.get("/accounts/signup/")
        assert page.status_code == 403 and "Signups are closed" in page.text
        client.get("/accounts/login/")
        posted = client.post(
            "/accounts/signup/",
            data={
                "username": "sneaky",
                "password1": PASSWORD,
                "password2": PASSWORD,
                "csrfmiddlewaretoken": client.cookies["csrftoken"],
            },
            headers={"Referer": server.url + "/accounts/login/"},
        )
        assert posted.status_code == 403
        assert "/accounts/signup/" not in client.get("/").text
    assert not user_exists(server, "sneaky")


def test_lookalike_usernames_are_refused_at_signup(make_server):
    server = make_server()
    create_user(server, "alice", PASSWORD)
    # The last is all Cyrillic (one script): only its skeleton gives it away.
    for lookalike in ["\u0430lice", "ALICE", "a1ice", "\u0430\u0406\u0456\u0441\u0435"]:
        response = sign_up(server, lookalike)
        assert response.status_code == 200, lookalike
        assert "field-error" in response.text, lookalike
        assert not user_exists(server, lookalike)
    assert sign_up(server, "alicia").status_code == 302


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PARLEY_HTTPS", "maybe"),
        ("PARLEY_HTTPS", "2"),
        ("PARLEY_HSTS_SECONDS", "a year"),
        ("CHAT_SIGNUP", "sometimes"),
        ("CHAT_SIGNUP_RATE", "lots"),
        ("CHAT_SIGNUP_RATE", "-1/h"),
        ("CHAT_LOGIN_LOCKOUT", "5"),
        ("CHAT_LOGIN_LOCKOUT", "0/15m"),
        ("DJANGO_CSRF_TRUSTED_ORIGINS", "chat.example.com"),
        ("DJANGO_CSRF_TRUSTED_ORIGINS", "https://chat.example.com/"),
    ],
)
def test_bad_settings_stop_start_up_naming_the_variable(tmp_path, variable, value):
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "STATIC_ROOT": str(tmp_path / "static"),
        variable: value,
    }
    if variable == "PARLEY_HSTS_SECONDS":
        env["PARLEY_HTTPS"] = "1"
    done = run_serve([], env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"serve.py: configuration error: {variable}" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "db.sqlite3").exists()


def check_deploy(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "manage.py"), "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith(("PARLEY_", "DJANGO_"))},
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
            "DJANGO_SECRET_KEY": REAL_KEY,
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_parley_https_makes_check_deploy_clean(tmp_path):
    done = check_deploy(tmp_path, PARLEY_HTTPS="1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues" in done.stdout


def test_without_parley_https_check_deploy_names_what_is_missing(tmp_path):
    done = check_deploy(tmp_path)
    assert done.returncode == 1
    for warning in ["security.W004", "security.W008", "security.W012", "security.W016"]:
        assert warning in done.stderr, done.stderr


def test_parley_https_redirects_pages_but_not_healthz(make_server):
    server = make_server(env={"PARLEY_HTTPS": "1"})
    with server.client() as client:
        page = client.get("/rooms/lobby/?x=1")
        assert page.status_code == 301
        assert page.headers["location"] == f"https://127.0.0.1:{server.port}/rooms/lobby/?x=1"
        # A load balancer health-checks over plain HTTP.
        assert client.get("/healthz").json()["status"] == "ok"
        # X-Forwarded-Proto from a client that is not a trusted proxy changes nothing.
        spoofed = client.get("/", headers={"X-Forwarded-Proto": "https"})
        assert spoofed.status_code == 301
    assert "PARLEY_HTTPS=1 but this server speaks plain HTTP" in server.log()


def test_parley_https_behind_a_trusted_proxy(make_server):
    server = make_server(env={"PARLEY_HTTPS": "1", "TRUSTED_PROXIES": "127.0.0.1"})
    create_user(server, "pat", PASSWORD)
    proxied = {"X-Forwarded-Proto": "https"}
    with server.client(headers=proxied) as client:
        page = client.get("/accounts/login/")
        assert page.status_code == 200
        hsts = page.headers["strict-transport-security"]
        assert "max-age=31536000" in hsts and "includeSubDomains" in hsts and "preload" in hsts
        assert "Secure" in page.headers["set-cookie"]  # the CSRF cookie
        assert "upgrade-insecure-requests" in page.headers["content-security-policy"]
        # httpx keeps Secure cookies for https:// only; send them by hand, as a proxy would.
        token = client.cookies["csrftoken"]
        logged_in = client.post(
            "/accounts/login/",
            data={"username": "pat", "password": PASSWORD, "csrfmiddlewaretoken": token},
            headers={"Cookie": f"csrftoken={token}", "Referer": "https://127.0.0.1/"},
        )
        assert logged_in.status_code == 403  # the Referer is another origin (no port)
        logged_in = client.post(
            "/accounts/login/",
            data={"username": "pat", "password": PASSWORD, "csrfmiddlewaretoken": token},
            headers={
                "Cookie": f"csrftoken={token}",
                "Referer": f"https://127.0.0.1:{server.port}/accounts/login/",
            },
        )
        assert logged_in.status_code == 302
        session = [h for h in logged_in.headers.get_list("set-cookie") if "sessionid" in h]
        assert session and "Secure" in session[0] and "HttpOnly" in session[0]


def test_csrf_trusted_origins_come_from_the_environment(make_server):
    server = make_server(env={"DJANGO_CSRF_TRUSTED_ORIGINS": "http://chat.example.test:8443"})
    create_user(server, "olga", PASSWORD)
    for origin, expected in [
        ("http://chat.example.test:8443", 302),
        ("http://evil.example.test", 403),
        ("http://chat.example.test", 403),  # another port is another origin
    ]:
        with server.client() as client:
            client.get("/accounts/login/")
            response = client.post(
                "/accounts/login/",
                data={
                    "username": "olga",
                    "password": PASSWORD,
                    "csrfmiddlewaretoken": client.cookies["csrftoken"],
                },
                headers={"Origin": origin},
            )
            assert response.status_code == expected, origin
