"""What the rest of Django tells live chat: every change that access to a room depends on.

PROTOCOL.md "Losing access" (guarantee 9): when a user loses access to a room, every live
connection they have to it, on every transport and in every process, ends within 1 s. The
may-read rule (chat/access.py) depends on a room's members, its flags and its existence,
and on the account and the session a connection was opened with. Whatever changes one of
those, through the admin, a view, a script or the ORM anywhere, sends a Django signal
here; each is turned into an ``AccessChange`` announced once its transaction commits
(``transaction.on_commit``: a change rolled back ends nothing, and a re-check must read
what was committed), through chat/live/publish.py to the hub of this process and from
there over the bus to every other process. The hub re-authorizes the connections
concerned against the database, so an announcement of a change that did not remove
anyone's access (a member added, a room made public) only costs a read.

- ``Room.members`` changes (``m2m_changed``, from either side): the room, for those users
  (a clear: for everyone).
- A room's ``is_public`` or ``is_archived`` changes, a room is created (an answer "no such
  room" may be cached) or deleted: the room, for everyone.
- An account is deactivated or reactivated, its password changes (which signs out its
  other sessions), or it is deleted: that account, in every room.
- A user logs out (``user_logged_out``): that session.

Membership also owns a row: each member's read position (chat/membership.py). The same
``m2m_changed`` makes it (at the room's last seq) and deletes it, inside the transaction
of the change, whichever side the change came from.

What bypasses signals is not seen here: ``QuerySet.update()`` and raw SQL. The admin
makes none (chat/admin.py edits rooms through the change form, whose members widget is
an ``m2m_changed``, and it has no bulk action on rooms but the hard delete, removed), and
neither does anything else in Parley. Such a change, like one made by a process without a
reactor when there is no Redis to announce it on (chat/live/redis_publish.py), reaches
live connections through the servers' periodic room check, which re-authorizes every
live connection (chat/live/access_watch.py ``check_all``, every 5 s).

``event_appended`` (PROTOCOL.md "Python API for Django code") goes the other way: the
log (chat/log.py) sends it after the commit of every durable event it appends, whoever
appended it (a live transport through the store, the REST API, the admin, the Python
API), in the process that appended it (see ``events_committed``).

Django-side only: nothing here imports Twisted.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable
from functools import partial

from django.conf import settings
from django.contrib.auth.signals import user_logged_out
from django.db import DEFAULT_DB_ALIAS, transaction
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save
from django.dispatch import Signal

from chat import membership
from chat.live.publish import AccessChange, announce_access
from chat.models import Message, Room

logger = logging.getLogger(__name__)

# The fields of an account that decide whether its sessions still sign it in.
_ACCOUNT_FIELDS = ("is_active", "password")
# slow_mode_seconds is no access field, but its notice makes the inboxes send the new
# room object (moderation; the admin's form changes it too).
_ROOM_FIELDS = ("slug", "is_public", "is_archived", "slow_mode_seconds")
# Set on an instance by pre_save, read (and removed) by post_save of the same save.
_BEFORE = "_chat_access_before"


def announce(change: AccessChange, using: str | None = None) -> None:
    """Announce ``change`` once the current transaction commits (at once outside one)."""
    transaction.on_commit(
        partial(announce_access, change), using=using or DEFAULT_DB_ALIAS, robust=True
    )


# -- event_appended (the Python API's signal) --------------------------------------------

# ``event_appended.send(sender=Message, event=event)`` once the transaction that appended
# ``event`` (a durable event as PROTOCOL.md shows it) has committed; never for one that
# was rolled back. Receivers run on the thread that committed, which in a server process
# is one of the store's (chat/live/store.py): keep them short and hand slow work to a
# queue, since the store's next group commit waits for them. A receiver that raises is
# logged and the others still run. They get a copy of the event, not the one on its
# way to live clients.
event_appended = Signal()


def events_committed(events: list[dict], using: str | None = None) -> None:
    """Send ``event_appended`` for ``events`` once the current transaction commits.

    Called by the log inside its transaction. Nothing is registered when no receiver is
    connected, so the store's hot path pays one check per batch.
    """
    if not events or not event_appended.has_listeners(Message):
        return
    transaction.on_commit(
        partial(_send_appended, list(events)), using=using or DEFAULT_DB_ALIAS, robust=True
    )


def _send_appended(events: list[dict]) -> None:
    for event in events:
        # A copy: the event itself is also on its way to live clients (the ring, the bus).
        answers = event_appended.send_robust(sender=Message, event=copy.deepcopy(event))
        for receiver, answer in answers:
            if isinstance(answer, Exception):
                logger.error("event_appended receiver %r failed", receiver, exc_info=answer)


# -- membership ------------------------------------------------------------------------


def members_changed(
    sender, instance, action: str, reverse: bool, pk_set, using: str, **kwargs
) -> None:
    if action not in ("post_add", "post_remove", "pre_clear"):
        return
    if not reverse:  # room.members.add(...), .remove(...), .set(...), .clear()
        if action == "pre_clear":
            announce(AccessChange.room_changed(instance.slug), using)
        elif pk_set:
            announce(AccessChange.room_changed(instance.slug, tuple(pk_set)), using)
        return
    # user.chat_rooms.add(...) and the rest: ``pk_set`` holds rooms.
    if action == "pre_clear":  # before the rows go, to know which rooms they were
        rooms = Room.objects.using(using).filter(members=instance.pk)
    elif pk_set:
        rooms = Room.objects.using(using).filter(pk__in=pk_set)
    else:
        return
    for slug in rooms.values_list("slug", flat=True):
        announce(AccessChange.room_changed(slug, (instance.pk,)), using)


def moderators_changed(
    sender, instance, action: str, reverse: bool, pk_set, using: str, **kwargs
) -> None:
    """``Room.moderators`` changed (the admin): no one's access to read changes, but the
    servers' answers and the inboxes' room objects (``is_moderator``) of those users do.
    Moderators' rights themselves are read in each write's transaction (chat/log.py)."""
    if action not in ("post_add", "post_remove", "pre_clear"):
        return
    if not reverse:
        users = None if action == "pre_clear" else tuple(pk_set or ())
        if users != ():
            announce(AccessChange.room_changed(instance.slug, users), using)
        return
    if action == "pre_clear":
        rooms = Room.objects.using(using).filter(moderators=instance.pk)
    elif pk_set:
        rooms = Room.objects.using(using).filter(pk__in=pk_set)
    else:
        return
    for slug in rooms.values_list("slug", flat=True):
        announce(AccessChange.room_changed(slug, (instance.pk,)), using)


def positions_follow_members(
    sender, instance, action: str, reverse: bool, pk_set, using: str, **kwargs
) -> None:
    """A read position per membership: made on add, deleted on remove and clear."""
    if action == "pre_clear":  # before the rows go; post_clear no longer tells which
        if reverse:
            membership.members_cleared(user_id=instance.pk, using=using)
        else:
            membership.members_cleared(room_id=instance.pk, using=using)
        return
    if action not in ("post_add", "post_remove") or not pk_set:
        return
    rooms, users = (pk_set, [instance.pk]) if reverse else ([instance.pk], pk_set)
    if action == "post_add":
        membership.members_added(rooms, users, using=using)
    else:
        membership.members_removed(rooms, users, using=using)


# -- rooms ---------------------------------------------------------------------------


def _remember(model, instance, using: str, update_fields: Iterable[str] | None, fields) -> None:
    """Before a save of an existing row: the values of ``fields`` it had."""
    if instance._state.adding or instance.pk is None:
        return
    if update_fields is not None and not set(update_fields) & set(fields):
        return  # e.g. the login's save of last_login: nothing access depends on
    before = model._default_manager.using(using).filter(pk=instance.pk).values(*fields).first()
    setattr(instance, _BEFORE, before)


def _changed(instance, fields) -> dict | None:
    """After the save: the values ``fields`` had before, when one of them changed."""
    before = instance.__dict__.pop(_BEFORE, None)
    if before is None:
        return None
    if all(before[f] == getattr(instance, f) for f in fields):
        return None
    return before


def room_saving(sender, instance: Room, using: str, update_fields=None, **kwargs) -> None:
    _remember(Room, instance, using, update_fields, _ROOM_FIELDS)


def room_saved(sender, instance: Room, created: bool, using: str, **kwargs) -> None:
    if created:
        # Connections refused as "no such room" may be cached: the next one is let in.
        announce(AccessChange.room_changed(instance.slug), using)
        return
    before = _changed(instance, _ROOM_FIELDS)
    if before is None:
        return
    announce(AccessChange.room_changed(before["slug"]), using)
    if before["slug"] != instance.slug:  # the admin refuses it; a script might not
        announce(AccessChange.room_changed(instance.slug), using)


def room_deleted(sender, instance: Room, using: str, **kwargs) -> None:
    announce(AccessChange.room_changed(instance.slug), using)


# -- accounts and sessions -------------------------------------------------------------


def _account_fields(model) -> tuple[str, ...]:
    names = {f.name for f in model._meta.get_fields()}
    return tuple(f for f in _ACCOUNT_FIELDS if f in names)


def account_saving(sender, instance, using: str, update_fields=None, **kwargs) -> None:
    _remember(sender, instance, using, update_fields, _account_fields(sender))


def account_saved(sender, instance, created: bool, using: str, **kwargs) -> None:
    if not created and _changed(instance, _account_fields(sender)) is not None:
        announce(AccessChange.accounts_changed((instance.pk,)), using)


def account_deleted(sender, instance, using: str, **kwargs) -> None:
    announce(AccessChange.accounts_changed((instance.pk,)), using)


def logged_out(sender, request, user, **kwargs) -> None:
    # Sent by django.contrib.auth.logout just before it flushes the session.
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    if session_key:
        user_id = user.pk if user is not None else None
        announce(AccessChange.session_ended(session_key, user_id))


def bot_flagged(sender, instance, **kwargs) -> None:
    """An account flagged a bot signs in with tokens only (PROTOCOL.md): its password is
    made unusable, which also ends the sessions it already has (Django checks a session
    against the password's hash) and, through ``account_saved``, its live connections
    opened with them. Its tokens keep working."""
    if not instance.is_bot:
        return
    user = instance.user
    if user.has_usable_password():
        user.set_unusable_password()
        user.save(update_fields=["password"])


def connect() -> None:
    """Connect every receiver (once: ``ChatConfig.ready``; the uids make it idempotent)."""
    m2m_changed.connect(
        members_changed, sender=Room.members.through, dispatch_uid="chat.access.members"
    )
    m2m_changed.connect(  # moderation: a room's moderators (chat/moderation.py)
        moderators_changed,
        sender=Room.moderators.through,
        dispatch_uid="chat.access.moderators",
    )
    m2m_changed.connect(
        positions_follow_members,
        sender=Room.members.through,
        dispatch_uid="chat.membership.positions",
    )
    pre_save.connect(room_saving, sender=Room, dispatch_uid="chat.access.room_saving")
    post_save.connect(room_saved, sender=Room, dispatch_uid="chat.access.room_saved")
    post_delete.connect(room_deleted, sender=Room, dispatch_uid="chat.access.room_deleted")
    account = settings.AUTH_USER_MODEL
    pre_save.connect(account_saving, sender=account, dispatch_uid="chat.access.account_saving")
    post_save.connect(account_saved, sender=account, dispatch_uid="chat.access.account_saved")
    post_delete.connect(
        account_deleted, sender=account, dispatch_uid="chat.access.account_deleted"
    )
    user_logged_out.connect(logged_out, dispatch_uid="chat.access.logged_out")
    from chat.models import Profile

    post_save.connect(bot_flagged, sender=Profile, dispatch_uid="chat.access.bot_flagged")
    # A revoked, expired or deleted token ends its connections as a logout does.
    from chat import tokens

    tokens.connect()
