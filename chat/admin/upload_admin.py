"""Admin: attachments (chat.Upload), to find and remove files; never to edit them.

Every part of the changelist is an index walk (chat/admin/scale.py): no full count, the
room and the uploader by a typed slug or username (their unique indexes, then the
upload's foreign-key index), "attached" by ``message_id`` (its index; "no" is the partial
index ``chat_upload_unattached``), the newest first by ``created_at`` (its index), and the
search box an exact id (the primary key) or a name's prefix. A deletion here removes the
files from the storage too, after the rows' commit (chat/uploads.py's post_delete receiver).
"""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

import chat.uploads  # noqa: F401 - its post_delete receiver removes the files
from chat.admin.scale import ScaleAdminMixin, TextFilter
from chat.models import Upload


class RoomSlugFilter(TextFilter):
    title = "room (slug)"
    parameter_name = "room"
    lookup = "room__slug"


class UploaderFilter(TextFilter):
    title = "uploader (username)"
    parameter_name = "user"
    lookup = "user__username"


class AttachedFilter(admin.SimpleListFilter):
    title = "attached"
    parameter_name = "attached"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        return [("yes", "Yes"), ("no", "No (removed after 24 h)")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(message__isnull=False)
        if self.value() == "no":
            return queryset.filter(message__isnull=True)
        return queryset


@admin.register(Upload)
class UploadAdmin(ScaleAdminMixin, admin.ModelAdmin):
    list_display = ("name", "id", "room", "user", "content_type", "size", "message", "created_at")
    list_filter = (RoomSlugFilter, UploaderFilter, AttachedFilter)
    list_select_related = ("room", "user", "message")
    search_fields = ("=id", "^name")
    search_help_text = "An upload's exact id, or the beginning of its name."
    ordering = ("-created_at",)
    show_full_result_count = False
    list_per_page = 100
    fields = (
        *("id", "name", "room", "user", "content_type", "size", "width", "height"),
        *("file", "thumbnail", "message", "created_at"),
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # uploads come from the upload API, which types and checks them
