"""The thread-safe door from Django code (WSGI threads) into the live hub.

Django code never touches the hub directly: the hub lives on the reactor thread and is
not thread-safe. The server installs a sink at start-up; ``publish_committed`` hands an
already committed event to it through ``reactor.callFromThread``. In a process with no
reactor (``manage.py shell``, a management command) nothing is installed and the event
only reaches live clients when they next resume from the log, which they do with no gap.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)

_sink: Callable[[dict], None] | None = None
_call_from_thread: Callable[..., None] | None = None


def install(call_from_thread: Callable[..., None], sink: Callable[[dict], None]) -> None:
    """Called once by the server: ``sink(event)`` will run on the reactor thread."""
    global _sink, _call_from_thread
    _sink, _call_from_thread = sink, call_from_thread


def uninstall() -> None:
    global _sink, _call_from_thread
    _sink = _call_from_thread = None


def publish_committed(event: dict) -> None:
    """Deliver a committed durable event to every live subscriber (any thread)."""
    if _sink is None or _call_from_thread is None:
        logger.info("no live hub in this process; %s reaches clients on resume", event)
        return
    _call_from_thread(_sink, event)
