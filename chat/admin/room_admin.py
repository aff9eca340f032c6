"""Admin: rooms and their members."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from chat.models import Message, Room


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
    list_display = (
        "name",
        "slug",
        "is_public",
        "is_archived",
        "member_count",
        "message_count",
        "last_seq",
        "created_at",
    )
    list_filter = ("is_public", "is_archived")
    search_fields = ("name", "slug", "description")
    prepopulated_fields = {"slug": ("name",)}
    filter_horizontal = ("members",)
    readonly_fields = ("last_seq", "created_at")
    fieldsets = (
        (None, {"fields": ("name", "slug", "description")}),
        ("Access", {"fields": ("is_public", "is_archived", "members")}),
        ("Log", {"fields": ("last_seq", "created_at")}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return (
            super()
            .get_queryset(request)
            .annotate(
                member_count=_count_per_room(Room.members.through.objects.all()),
                message_count=_count_per_room(Message.objects.filter(kind=Message.Kind.MESSAGE)),
            )
        )

    @admin.display(description="members", ordering="member_count")
    def member_count(self, room: Room) -> int:
        return room.member_count

    @admin.display(description="messages", ordering="message_count")
    def message_count(self, room: Room) -> str:
        url = reverse("admin:chat_message_changelist") + f"?room__id__exact={room.pk}"
        return format_html('<a href="{}">{}</a>', url, room.message_count)

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
