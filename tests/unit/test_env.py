"""project/env.py: every environment parser on good, bad and edge input.

A bad value must stop start-up with ``ImproperlyConfigured`` naming the variable, never
fall back to a silent default (the module's promise).
"""

from __future__ import annotations

import ipaddress
import multiprocessing
import os
import stat

import pytest
from django.core.exceptions import ImproperlyConfigured

from chat.live.records import RateLimit
from project.env import (
    env_bool,
    env_choice,
    env_int,
    env_list,
    load_secret_key,
    parse_networks,
    parse_origins,
    parse_rate_limit,
)

# env_bool


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", "True", "yes", "on", " on ", "Yes\n"])
def test_env_bool_true_spellings(raw):
    assert env_bool("FLAG", default=False, environ={"FLAG": raw}) is True


@pytest.mark.parametrize("raw", ["0", "false", "FALSE", "no", "off", " off ", "", "   "])
def test_env_bool_false_spellings(raw):
    assert env_bool("FLAG", default=True, environ={"FLAG": raw}) is False


@pytest.mark.parametrize("default", [True, False])
def test_env_bool_unset_is_the_default(default):
    assert env_bool("FLAG", default=default, environ={}) is default


@pytest.mark.parametrize("raw", ["2", "y", "n", "enable", "truee", "-1", "0.0"])
def test_env_bool_rejects_anything_else_naming_the_variable(raw):
    with pytest.raises(ImproperlyConfigured, match=r"^DJANGO_DEBUG="):
        env_bool("DJANGO_DEBUG", environ={"DJANGO_DEBUG": raw})


# env_int


def test_env_int_parses_and_strips():
    assert env_int("N", 5, environ={"N": " 42 "}) == 42


@pytest.mark.parametrize("raw", [None, "", "   "])
def test_env_int_unset_or_blank_is_the_default(raw):
    environ = {} if raw is None else {"N": raw}
    assert env_int("N", 7, environ=environ) == 7


def test_env_int_minimum_is_inclusive():
    assert env_int("N", 5, minimum=1024, environ={"N": "1024"}) == 1024
    with pytest.raises(ImproperlyConfigured, match=r"N='1023': must be at least 1024"):
        env_int("N", 5, minimum=1024, environ={"N": "1023"})


def test_env_int_default_minimum_refuses_negatives_but_takes_zero():
    assert env_int("N", 5, environ={"N": "0"}) == 0
    with pytest.raises(ImproperlyConfigured, match="at least 0"):
        env_int("N", 5, environ={"N": "-1"})


@pytest.mark.parametrize("raw", ["abc", "1.5", "10MB", "1e6", "0x10", "ten"])
def test_env_int_rejects_non_integers_naming_the_variable(raw):
    with pytest.raises(ImproperlyConfigured, match=r"^MAX_REQUEST_BYTES=.*expected an integer"):
        env_int("MAX_REQUEST_BYTES", 5, environ={"MAX_REQUEST_BYTES": raw})


# env_list


def test_env_list_splits_strips_and_drops_empty_items():
    environ = {"HOSTS": " a.example , b.example,,  ,[::1] "}
    assert env_list("HOSTS", "x", environ=environ) == ["a.example", "b.example", "[::1]"]


def test_env_list_default_is_parsed_the_same_way():
    assert env_list("HOSTS", "localhost,127.0.0.1,[::1]", environ={}) == [
        "localhost",
        "127.0.0.1",
        "[::1]",
    ]


def test_env_list_empty_value_is_an_empty_list_not_the_default():
    assert env_list("HOSTS", "localhost", environ={"HOSTS": ""}) == []


# parse_rate_limit


@pytest.mark.parametrize(
    ("raw", "count", "seconds"),
    [
        ("20/10s", 20, 10.0),
        ("30/m", 30, 60.0),
        ("5/1h", 5, 3600.0),
        ("5/2h", 5, 7200.0),
        ("7/s", 7, 1.0),
        ("3/1.5m", 3, 90.0),
        (" 20 / 10 s ", 20, 10.0),
        ("1/10", 1, 10.0),  # no unit: seconds
    ],
)
def test_parse_rate_limit_good(raw, count, seconds):
    limit = parse_rate_limit(raw)
    assert limit == RateLimit(count, seconds)
    assert limit.enabled


@pytest.mark.parametrize("raw", ["0", " 0 "])
def test_parse_rate_limit_zero_turns_it_off(raw):
    limit = parse_rate_limit(raw)
    assert limit.count == 0
    assert not limit.enabled


@pytest.mark.parametrize(
    "raw",
    ["abc", "", "20", "-1/s", "20/-1s", "20/10x", "20/10ms", "20/10S", "20/10s/2", "1.5/s"],
)
def test_parse_rate_limit_malformed_names_the_variable(raw):
    with pytest.raises(ImproperlyConfigured, match=r"^CHAT_RATE_LIMIT=.*COUNT/WINDOW"):
        parse_rate_limit(raw)


@pytest.mark.parametrize("raw", ["0/10s", "0/m", "20/0s", "20/0", "20/0.0m"])
def test_parse_rate_limit_zero_count_or_window_is_refused(raw):
    # Only the bare "0" means "no limit"; "0/10s" is more likely a typo than a wish.
    with pytest.raises(ImproperlyConfigured, match="must be positive"):
        parse_rate_limit(raw)


def test_parse_rate_limit_uses_the_given_name():
    with pytest.raises(ImproperlyConfigured, match=r"^OTHER_LIMIT='abc'"):
        parse_rate_limit("abc", name="OTHER_LIMIT")


def test_parse_rate_limit_refuses_a_missing_window():
    with pytest.raises(ImproperlyConfigured):
        parse_rate_limit("20/")


# parse_networks


def test_parse_networks_addresses_and_cidrs():
    networks = parse_networks("10.0.0.0/8, 127.0.0.1, ::1")
    assert networks == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("::1/128"),
    )
    assert ipaddress.ip_address("10.200.3.4") in networks[0]
    assert ipaddress.ip_address("127.0.0.2") not in networks[1]


def test_parse_networks_host_bits_are_accepted_and_masked():
    assert parse_networks("192.168.1.7/24") == (ipaddress.ip_network("192.168.1.0/24"),)


@pytest.mark.parametrize("raw", ["", " ", " , ,"])
def test_parse_networks_empty_is_no_network(raw):
    assert parse_networks(raw) == ()


@pytest.mark.parametrize(
    ("raw", "bad"),
    [
        ("10.0.0.0/33", "10.0.0.0/33"),
        ("127.0.0.1, localhost", "localhost"),
        ("300.1.1.1", "300.1.1.1"),
        ("10.0.0.0/8/8", "10.0.0.0/8/8"),
        ("::1/129", "::1/129"),
        ("10.0.0.*", "10.0.0.*"),
    ],
)
def test_parse_networks_bad_item_is_named(raw, bad):
    with pytest.raises(
        ImproperlyConfigured, match=rf"^TRUSTED_PROXIES: {bad!r}".replace("*", r"\*")
    ):
        parse_networks(raw)


# env_choice (CHAT_SIGNUP)


@pytest.mark.parametrize(("raw", "expected"), [("open", "open"), (" CLOSED ", "closed")])
def test_env_choice_accepts_the_choices_in_any_case(raw, expected):
    assert env_choice("CHAT_SIGNUP", "open", ("open", "closed"), {"CHAT_SIGNUP": raw}) == expected


@pytest.mark.parametrize("environ", [{}, {"CHAT_SIGNUP": ""}, {"CHAT_SIGNUP": "  "}])
def test_env_choice_unset_or_blank_is_the_default(environ):
    assert env_choice("CHAT_SIGNUP", "open", ("open", "closed"), environ) == "open"


@pytest.mark.parametrize("raw", ["sometimes", "0", "opened", "open,closed", "clo sed", "\x00"])
def test_env_choice_refuses_anything_else_naming_the_variable(raw):
    with pytest.raises(ImproperlyConfigured, match=r"CHAT_SIGNUP=.*expected one of open, closed"):
        env_choice("CHAT_SIGNUP", "open", ("open", "closed"), {"CHAT_SIGNUP": raw})


# parse_origins (DJANGO_CSRF_TRUSTED_ORIGINS)


def test_parse_origins_bare_origins_ports_wildcards_and_ipv6():
    raw = " https://Chat.Example.com, http://localhost:8000,https://*.example.org,"
    raw += "https://[::1]:8443 "
    assert parse_origins(raw) == [
        "https://chat.example.com",
        "http://localhost:8000",
        "https://*.example.org",
        "https://[::1]:8443",
    ]


@pytest.mark.parametrize("raw", ["", " , ,"])
def test_parse_origins_empty_is_none(raw):
    assert parse_origins(raw) == []


@pytest.mark.parametrize(
    "bad",
    [
        "chat.example.com",  # no scheme: Django would never match it
        "https://chat.example.com/",  # trailing slash
        "https://chat.example.com/path",
        "https://chat.example.com?x=1",
        "ftp://chat.example.com",
        "javascript://x",
        "https://",
        "https://a..b",
        "https://chat.example.com:0",
        "https://chat.example.com:65536",
        "https://user@chat.example.com",
        "https://chat example.com",
        "https://*",
        "null",
    ],
)
def test_parse_origins_refuses_what_is_not_an_origin(bad):
    with pytest.raises(ImproperlyConfigured, match="DJANGO_CSRF_TRUSTED_ORIGINS"):
        parse_origins(f"https://ok.example.com,{bad}")


# load_secret_key


def test_load_secret_key_generates_once_into_a_private_file(tmp_path):
    path = tmp_path / ".secret_key"
    key = load_secret_key(path, environ={})
    assert len(key) >= 50
    assert path.read_text().strip() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_secret_key(path, environ={}) == key
    assert [p.name for p in tmp_path.iterdir()] == [".secret_key"]  # no temporary left


def test_load_secret_key_is_random_per_file(tmp_path):
    assert load_secret_key(tmp_path / "a", environ={}) != load_secret_key(
        tmp_path / "b", environ={}
    )


def test_load_secret_key_private_even_with_a_permissive_umask(tmp_path):
    old = os.umask(0)
    try:
        load_secret_key(tmp_path / "k", environ={})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o600


def test_load_secret_key_environment_wins_and_writes_nothing(tmp_path):
    path = tmp_path / ".secret_key"
    assert load_secret_key(path, environ={"DJANGO_SECRET_KEY": "  from-env  "}) == "from-env"
    assert not path.exists()
    path.write_text("from-file\n")
    assert load_secret_key(path, environ={"DJANGO_SECRET_KEY": "from-env"}) == "from-env"
    assert load_secret_key(path, environ={"DJANGO_SECRET_KEY": "   "}) == "from-file"


def test_load_secret_key_reads_an_existing_file(tmp_path):
    path = tmp_path / ".secret_key"
    path.write_text("kept-key\n")
    assert load_secret_key(path, environ={}) == "kept-key"


def _start_worker(path, barrier, results) -> None:
    barrier.wait()
    results.put(load_secret_key(path, environ={}))


def test_load_secret_key_concurrent_worker_processes_agree_on_one_key(tmp_path):
    # serve.py --workers N starts N processes at once on a fresh checkout.
    context = multiprocessing.get_context("fork")
    path = tmp_path / ".secret_key"
    barrier = context.Barrier(6)
    results = context.Queue()
    workers = [
        context.Process(target=_start_worker, args=(path, barrier, results)) for _ in range(6)
    ]
    for worker in workers:
        worker.start()
    keys = [results.get(timeout=20) for _ in workers]
    for worker in workers:
        worker.join(10)
        assert worker.exitcode == 0
    assert set(keys) == {path.read_text().strip()}
    assert [p.name for p in tmp_path.iterdir()] == [".secret_key"]
