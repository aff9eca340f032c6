"""Admin: API tokens, and the bot flag of accounts (PROTOCOL.md "Authentication").

A token added here gets its secret made by chat/tokens.py and shown once, on the page
that answers the add (only its digest is stored; the digest is never shown). A
token is revoked, not edited into another: the "revoke" action and the revoked field
both go through ``save()``, whose signal ends the token's live connections at once
(chat/tokens.py). The account page gets the Profile inline with ``is_bot``, and the
account list a "bot" column.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html

from chat import tokens
from chat.models import Profile, Token


@admin.register(Token)
class TokenAdmin(admin.ModelAdmin):
    list_display = ("name", "user", "shown_prefix", "created_at", "last_used_at", "status")
    list_filter = ("revoked_at",)
    list_select_related = ("user",)
    search_fields = ("name", "prefix", "user__username")
    autocomplete_fields = ("user",)
    # ``digest`` is in no list: it is not editable, and it is never shown.
    readonly_fields = ("shown_prefix", "created_at", "last_used_at")
    actions = ["revoke_selected"]

    def get_fields(self, request: HttpRequest, obj: Token | None = None):
        if obj is None:
            return ("user", "name", "expires_at")
        return (
            "user",
            "name",
            "shown_prefix",
            "created_at",
            "last_used_at",
            "expires_at",
            "revoked_at",
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Token | None = None):
        fields = self.readonly_fields
        if obj is not None:
            # A token belongs to one account for good: moving it would hand its secret's
            # holder someone else's account.
            fields += ("user",)
            if obj.revoked_at is not None:
                # No un-revoking: every server remembers the token as ended (its live
                # credential), and whoever held the secret may have been why.
                fields += ("revoked_at",)
        return fields

    @admin.display(description="prefix")
    def shown_prefix(self, obj: Token) -> str:
        return f"{obj.prefix}…" if obj.prefix else "-"

    @admin.display(description="status")
    def status(self, obj: Token) -> str:
        if obj.revoked_at is not None:
            return "revoked"
        if obj.expires_at is not None and obj.expires_at <= timezone.now():
            return "expired"
        return "active"

    def save_model(self, request: HttpRequest, obj: Token, form, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        made, secret = tokens.make(obj.user, obj.name, expires_at=obj.expires_at)
        obj.pk, obj.prefix, obj.digest, obj.created_at = (
            made.pk,
            made.prefix,
            made.digest,
            made.created_at,
        )
        obj._state.adding = False
        request._parley_token_secret = secret  # for response_add, this request only

    def response_add(self, request: HttpRequest, obj: Token, post_url_continue=None):
        # The secret is shown on the answer to the add itself, never stored: a success
        # message would keep it in the messages cookie (or session) until the next page.
        secret = getattr(request, "_parley_token_secret", None)
        if secret is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "title": "Token created",
            "opts": self.opts,
            "token": obj,
            "secret": secret,
        }
        response = TemplateResponse(request, "admin/chat/token_secret.html", context)
        add_never_cache_headers(response)
        return response

    @admin.action(description="Revoke the selected tokens")
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        # One save() per token, so that each one's connections end (the signal).
        revoked = 0
        for token in queryset.filter(revoked_at__isnull=True):
            tokens.revoke(token)
            revoked += 1
        self.message_user(request, f"{revoked} token(s) revoked.", messages.SUCCESS)


class ProfileInline(admin.StackedInline):
    model = Profile
    can_delete = False
    fields = ("is_bot",)
    verbose_name = "Parley profile"
    verbose_name_plural = "Parley profile"


User = get_user_model()
if admin.site.is_registered(User):
    admin.site.unregister(User)


@admin.register(User)
class AccountAdmin(UserAdmin):
    list_display = (*UserAdmin.list_display, "bot_badge")
    list_select_related = ("chat_profile",)
    list_filter = (*UserAdmin.list_filter, "chat_profile__is_bot")

    def get_inlines(self, request: HttpRequest, obj=None):
        # On the change page only: the add page stays Django's two-step form (username
        # and password first), which scripts and tests post without inline fields.
        return (*super().get_inlines(request, obj), ProfileInline) if obj is not None else ()

    @admin.display(description="bot", ordering="chat_profile__is_bot")
    def bot_badge(self, obj) -> str:
        return (
            format_html('<span class="badge bot-badge">{}</span>', "bot")
            if tokens.is_bot(obj)
            else ""
        )
