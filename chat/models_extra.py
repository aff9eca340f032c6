"""The data model beside the room log (PROTOCOL.md "Data model"): attachments, moderation,
accounts' tokens and bot flags, webhooks. Import them from ``chat.models``.

Foreign keys name "chat.Room" and "chat.Message" by string: chat/models.py imports this
module at its end.
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


def new_upload_id() -> str:
    """An unguessable upload id (PROTOCOL.md "Attachments"): 128 random bits, URL-safe."""
    return secrets.token_urlsafe(16)


def upload_path(upload: Upload, filename: str) -> str:
    # The stored name never carries the user's name (that is kept in ``name``): a path
    # made of the id alone cannot climb out of MEDIA_ROOT or collide.
    return f"uploads/{upload.id[:2]}/{upload.id}"


def thumbnail_path(upload: Upload, filename: str) -> str:
    return f"uploads/{upload.id[:2]}/{upload.id}.thumb"


class Upload(models.Model):
    """An attachment: uploaded to a room by a member, attached to one message at most.

    ``message`` is None until a send lists it; an upload never attached is removed after
    24 h. A deleted message's uploads are no longer served.
    """

    id = models.CharField(primary_key=True, max_length=32, default=new_upload_id, editable=False)
    room = models.ForeignKey("chat.Room", on_delete=models.CASCADE, related_name="uploads")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat_uploads"
    )
    file = models.FileField(upload_to=upload_path, max_length=200)
    name = models.CharField(max_length=255, help_text="The file name as shown (sanitized).")
    size = models.BigIntegerField()
    content_type = models.CharField(max_length=100)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    thumbnail = models.FileField(upload_to=thumbnail_path, max_length=200, blank=True)
    message = models.ForeignKey(
        "chat.Message",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="uploads",
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        indexes = [
            # The cleanup's walk: uploads never attached, oldest first.
            models.Index(
                fields=["created_at"],
                condition=Q(message__isnull=True),
                name="chat_upload_unattached",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"


class RoomSanction(models.Model):
    """What a mute and a ban share: whom, where, why, by whom, when (one row per room and
    user: chat/moderation.py updates it in place). ``room`` is each one's own, for its
    related name (``room.mutes``, ``room.bans``)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    reason = models.TextField(blank=True)
    by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        abstract = True
        constraints = [
            models.UniqueConstraint(fields=["room", "user"], name="chat_%(class)s_once"),
        ]


class Mute(RoomSanction):
    """``user`` may not write in ``room`` until ``until`` (PROTOCOL.md "Moderation")."""

    room = models.ForeignKey("chat.Room", on_delete=models.CASCADE, related_name="mutes")
    until = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.user} muted in {self.room} until {self.until:%Y-%m-%d %H:%M}"


class Ban(RoomSanction):
    """``user`` may neither read nor write ``room`` until unbanned."""

    room = models.ForeignKey("chat.Room", on_delete=models.CASCADE, related_name="bans")

    def __str__(self) -> str:
        return f"{self.user} banned from {self.room}"


class LastPost(models.Model):
    """When ``user`` last sent a message in ``room``: what slow mode compares with.

    Written only in rooms with slow mode on, inside the append transaction, so the rule
    holds across processes without walking the log for the user's last message.
    """

    room = models.ForeignKey("chat.Room", on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["room", "user"], name="chat_last_post_once"),
        ]


class ModerationAction(models.Model):
    """The audit log: every moderation action, kept (who, whom, what, when, why)."""

    class Action(models.TextChoices):
        DELETE = "delete", "delete a message"
        MUTE = "mute", "mute"
        UNMUTE = "unmute", "unmute"
        KICK = "kick", "kick"
        BAN = "ban", "ban"
        UNBAN = "unban", "unban"
        SLOW_MODE = "slow_mode", "slow mode"

    room = models.ForeignKey(
        "chat.Room", on_delete=models.CASCADE, related_name="moderation_actions"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    action = models.CharField(max_length=12, choices=Action.choices)
    target_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    target_seq = models.BigIntegerField(null=True, blank=True)
    # What the action set: minutes of a mute, seconds of slow mode.
    value = models.PositiveIntegerField(null=True, blank=True)
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["room", "-created_at"], name="chat_modaction_room"),
            models.Index(fields=["-created_at"], name="chat_modaction_time"),
        ]

    def __str__(self) -> str:
        return f"{self.get_action_display()} in {self.room_id} by {self.actor_id}"


class Profile(models.Model):
    """What Parley keeps of an account besides ``auth.User``: the bot flag."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="chat_profile",
    )
    is_bot = models.BooleanField(
        "bot", default=False, help_text="A bot: shown with a badge; signs in with tokens only."
    )

    def __str__(self) -> str:
        return f"profile of {self.user_id}"


class Token(models.Model):
    """An API token (PROTOCOL.md "Authentication"): only its SHA-256 digest is stored."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat_tokens"
    )
    name = models.CharField(max_length=100)
    # The first characters of the secret ("prl_ab12..."), to tell tokens apart in lists.
    prefix = models.CharField(max_length=16, editable=False)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class Webhook(models.Model):
    """A URL that receives a room's (or every room's) durable events (PROTOCOL.md)."""

    room = models.ForeignKey(
        "chat.Room",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="webhooks",
        help_text="Empty: every room.",
    )
    url = models.URLField(max_length=2000)
    secret = models.CharField(max_length=200)
    kinds = models.JSONField(
        default=list, blank=True, help_text='Event kinds to send, e.g. ["message"]; empty: all.'
    )
    is_active = models.BooleanField(default=True)
    # The account a reply from the receiver is posted as.
    bot_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    failing_since = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    disabled_reason = models.TextField(blank=True, editable=False)
    # Exactly one deliverer at a time: the process holding an unexpired lease.
    lease_owner = models.CharField(max_length=100, blank=True, editable=False)
    lease_until = models.DateTimeField(null=True, blank=True, editable=False)

    def __str__(self) -> str:
        return self.url

    def save(self, *args, **kwargs) -> None:
        # A new webhook, or one given another room (or every room), starts at the rooms'
        # current last_seq, not at their first event (chat/webhooks/db.py).
        from chat.webhooks.db import start_positions

        fields = kwargs.get("update_fields")
        rescoped = self._state.adding
        if not rescoped and (fields is None or "room" in fields or "room_id" in fields):
            old = Webhook.objects.filter(pk=self.pk).values_list("room_id", flat=True).first()
            rescoped = old != self.room_id
        super().save(*args, **kwargs)
        if rescoped:
            start_positions(self)


class WebhookPosition(models.Model):
    """The durable delivery position of a webhook in a room: every event up to ``seq``
    has been delivered (a 2xx)."""

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="positions")
    room = models.ForeignKey("chat.Room", on_delete=models.CASCADE, related_name="+")
    seq = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["webhook", "room"], name="chat_webhook_position_once"),
        ]


class AccessNotice(models.Model):
    """An access change (chat/live/publish.py ``AccessChange``) committed by a process with
    no live hub and no Redis to tell the servers (``manage.py shell``, a worker): every
    server reads the new ones at its cursor check (chat/live/notices.py), so a removal
    made there ends live connections within a second, not at the 5 s room check. Kept
    for minutes only: a server reads from the newest id it saw at start."""

    change = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
