"""Admin: moderation of the room log.

The log is append-only: the admin never edits or hard-deletes a message. Deleting one is a
soft delete through ``chat.services.delete_message``, which keeps the row (for audit) and
appends a ``deleted`` event that every live client applies.

At scale (issue 11 part 5: 1M messages and more, bench/admin_scale.py) every page is an
index walk: no count of the whole log (chat/admin/scale.py's paginator), the room and the
user filtered by a typed slug or username (an index lookup, not a sidebar of every
room), the newest first by id, or by seq within one room (the (room, seq) index), and
the search box answered by the full-text index (chat/search.py's), never ``LIKE '%x%'``.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.text import Truncator

from chat import search, services
from chat.admin.room_admin import without_hard_delete
from chat.admin.scale import ScaleAdminMixin, TextFilter
from chat.models import Message, Room

# The admin's search shows at most this many matches, the newest first: the full-text
# index is walked from the newest row and stops there.
SEARCH_CAP = 1000


class RoomSlugFilter(TextFilter):
    title = "room (slug)"
    parameter_name = "room"
    lookup = "room_id"

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        # The slug is resolved first (its unique index), so the messages are filtered by
        # room_id: the (room, seq) index alone answers the page.
        if not self.value:
            return queryset
        return queryset.filter(room_id=room_id_of(self.value))


class UsernameFilter(TextFilter):
    title = "user (username)"
    parameter_name = "user"
    lookup = "user__username"


def room_id_of(slug: str) -> int:
    """The id of the room ``slug``; 0 (no room has it) when there is none."""
    return Room.objects.filter(slug=slug).values_list("pk", flat=True).first() or 0


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
class MessageAdmin(ScaleAdminMixin, admin.ModelAdmin):
    list_display = ("room", "seq", "kind", "user", "text", "is_deleted", "created_at")
    list_display_links = ("room", "seq")
    list_filter = (RoomSlugFilter, UsernameFilter, "kind", DeletedFilter)
    list_select_related = ("room", "user")
    # Answered by get_search_results (the full-text index); the field only turns the
    # search box on. "@name" finds a user's messages.
    search_fields = ("body",)
    search_help_text = (
        "Whole words in the text of messages not deleted (the newest "
        f"{SEARCH_CAP}); @username for someone's messages."
    )
    ordering = ("-id",)
    list_per_page = 100
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

    def get_ordering(self, request: HttpRequest) -> tuple:
        # Within one room, by seq: (room, seq) is unique, so Django adds no "-pk" and the
        # page is a backward walk of that index. "room_id", not "room": that would order
        # by the room's own ordering (its name), a join and a sort of the room's messages.
        if request.GET.get(RoomSlugFilter.parameter_name, "").strip():
            return ("-room_id", "-seq")
        return self.ordering

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        if term.startswith("@") and " " not in term:
            return queryset.filter(user__username=term[1:]), False
        try:
            query = search.parse(term)
        except search.SearchError:
            return queryset.none(), False
        # The conditions of the index itself (PostgreSQL's GIN index is partial), and the
        # room when one is chosen, so the match walks only what can be shown.
        where = ["m.kind = 'message'", "m.deleted_at IS NULL"]
        params: list = []
        slug = request.GET.get(RoomSlugFilter.parameter_name, "").strip()
        if slug:
            where.append("m.room_id = %s")
            params.append(room_id_of(slug))
        # chat/search.py's own walk of the index (its SQLite and PostgreSQL forms).
        ids = search.matching_ids(query, where, params, SEARCH_CAP)
        return queryset.filter(pk__in=ids), False

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
