"""A host project's settings (chat/conf.py) and the command that serves it (project/cli.py):
PROTOCOL.md "Hosting your own Django project". tests/integration/test_host_project.py
serves tests/hostproject for real."""

from __future__ import annotations

import os
import sys
from types import SimpleNamespace

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from chat import conf
from chat.live.records import RateLimit
from project import cli


def test_the_defaults_are_parleys_own_settings():
    """chat/conf.py parses the environment as project/settings.py does: the same values,
    so a host project gets what Parley's own project would."""
    for name, value in conf.environment_defaults().items():
        assert getattr(settings, name) == value, name


def test_every_chat_setting_of_parleys_project_has_a_default():
    """A CHAT_* setting added to project/settings.py alone would be missing in a host
    project: chat/ code reading it would fail there."""
    defaults = conf.environment_defaults()
    missing = [name for name in dir(settings) if name.startswith("CHAT_") and name not in defaults]
    assert missing == []


def bare(**given) -> SimpleNamespace:
    """What a startproject settings module leaves: Django's defaults, none of Parley's."""
    django_defaults = {
        "STATIC_ROOT": None,
        "MEDIA_ROOT": "",
        "CSRF_TRUSTED_ORIGINS": [],
        "CACHES": {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
    }
    return SimpleNamespace(**{**django_defaults, **given})


def test_a_bare_project_gets_every_setting_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    environ = {
        "CHAT_MAX_MESSAGE_CHARS": "100",
        "CHAT_RATE_LIMIT": "5/m",
        "REDIS_URL": "redis://example:6379/2",
        "DJANGO_CSRF_TRUSTED_ORIGINS": "https://chat.example.com",
    }
    target = bare()
    added = conf.apply_defaults(target, environ)
    assert target.CHAT_MAX_MESSAGE_CHARS == 100
    assert RateLimit(5, 60.0) == target.CHAT_RATE_LIMIT
    assert target.REDIS_URL == "redis://example:6379/2"
    assert target.CHAT_CURSOR_CHECK_SECONDS == 0.25 and target.CHAT_ROOM_CHECK_SECONDS == 5
    assert target.CSRF_TRUSTED_ORIGINS == ["https://chat.example.com"]
    assert tmp_path / "staticfiles" == target.STATIC_ROOT
    assert tmp_path / "media" == target.MEDIA_ROOT
    assert target.CACHES["throttle"] == conf.THROTTLE_CACHE and "default" in target.CACHES
    assert set(conf.environment_defaults(environ)) <= set(added)


def test_what_the_project_sets_is_kept(tmp_path):
    target = bare(
        CHAT_MAX_MESSAGE_CHARS=9,
        REDIS_URL=None,
        STATIC_ROOT=tmp_path / "mine",
        CSRF_TRUSTED_ORIGINS=["https://mine.example"],
    )
    target.CACHES["throttle"] = {"BACKEND": "mine"}
    conf.apply_defaults(target, {"CHAT_MAX_MESSAGE_CHARS": "100", "REDIS_URL": "redis://x/0"})
    assert target.CHAT_MAX_MESSAGE_CHARS == 9 and target.REDIS_URL is None
    assert tmp_path / "mine" == target.STATIC_ROOT
    assert target.CSRF_TRUSTED_ORIGINS == ["https://mine.example"]
    assert target.CACHES["throttle"] == {"BACKEND": "mine"}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CHAT_MAX_MESSAGE_CHARS", "lots"),
        ("CHAT_RATE_LIMIT", "20/"),
        ("CHAT_CURSOR_CHECK_SECONDS", "-1"),
        ("CHAT_CURSOR_CHECK_SECONDS", "nan"),
        ("CHAT_CURSOR_CHECK_SECONDS", "inf"),
        ("TRUSTED_PROXIES", "not-an-address"),
        ("CHAT_SIGNUP", "maybe"),
    ],
)
def test_a_bad_environment_value_stops_the_start(name, value):
    with pytest.raises(ImproperlyConfigured, match=name):
        conf.apply_defaults(bare(), {name: value})


# -- the command -------------------------------------------------------------------------


def test_settings_flag_wins_and_the_working_directory_is_importable(tmp_path, monkeypatch):
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "project.settings")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(tmp_path)])
    monkeypatch.chdir(tmp_path)
    cli.use_settings("mysite.settings")
    assert os.environ["DJANGO_SETTINGS_MODULE"] == "mysite.settings"
    assert str(tmp_path) in sys.path


def test_without_the_flag_the_environment_decides(monkeypatch):
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "hostsite.settings")
    cli.use_settings(None)
    assert os.environ["DJANGO_SETTINGS_MODULE"] == "hostsite.settings"
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE")
    cli.use_settings(None)
    assert os.environ["DJANGO_SETTINGS_MODULE"] == "project.settings"


def test_the_serve_flags_take_settings():
    assert cli.parse_args(["--settings", "mysite.settings"]).settings == "mysite.settings"
    assert cli.parse_args([]).settings is None


def test_the_parley_command(capsys):
    assert cli.parley(["--help"]) == 0
    assert "serve" in capsys.readouterr().out
    assert cli.parley(["frobnicate"]) == 2
    assert "unknown command" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        cli.parley(["serve", "--help"])
    assert exited.value.code == 0
    assert "usage: parley serve" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exited:
        cli.parley(["serve", "--port", "70000"])
    assert exited.value.code == 2
