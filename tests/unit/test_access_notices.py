"""Access changes from a process with no hub and no Redis (chat/access_notices.py) and
the servers' reading of them at the cursor check (chat/live/notices.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from twisted.internet import defer, task

from chat import access_notices
from chat.live import publish
from chat.live.notices import CLEANUP_SECONDS, AccessNotices
from chat.live.publish import AccessChange
from chat.models import AccessNotice

pytestmark = pytest.mark.django_db


class SyncStore:
    """The store's ``run``, in the test's thread (its database is the test's)."""

    def __init__(self) -> None:
        self.fail = False

    def run(self, fn, *args):
        if self.fail:
            return defer.fail(RuntimeError("database away"))
        return defer.succeed(fn(*args))


@pytest.fixture
def no_hub_no_redis(settings):
    publish.uninstall()
    settings.REDIS_URL = None


def test_with_no_hub_and_no_redis_a_change_is_written_down(no_hub_no_redis):
    change = AccessChange.room_changed("lobby", (3, 1))
    publish.announce_access(change)
    [notice] = AccessNotice.objects.all()
    assert AccessChange.from_json(notice.change) == change


def test_servers_apply_only_what_came_after_they_started(no_hub_no_redis):
    publish.announce_access(AccessChange.room_changed("old", (1,)))
    applied: list[AccessChange] = []
    notices = AccessNotices(task.Clock(), SyncStore(), applied.append)
    notices.check()  # the first read finds where to start
    assert applied == []
    changes = [
        AccessChange.room_changed("lobby", (2,)),
        AccessChange.accounts_changed((5,)),
        AccessChange.kicked("lobby", (2,)),
    ]
    for change in changes:
        publish.announce_access(change)
    notices.check()
    assert applied == changes
    notices.check()  # nothing new: nothing applied twice
    assert applied == changes


def test_a_failed_read_skips_nothing(no_hub_no_redis):
    applied: list[AccessChange] = []
    store = SyncStore()
    notices = AccessNotices(task.Clock(), store, applied.append)
    notices.check()
    change = AccessChange.room_changed("lobby", (2,))
    publish.announce_access(change)
    store.fail = True
    notices.check()
    assert applied == []
    store.fail = False
    notices.check()
    assert applied == [change]


def test_malformed_rows_are_passed_over(no_hub_no_redis):
    applied: list[AccessChange] = []
    notices = AccessNotices(task.Clock(), SyncStore(), applied.append)
    notices.check()
    for junk in ({"kind": "room"}, ["not", "a", "change"], {"kind": "accounts", "users": [True]}):
        AccessNotice.objects.create(change=junk)
    good = AccessChange.session_ended("abc", 4)
    publish.announce_access(good)
    notices.check()
    assert applied == [good]


def test_old_notices_are_deleted_once_a_minute():
    stale = AccessNotice.objects.create(change={"kind": "room", "room": "a", "users": None})
    AccessNotice.objects.filter(pk=stale.pk).update(
        created_at=timezone.now() - timedelta(seconds=access_notices.KEEP_SECONDS + 1)
    )
    fresh = AccessNotice.objects.create(change={"kind": "room", "room": "b", "users": None})
    clock = task.Clock()
    notices = AccessNotices(clock, SyncStore(), lambda change: None)
    notices.check()
    assert list(AccessNotice.objects.values_list("pk", flat=True)) == [fresh.pk]
    AccessNotice.objects.filter(pk=fresh.pk).update(
        created_at=timezone.now() - timedelta(seconds=access_notices.KEEP_SECONDS + 1)
    )
    notices.check()  # within the minute: not cleaned again
    assert AccessNotice.objects.count() == 1
    clock.advance(CLEANUP_SECONDS)
    notices.check()
    assert AccessNotice.objects.count() == 0
