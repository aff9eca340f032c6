"""The webhooks' database side: leases, delivery positions, failures. Plain Django: the
deliverer runs these on the store's threads (chat/live/store.py ``Store.run``), the
admin in its WSGI thread.

Exactly one deliverer per webhook, across processes and machines, is a lease in the
webhook's row: ``claim`` takes every active webhook whose lease is free, expired or
already its own in ONE ``UPDATE ... WHERE``, which the database applies row by row
under the row's lock (PostgreSQL re-checks the condition on the row a concurrent claim
just wrote), so two claims can never both win. Times are the database's (``Now()``), so
the machines' clocks do not have to agree. A holder killed with -9 stops renewing; its
lease expires and another process claims it. A holder that lost its lease (it could not
renew in time) is fenced: ``advance`` writes a position only while the lease is its own.

A position is per (webhook, room): every event up to ``seq`` was answered with a 2xx. It
is written after each 2xx, before the next event is sent, so a crash repeats at most the
one event in flight (at least once; the receiver drops repeats by X-Parley-Delivery).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.db.models import F, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce, Greatest, Now
from django.utils import timezone

from chat.live.records import UserInfo
from chat.models import Room, Webhook, WebhookPosition
from chat.webhooks import policy

# Rooms one pass of a worker looks at; the next pass takes the rest.
ROOMS_PER_PASS = 100


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """A webhook as its worker needs it, read again at every pass (admin edits apply)."""

    id: int
    url: str
    secret: str
    kinds: tuple[str, ...]
    bot: UserInfo | None
    failing: bool


@dataclass(frozen=True, slots=True)
class PendingRoom:
    room_id: int
    slug: str
    position: int


def start_positions(webhook: Webhook) -> None:
    """Rooms in the webhook's scope start at their current ``last_seq``: a new webhook is
    sent what happens from now on, not every room's whole history. A room made later
    has no position row, which counts as 0: all its events are new."""
    rooms = _scope(webhook)
    WebhookPosition.objects.bulk_create(
        [
            WebhookPosition(webhook=webhook, room_id=room_id, seq=last_seq)
            for room_id, last_seq in rooms.filter(last_seq__gt=0).values_list("id", "last_seq")
        ],
        ignore_conflicts=True,
        batch_size=1000,
    )


def _scope(webhook: Webhook):
    if webhook.room_id is None:
        return Room.objects.all()
    return Room.objects.filter(pk=webhook.room_id)


# -- leases ------------------------------------------------------------------------------


def claim(owner: str, seconds: float) -> list[int]:
    """Renew this owner's leases and take every free or expired one; the ids now held."""
    until = Now() + timedelta(seconds=seconds)
    Webhook.objects.filter(is_active=True).filter(
        Q(lease_owner=owner) | Q(lease_until__isnull=True) | Q(lease_until__lt=Now())
    ).update(lease_owner=owner, lease_until=until)
    return list(
        Webhook.objects.filter(is_active=True, lease_owner=owner, lease_until__gt=Now())
        .order_by("id")
        .values_list("id", flat=True)
    )


def release(owner: str) -> int:
    """Give back this owner's leases (a clean stop): another process may take them at once."""
    return Webhook.objects.filter(lease_owner=owner).update(lease_owner="", lease_until=None)


def _held(webhook_id: int, owner: str):
    return Webhook.objects.filter(
        id=webhook_id, is_active=True, lease_owner=owner, lease_until__gt=Now()
    )


# -- what to deliver ---------------------------------------------------------------------


def pending(
    webhook_id: int, owner: str
) -> tuple[WebhookConfig, list[PendingRoom], str | None] | None:
    """The webhook (if this owner still holds it), its rooms with events past their
    position (by room id; one query, whatever their number) and its room's slug (None:
    every room)."""
    webhook = _held(webhook_id, owner).select_related("bot_user", "room").first()
    if webhook is None:
        return None
    config = _config(webhook)
    position = WebhookPosition.objects.filter(webhook_id=webhook_id, room_id=OuterRef("pk"))
    rooms = _scope(webhook)
    rows = (
        rooms.annotate(position=Coalesce(Subquery(position.values("seq")[:1]), Value(0)))
        .filter(last_seq__gt=F("position"))
        .order_by("id")
        .values_list("id", "slug", "position")[:ROOMS_PER_PASS]
    )
    scope = webhook.room.slug if webhook.room_id is not None else None
    return config, [PendingRoom(*row) for row in rows], scope


def config(webhook_id: int, owner: str) -> WebhookConfig | None:
    """The webhook as it is now, if this owner still holds it (before each retry)."""
    webhook = _held(webhook_id, owner).select_related("bot_user").first()
    return None if webhook is None else _config(webhook)


def _config(webhook: Webhook) -> WebhookConfig:
    bot = webhook.bot_user
    return WebhookConfig(
        id=webhook.id,
        url=webhook.url,
        secret=webhook.secret,
        kinds=tuple(k for k in (webhook.kinds or []) if isinstance(k, str)),
        bot=UserInfo(bot.pk, bot.get_username()) if bot is not None and bot.is_active else None,
        failing=webhook.failing_since is not None,
    )


def advance(webhook_id: int, owner: str, room_id: int, seq: int) -> bool:
    """Every event of the room up to ``seq`` was delivered: the position moves there (never
    back). False when this owner no longer holds the lease: it must stop."""
    with transaction.atomic():
        if not _held(webhook_id, owner).exists():
            return False
        updated = WebhookPosition.objects.filter(webhook_id=webhook_id, room_id=room_id).update(
            seq=Greatest(F("seq"), Value(seq))
        )
        if not updated:
            WebhookPosition.objects.create(webhook_id=webhook_id, room_id=room_id, seq=seq)
    return True


def positions(webhook_id: int) -> dict[int, int]:
    return dict(
        WebhookPosition.objects.filter(webhook_id=webhook_id).values_list("room_id", "seq")
    )


# -- failures ----------------------------------------------------------------------------


def record_failure(webhook_id: int, owner: str, error: str) -> bool:
    """A delivery failed: remember when the failing began and why; past 24 h the webhook
    is disabled with the reason (True: it was, the worker stops)."""
    error = error[:1000]
    with transaction.atomic():
        webhook = _held(webhook_id, owner).select_for_update().first()
        if webhook is None:
            return True
        now = timezone.now()
        webhook.failing_since = webhook.failing_since or now
        webhook.last_error = f"{now:%Y-%m-%d %H:%M:%S} UTC: {error}"
        fields = ["failing_since", "last_error"]
        if policy.should_disable(webhook.failing_since, now):
            webhook.is_active = False
            webhook.disabled_reason = policy.disabled_reason(webhook.failing_since, error)
            webhook.lease_owner, webhook.lease_until = "", None
            fields += ["is_active", "disabled_reason", "lease_owner", "lease_until"]
        webhook.save(update_fields=fields)
        return not webhook.is_active


def record_success(webhook_id: int) -> None:
    """A 2xx after failures: the webhook is healthy again."""
    Webhook.objects.filter(id=webhook_id).update(failing_since=None)


def note_error(webhook_id: int, error: str) -> None:
    """Something the admin should see that is not a failed delivery (a refused reply)."""
    now = timezone.now()
    Webhook.objects.filter(id=webhook_id).update(
        last_error=f"{now:%Y-%m-%d %H:%M:%S} UTC: {error[:1000]}"
    )


def reenable(webhooks) -> int:
    """The admin's action: active again, as if new to failing (positions kept)."""
    return webhooks.update(is_active=True, failing_since=None, disabled_reason="", last_error="")
