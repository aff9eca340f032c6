"""Admin: moderation of the room log.

The log is append-only: the admin never edits or hard-deletes a message. Deleting one is a
soft delete through ``chat.services.delete_message``, which keeps the row (for audit) and
appends a ``deleted`` event that every live client applies.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.text import Truncator

from chat import services
from chat.admin.room_admin import without_hard_delete
from chat.models import Message


class DeletedFilter(admin.SimpleListFilter):
    title = "deleted"
    parameter_name = "deleted"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(deleted_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(deleted_at__isnull=True)
        return queryset


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("room", "seq", "kind", "user", "text", "is_deleted", "created_at")
    list_display_links = ("room", "seq")
    list_filter = ("room", "kind", DeletedFilter)
    list_select_related = ("room", "user")
    search_fields = ("body", "user__username", "room__slug")
    ordering = ("-id",)
    list_per_page = 100
    # COUNT(*) over the whole log on every page load gets slow on a big log.
    show_full_result_count = False
    fields = (
        "room",
        "seq",
        "kind",
        "user",
        "body",
        "client_id",
        "target",
        "created_at",
        "deleted_at",
    )
    readonly_fields = fields
    actions = ["soft_delete_selected"]
    delete_confirmation_template = "admin/chat/message/soft_delete_confirmation.html"

    @admin.display(description="text")
    def text(self, message: Message) -> str:
        if message.kind == Message.Kind.DELETED:
            return f"deletes #{message.target}"
        return Truncator(message.body).chars(80)

    @admin.display(description="deleted", boolean=True, ordering="deleted_at")
    def is_deleted(self, message: Message) -> bool:
        return message.deleted_at is not None

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # the log is appended to by chat only

    def has_change_permission(self, request: HttpRequest, obj: Message | None = None) -> bool:
        return False  # a log entry is never edited; staff see it read-only

    def has_delete_permission(self, request: HttpRequest, obj: Message | None = None) -> bool:
        if obj is not None and not self._deletable(obj):
            return False
        return super().has_delete_permission(request, obj)

    @staticmethod
    def _deletable(message: Message) -> bool:
        return message.kind == Message.Kind.MESSAGE and message.deleted_at is None

    def delete_model(self, request: HttpRequest, obj: Message) -> None:
        services.delete_message(obj.pk, by_user_id=request.user.pk)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> int:
        """Soft-delete the messages of ``queryset`` not deleted yet; returns how many."""
        ids = queryset.filter(kind=Message.Kind.MESSAGE, deleted_at__isnull=True).values_list(
            "pk", flat=True
        )
        deleted = 0
        for message_id in list(ids):
            # One transaction per message: a moderator's bulk delete must not hold the
            # room lock (and stall live sends) for the whole selection.
            if services.delete_message(message_id, by_user_id=request.user.pk) is not None:
                deleted += 1
        return deleted

    def get_actions(self, request: HttpRequest) -> dict:
        return without_hard_delete(super().get_actions(request))

    @admin.action(description="Delete selected messages (soft)", permissions=["delete"])
    def soft_delete_selected(
        self, request: HttpRequest, queryset: QuerySet
    ) -> HttpResponse | None:
        deletable = queryset.filter(kind=Message.Kind.MESSAGE, deleted_at__isnull=True)
        skipped = queryset.count() - deletable.count()
        if not deletable.exists():
            self.message_user(
                request,
                "Nothing to delete: the selection holds only deleted messages and events.",
                messages.WARNING,
            )
            return None
        if request.POST.get("post") == "yes":
            self.log_deletions(request, deletable)
            count = self.delete_queryset(request, deletable)
            note = f" ({skipped} already deleted or not messages, skipped)" if skipped else ""
            self.message_user(request, f"Deleted {count} message(s){note}.", messages.SUCCESS)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Delete messages",
            "opts": self.opts,
            "messages_to_delete": deletable.select_related("room", "user"),
            "skipped": skipped,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "action_name": "soft_delete_selected",
            "media": self.media,
        }
        return TemplateResponse(
            request, "admin/chat/message/soft_delete_selected_confirmation.html", context
        )
