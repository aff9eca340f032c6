"""Admin: webhooks (PROTOCOL.md "Webhooks"), at /admin/chat/webhook/.

The list shows what staff need to know of a webhook's health: active or not, since when
it fails, its last error, why it was disabled, and how far it got in each room. The URL
is checked on save as the deliverer checks it before every POST (chat/webhooks/targets.py:
loopback, private and link-local targets refused unless CHAT_WEBHOOK_ALLOW_PRIVATE=1);
a blank secret is generated. "Re-enable" makes a disabled webhook active again, with its
failing clock reset; its positions are kept, so it resumes where it stopped.
"""

from __future__ import annotations

import secrets

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.text import Truncator

from chat.models import Webhook, WebhookPosition
from chat.webhooks import db, policy, targets


class WebhookForm(forms.ModelForm):
    url = forms.URLField(
        max_length=2000, assume_scheme="https", widget=forms.URLInput(attrs={"size": 80})
    )
    secret = forms.CharField(
        required=False,
        max_length=200,
        widget=forms.TextInput(attrs={"size": 60}),
        help_text="Signs every delivery (X-Parley-Signature). Left blank: one is generated.",
    )

    class Meta:
        model = Webhook
        fields = ["room", "url", "secret", "kinds", "is_active", "bot_user"]

    def clean_url(self) -> str:
        url = self.cleaned_data["url"]
        allow = getattr(settings, "CHAT_WEBHOOK_ALLOW_PRIVATE", False)
        try:
            targets.check_url(url, allow_private=allow)
        except targets.TargetRefused as exc:
            raise forms.ValidationError(f"This URL is refused: {exc}.") from None
        return url

    def clean_secret(self) -> str:
        return self.cleaned_data.get("secret") or secrets.token_urlsafe(32)

    def clean_kinds(self) -> list[str]:
        kinds = self.cleaned_data.get("kinds")
        kinds = [] if kinds is None else kinds
        if not isinstance(kinds, list) or not all(k in policy.EVENT_KINDS for k in kinds):
            raise forms.ValidationError(
                f"A list of event kinds among {', '.join(policy.EVENT_KINDS)} ([]: all)."
            )
        return list(dict.fromkeys(kinds))


class PositionInline(admin.TabularInline):
    model = WebhookPosition
    fields = ["room", "seq"]
    readonly_fields = ["room", "seq"]
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Webhook)
class WebhookAdmin(admin.ModelAdmin):
    form = WebhookForm
    list_display = [
        "url",
        "scope",
        "is_active",
        "failing_since",
        "why_disabled",
        "delivered_up_to",
    ]
    list_filter = ["is_active"]
    list_select_related = ["room"]
    readonly_fields = [
        "created_at",
        "failing_since",
        "last_error",
        "disabled_reason",
        "lease_owner",
        "lease_until",
    ]
    inlines = [PositionInline]
    actions = ["reenable"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # The positions column of every row from one query.
        return super().get_queryset(request).prefetch_related("positions__room")

    @admin.display(description="room")
    def scope(self, webhook: Webhook) -> str:
        return webhook.room.slug if webhook.room_id else "every room"

    # Shortened in the list (the whole text, and the last error, are on the webhook's
    # page), so that the list stays a table that fits a screen.
    @admin.display(description="disabled reason")
    def why_disabled(self, webhook: Webhook) -> str:
        return Truncator(webhook.disabled_reason).chars(120) or "-"

    @admin.display(description="positions")
    def delivered_up_to(self, webhook: Webhook) -> str:
        rows = sorted(webhook.positions.all(), key=lambda p: p.room.slug)
        shown = ", ".join(f"{p.room.slug}:{p.seq}" for p in rows[:5])
        return (shown + (", ..." if len(rows) > 5 else "")) or "-"

    @admin.action(description="Re-enable the selected webhooks")
    def reenable(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = db.reenable(queryset)
        self.message_user(request, f"{count} webhook(s) re-enabled.", messages.SUCCESS)
