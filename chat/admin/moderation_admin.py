"""Admin: the moderation audit log, mutes and bans (PROTOCOL.md "Moderation").

The audit log (``ModerationAction``) is read-only: every action is kept as it was done.
Mutes and bans are made by moderators (the room page, the API: chat/moderation.py); here
staff see them and lift them. Lifting one goes through chat/moderation.py like a
moderator's unmute or unban, so it is recorded in the audit log and takes effect at once.
"""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from chat import moderation
from chat.models import Ban, ModerationAction, Mute


@admin.register(ModerationAction)
class ModerationActionAdmin(admin.ModelAdmin):
    list_display = (
        "created_at",
        "room",
        "action",
        "actor",
        "target_user",
        "target_seq",
        "value",
        "reason",
    )
    list_filter = ("action", ("room", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("room", "actor", "target_user")
    search_fields = ("reason", "actor__username", "target_user__username", "room__slug")
    date_hierarchy = "created_at"
    raw_id_fields = ("room", "actor", "target_user")
    list_per_page = 100
    # COUNT(*) over the whole audit log on every page load gets slow as it grows.
    show_full_result_count = False
    fields = (
        "created_at",
        "room",
        "action",
        "actor",
        "target_user",
        "target_seq",
        "value",
        "reason",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # actions are recorded by chat/moderation.py and chat/log_rules.py

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # an audit log that can be edited is no audit log


class _LiftableAdmin(admin.ModelAdmin):
    """Mutes and bans: read-only; deleting one is the unmute or unban of chat/moderation.py."""

    lift_action = ""
    list_select_related = ("room", "user", "by")
    search_fields = ("user__username", "room__slug", "reason")
    raw_id_fields = ("room", "user", "by")

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> tuple:
        return tuple(f.name for f in self.model._meta.fields)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # made by moderators, with their effect (chat/moderation.py)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def delete_model(self, request: HttpRequest, obj) -> None:
        wanted = moderation.Request(self.lift_action, obj.user.get_username())
        moderation.perform(obj.room, request.user, wanted)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        # "Delete selected" lifts each one the same way (recorded, announced).
        for obj in queryset.select_related("room", "user"):
            self.delete_model(request, obj)


@admin.register(Mute)
class MuteAdmin(_LiftableAdmin):
    lift_action = ModerationAction.Action.UNMUTE
    list_display = ("user", "room", "until", "reason", "by", "created_at")
    list_filter = (("room", admin.RelatedOnlyFieldListFilter),)


@admin.register(Ban)
class BanAdmin(_LiftableAdmin):
    lift_action = ModerationAction.Action.UNBAN
    list_display = ("user", "room", "reason", "by", "created_at")
    list_filter = (("room", admin.RelatedOnlyFieldListFilter),)
