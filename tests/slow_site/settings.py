"""Parley's settings with the test URLconf (slow, failing and echoing views added)."""

from project.settings import *  # noqa: F403

ROOT_URLCONF = "slow_site.urls"
INSTALLED_APPS = [*INSTALLED_APPS, "slow_site"]  # noqa: F405
