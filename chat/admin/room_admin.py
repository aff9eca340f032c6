"""Admin: rooms, their members and moderators; a room's mutes and bans on its page.

Mutes and bans are made by moderators (the room page, the API) and shown here read-only
(a section, not inlines: an inline's formset would have to be posted with every save of
the room), each linking to its own admin (chat/admin/moderation_admin.py), where staff
lift them.
Changing ``moderators`` here takes effect at once: the next write's transaction reads it,
and its ``m2m_changed`` notice (chat/signals.py) refreshes the servers' answers and the
users' inboxes (``is_moderator``).
"""

from __future__ import annotations

from django.contrib import admin
from django.core.validators import MaxValueValidator
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from chat.dms import RoomForm
from chat.models import Ban, ModerationAction, Mute, Room
from chat.moderation import MAX_SLOW_MODE_SECONDS

# Mutes and bans shown on a room's page, at most this many of each (newest first); the
# rest are a click away in their own lists.
SHOWN_ON_ROOM = 50


def _count_per_room(queryset: QuerySet) -> Coalesce:
    """A correlated ``COUNT(*)`` of ``queryset``'s rows per room.

    Subqueries instead of ``Count()`` over joins: joining members and messages at once
    would multiply the rows (members x messages) before counting.
    """
    counted = (
        queryset.filter(room_id=OuterRef("pk"))
        .order_by()
        .values("room_id")
        .annotate(n=Count("*"))
        .values("n")
    )
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


def without_hard_delete(actions: dict) -> dict:
    actions.pop("delete_selected", None)
    return actions


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    # The direct-room rules (chat/dms.py): no third member, no dm- slug for a room.
    form = RoomForm
    list_display = (
        "name",
        "slug",
        "is_public",
        "is_archived",
        "member_count",
        "message_count",  # last_seq, linked to the room's messages
        "created_at",
    )
    list_filter = ("kind", "is_public", "is_archived")
    search_fields = ("name", "slug", "description")
    prepopulated_fields = {"slug": ("name",)}
    filter_horizontal = ("members", "moderators")
    readonly_fields = ("last_seq", "created_at", "mutes_and_bans", "moderation_log")
    fieldsets = (
        (None, {"fields": ("name", "slug", "description")}),
        ("Access", {"fields": ("is_public", "is_archived", "members")}),
        (
            "Moderation",
            {"fields": ("moderators", "slow_mode_seconds", "mutes_and_bans", "moderation_log")},
        ),
        ("Log", {"fields": ("last_seq", "created_at")}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return (
            super()
            .get_queryset(request)
            # Members are counted (their (room, user) index); messages are not: a
            # correlated COUNT of each room's log walked every room's messages on each
            # page load (seconds on 1M messages). last_seq is the log's length.
            .annotate(member_count=_count_per_room(Room.members.through.objects.all()))
        )

    @admin.display(description="members", ordering="member_count")
    def member_count(self, room: Room) -> int:
        return room.member_count

    @admin.display(description="log events", ordering="last_seq")
    def message_count(self, room: Room) -> str:
        # The message changelist's room filter (chat/admin/message_admin.py) is by slug.
        url = reverse("admin:chat_message_changelist") + f"?room={room.slug}"
        return format_html('<a href="{}">{}</a>', url, room.last_seq)

    def formfield_for_dbfield(self, db_field, request: HttpRequest, **kwargs):
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name == "slow_mode_seconds":
            # A change form posted without it (a script, a page from before moderation)
            # keeps the room's value rather than failing; empty is 0 (off). At most
            # chat/moderation.py's bound, as a moderator's choice is.
            field.required = False
            field.max_value = MAX_SLOW_MODE_SECONDS
            field.validators.append(MaxValueValidator(MAX_SLOW_MODE_SECONDS))
        return field

    def save_model(self, request: HttpRequest, obj: Room, form, change: bool) -> None:
        if obj.slow_mode_seconds is None:
            obj.slow_mode_seconds = 0
        if not change:
            obj.save()
            return
        # Never last_seq: it is the log's (chat/log.py, under the room's row lock), and a
        # save of the whole row would write back the value read when this request loaded
        # the room, under the sends committed since (their seqs would be handed out again).
        fields = [
            f.name
            for f in Room._meta.concrete_fields
            if not f.primary_key and f.name != "last_seq"
        ]
        obj.save(update_fields=fields)

    @admin.display(description="mutes and bans")
    def mutes_and_bans(self, room: Room) -> str:
        if room.pk is None:
            return "-"
        now = timezone.now()
        mutes = Mute.objects.filter(room_id=room.pk, until__gt=now).select_related("user", "by")
        bans = Ban.objects.filter(room_id=room.pk).select_related("user", "by")
        rows = [
            (
                "admin:chat_mute_change",
                m.pk,
                f"muted until {m.until:%Y-%m-%d %H:%M} UTC",
                m.user,
                m.by,
                m.reason,
            )
            for m in mutes.order_by("-created_at")[:SHOWN_ON_ROOM]
        ]
        rows += [
            ("admin:chat_ban_change", b.pk, "banned", b.user, b.by, b.reason)
            for b in bans.order_by("-created_at")[:SHOWN_ON_ROOM]
        ]
        if not rows:
            return "Nobody is muted or banned."
        items = format_html_join(
            "",
            '<li><a href="{}">{}</a>: {} by {}{}</li>',
            (
                (reverse(name, args=[pk]), user, what, by or "-", f" ({reason})" if reason else "")
                for name, pk, what, user, by, reason in rows
            ),
        )
        lists = format_html(
            '<a href="{}">all mutes</a> · <a href="{}">all bans</a>',
            reverse("admin:chat_mute_changelist") + f"?room__id__exact={room.pk}",
            reverse("admin:chat_ban_changelist") + f"?room__id__exact={room.pk}",
        )
        return format_html('<ul class="moderation-state">{}</ul>{}', items, lists)

    @admin.display(description="audit log")
    def moderation_log(self, room: Room) -> str:
        if room.pk is None:
            return "-"
        url = reverse("admin:chat_moderationaction_changelist") + f"?room__id__exact={room.pk}"
        count = ModerationAction.objects.filter(room_id=room.pk).count()
        return format_html('<a href="{}">{} moderation action(s)</a>', url, count)

    def get_readonly_fields(self, request: HttpRequest, obj: Room | None = None) -> tuple:
        # The slug names the room in URLs, live connections and every event of its log
        # (in all server processes); renaming it under connected clients would split it.
        if obj is not None:
            return ("slug", *self.readonly_fields)
        return self.readonly_fields

    def get_prepopulated_fields(self, request: HttpRequest, obj: Room | None = None) -> dict:
        return self.prepopulated_fields if obj is None else {}

    def has_delete_permission(self, request: HttpRequest, obj: Room | None = None) -> bool:
        # Deleting a room with a log would hard-delete its events and let a new room of the
        # same slug reuse their seqs; such a room is archived instead.
        if obj is not None and obj.last_seq > 0:
            return False
        return super().has_delete_permission(request, obj)

    def get_actions(self, request: HttpRequest) -> dict:
        # The bulk delete would bypass the per-room check above.
        return without_hard_delete(super().get_actions(request))
