"""Rooms and the room log (PROTOCOL.md "Data model")."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from chat.slug import SLUG_PATTERN

slug_validator = RegexValidator(
    rf"^{SLUG_PATTERN}\Z",
    "Use 1-50 lowercase letters, digits or hyphens, starting with a letter or digit.",
)


class RoomQuerySet(models.QuerySet):
    def visible_to(self, user) -> RoomQuerySet:
        """The rooms ``user`` may read (chat.access decides)."""
        from chat import access  # chat.access needs this module's models

        return access.visible_rooms(self, access.user_id_of(user))


class Room(models.Model):
    slug = models.CharField(max_length=50, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    is_public = models.BooleanField(
        "public", default=True, help_text="Anyone may read a public room; members only else."
    )
    is_archived = models.BooleanField(
        "archived", default=False, help_text="An archived room is read-only."
    )
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="chat_rooms"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # The seq of the room's newest event. Only chat.log.append_events changes it, inside
    # the transaction that inserts the events: its row lock is what makes seq allocation
    # gap-free and ordered across threads and processes.
    last_seq = models.BigIntegerField(default=0, editable=False)

    objects = RoomQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("chat:room", kwargs={"slug": self.slug})

    # The rule itself is chat.access's; these are its door for templates and views.
    def can_read(self, user) -> bool:
        from chat import access

        return access.may_read(self, access.user_id_of(user))

    def can_post(self, user) -> bool:
        """Whether ``user`` may post here now (an archived room is read-only)."""
        from chat import access

        return access.may_post(self, access.user_id_of(user))


class Message(models.Model):
    """One durable event of a room's log."""

    class Kind(models.TextChoices):
        MESSAGE = "message", "message"
        DELETED = "deleted", "deleted"

    # No index of its own: the unique (room, seq) index serves every lookup by room.
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="events", db_index=False)
    seq = models.BigIntegerField()
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.MESSAGE)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="chat_messages",
    )
    body = models.TextField(blank=True)
    client_id = models.CharField(max_length=64, null=True, blank=True)
    target = models.BigIntegerField(null=True, blank=True, help_text="For deleted: its seq.")
    # Set by chat.log to one time for a whole commit batch (auto_now_add would overwrite it
    # at insert, after the live event had been built with another time).
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    deleted_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["room", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["room", "seq"], name="chat_message_room_seq"),
            models.UniqueConstraint(
                fields=["room", "user", "client_id"],
                condition=Q(client_id__isnull=False),
                name="chat_message_idempotency",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.room.slug}#{self.seq}"

    def to_event(self, room_slug: str | None = None, username: str | None = None) -> dict:
        """The wire form of this event (PROTOCOL.md "The room log")."""
        slug = room_slug if room_slug is not None else self.room.slug
        if self.kind == self.Kind.DELETED:
            return {"type": "deleted", "room": slug, "seq": self.seq, "target": self.target}
        if username is None:
            username = self.user.get_username() if self.user_id else None
        event = {
            "type": "message",
            "room": slug,
            "seq": self.seq,
            "user": username,
            "body": "" if self.deleted_at else self.body,
            "ts": self.created_at.isoformat(),
            "client_id": self.client_id,
        }
        if self.deleted_at:
            event["deleted"] = True
        return event
