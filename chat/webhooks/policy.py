"""When a failed delivery is tried again, and when a webhook stops being tried.

PROTOCOL.md: retries 1 s apart, doubling, at most 10 min apart, for 24 h; then the webhook
is disabled and the admin shows why. The 24 h are counted from ``failing_since``, kept
in the database, so a restart does not start them again (the delay does: a new process
tries once at once, which is what an operator who restarted it wants).
"""

from __future__ import annotations

from datetime import datetime, timedelta

FIRST_DELAY = 1.0
MAX_DELAY = 600.0
DISABLE_AFTER = timedelta(hours=24)
# The kinds of durable events (PROTOCOL.md "The room log"); an empty ``kinds`` means all.
EVENT_KINDS = ("message", "edited", "reaction", "deleted")


def retry_delay(failures: int) -> float:
    """Seconds to wait after the ``failures``-th failure in a row (1, 2, 4, ... 600)."""
    if failures < 1:
        return 0.0
    # 2**n overflows nothing here: capped before it grows (n > 10 is already past 600).
    return min(MAX_DELAY, FIRST_DELAY * 2 ** min(failures - 1, 20))


def should_disable(failing_since: datetime | None, now: datetime) -> bool:
    return failing_since is not None and now - failing_since >= DISABLE_AFTER


def disabled_reason(failing_since: datetime, last_error: str) -> str:
    # The cause first: the admin's list shows the beginning of it.
    return f"24 hours of failures since {failing_since:%Y-%m-%d %H:%M} UTC; last: {last_error}"


def wants(kinds: list | None, event: dict) -> bool:
    """Whether a webhook with ``kinds`` is sent ``event`` (empty or missing: every kind)."""
    return not kinds or event.get("type") in kinds
