"""Rooms and the room log (PROTOCOL.md "Data model"); uploads, moderation, tokens and
webhooks are in chat/models_extra.py (re-exported here: ``chat.models`` is their home for
Django and for imports)."""

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
    class Kind(models.TextChoices):
        ROOM = "room", "room"
        DIRECT = "direct", "direct message"

    slug = models.CharField(max_length=50, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.ROOM)
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
    # Staff moderate every room; these users moderate this one (PROTOCOL.md "Moderation").
    moderators = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="moderated_rooms"
    )
    slow_mode_seconds = models.PositiveIntegerField(
        "slow mode (seconds)",
        default=0,
        help_text="A user who is not a moderator may send one message per this many seconds; "
        "0 turns slow mode off.",
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

    def clean(self) -> None:
        """The direct-room rules for every model form (chat/dms.py ``check_room``): no
        ``dm-`` slug on an ordinary room; a direct room private, never archived."""
        from chat.dms import check_room  # chat.dms needs this module's models

        check_room(self.slug, self.kind, self.is_public, self.is_archived, None)

    # The rule itself is chat.access's; these are its door for templates and views.
    def can_read(self, user) -> bool:
        from chat import access

        return access.may_read(self, access.user_id_of(user))

    def can_post(self, user) -> bool:
        """Whether ``user`` may post here now (an archived room is read-only)."""
        from chat import access

        return access.may_post(self, access.user_id_of(user))


class Message(models.Model):
    """One durable event of a room's log (PROTOCOL.md "The room log").

    A ``message`` row also holds that message's current state: an edit updates its
    ``body``, ``html``, ``mentions`` and ``edited_at`` in place (the ``edited`` row keeps
    the text of that edit), a deletion sets its ``deleted_at``. Reactions in effect are
    ``Reaction`` rows, mentions of users ``Mention`` rows: what history and the unread
    counts read without walking the log.
    """

    class Kind(models.TextChoices):
        MESSAGE = "message", "message"
        EDITED = "edited", "edited"
        DELETED = "deleted", "deleted"
        REACTION = "reaction", "reaction"

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
    # The server's rendering of ``body`` (chat/render.py), made once at append time.
    html = models.TextField(blank=True, editable=False)
    # Usernames mentioned (who may read the room), in order of first mention.
    mentions = models.JSONField(default=list, blank=True, editable=False)
    client_id = models.CharField(max_length=64, null=True, blank=True)
    target = models.BigIntegerField(
        null=True, blank=True, help_text="For edited, deleted and reaction: the seq it acts on."
    )
    reply_to = models.BigIntegerField(null=True, blank=True, help_text="The seq replied to.")
    # A reaction event's emoji and op ("add" or "remove"); empty for other kinds.
    emoji = models.CharField(max_length=64, blank=True, editable=False)
    op = models.CharField(max_length=6, blank=True, editable=False)
    # Set by chat.log to one time for a whole commit batch (auto_now_add would overwrite it
    # at insert, after the live event had been built with another time).
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    edited_at = models.DateTimeField(null=True, blank=True, editable=False)
    deleted_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["room", "seq"]
        indexes = [
            # The messages that count as unread: an unread count walks this index from the
            # reader's position and stops at 100 (chat/counts.py), never the whole log. It
            # carries the author, so leaving out the reader's own needs no table row.
            models.Index(
                fields=["room", "seq", "user"],
                condition=Q(kind="message", deleted_at__isnull=True),
                name="chat_message_live",
            ),
        ]
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

    def to_event(
        self,
        room_slug: str | None = None,
        username: str | None = None,
        attachments: list[dict] | None = None,
    ) -> dict:
        """The wire form of this event alone (PROTOCOL.md "The room log").

        A ``message`` here has no reactions: chat.log's readers add them (``reactions``
        are rows of their own), and the ``deleted`` shape blanks what a deletion hides.
        ``attachments`` are the message's attachment objects when the caller has them
        (the log, as it appends; chat/log_uploads.py for readers), else ``[]``.
        """
        slug = room_slug if room_slug is not None else self.room.slug
        if username is None:
            username = self.user.get_username() if self.user_id else None
        base = {"type": str(self.kind), "room": slug, "seq": self.seq}
        if self.kind == self.Kind.DELETED:
            return {**base, "target": self.target, "user": username}
        ts = self.created_at.isoformat()
        if self.kind == self.Kind.EDITED:
            return {
                **base,
                "target": self.target,
                "user": username,
                "body": self.body,
                "html": self.html,
                "mentions": list(self.mentions),
                "ts": ts,
                "client_id": self.client_id,
            }
        if self.kind == self.Kind.REACTION:
            return {
                **base,
                "target": self.target,
                "user": username,
                "emoji": self.emoji,
                "op": self.op,
                "ts": ts,
                "client_id": self.client_id,
            }
        deleted = self.deleted_at is not None
        event = {
            **base,
            "user": username,
            "body": "" if deleted else self.body,
            "html": "" if deleted else self.html,
            "mentions": [] if deleted else list(self.mentions),
            "reply_to": self.reply_to,
            "attachments": [] if deleted or not attachments else list(attachments),
            "ts": ts,
            "client_id": self.client_id,
            "edited_at": self.edited_at.isoformat() if self.edited_at else None,
            "reactions": [],
        }
        if deleted:
            event["deleted"] = True
        return event


class Reaction(models.Model):
    """A reaction in effect: ``user`` reacted to ``message`` with ``emoji``.

    ``seq`` is the seq of the ``reaction`` event that added it: history lists a message's
    reactions in order of first reaction, and each emoji's users in the order they came.
    """

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="reactions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    emoji = models.CharField(max_length=64)
    seq = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["message", "user", "emoji"], name="chat_reaction_once"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.emoji} by {self.user_id} on {self.message_id}"


class Mention(models.Model):
    """``user`` is mentioned by the (not deleted) message ``seq`` of ``room``: what a
    mention count reads, from the user's read position on (chat/counts.py)."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="+", db_index=False)
    seq = models.BigIntegerField()
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "room", "seq"], name="chat_mention_once"),
        ]
        indexes = [models.Index(fields=["room", "seq"], name="chat_mention_room_seq")]


class ReadPosition(models.Model):
    """How far ``user`` has read ``room`` (PROTOCOL.md: per user per room, monotonic).

    One row per membership: made when the user becomes a member (at the room's last seq,
    so nothing old counts as unread), removed when they stop being one.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="+")
    read_seq = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "room"], name="chat_read_position_once"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} read {self.room_id} to {self.read_seq}"


# The models of the later parts of the data model live in their own module (this one
# would pass 400 lines); importing them here registers them with the app.
from chat.models_extra import (  # noqa: E402
    AccessNotice,
    Ban,
    LastPost,
    ModerationAction,
    Mute,
    Profile,
    Token,
    Upload,
    Webhook,
    WebhookPosition,
)

__all__ = [
    "AccessNotice",
    "Ban",
    "LastPost",
    "Mention",
    "Message",
    "ModerationAction",
    "Mute",
    "Profile",
    "Reaction",
    "ReadPosition",
    "Room",
    "Token",
    "Upload",
    "Webhook",
    "WebhookPosition",
]
