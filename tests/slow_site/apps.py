"""Counts Django's request signals from start-up on (read by ``/test/finished-count/``)."""

from __future__ import annotations

import threading

from django.apps import AppConfig
from django.core.signals import request_finished, request_started

_lock = threading.Lock()
_counts = {"started": 0, "finished": 0}


def signal_counts() -> dict[str, int]:
    with _lock:
        return dict(_counts)


def _counter(name: str):
    def receiver(**_kwargs) -> None:
        with _lock:
            _counts[name] += 1

    return receiver


_on_started = _counter("started")
_on_finished = _counter("finished")


class SlowSiteConfig(AppConfig):
    name = "slow_site"

    def ready(self) -> None:
        # Connected at start-up, not when urls.py is first imported (during the first
        # request, after its request_started), so that every request is counted.
        request_started.connect(_on_started, dispatch_uid="slow_site.started")
        request_finished.connect(_on_finished, dispatch_uid="slow_site.finished")
