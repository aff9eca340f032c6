"""``/accounts/tokens/``: the signed-in user's API tokens (PROTOCOL.md "Authentication").

One page, thin over chat/tokens.py: a form with a ``name`` makes a token and shows its
secret on that one answer (never again: only its digest is kept, and the answer is
``no-store`` so no cache keeps it either); the list shows each token's name, prefix,
created and last used; a revoke button per token. Django's CSRF middleware guards both
forms. A revoke is answered with a redirect (a reload does not post it again); a create
is not, because the secret exists only in the answer to the POST that made it.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from chat import tokens
from chat.models import Profile, Token

# Live tokens per user: a person or bot needs a handful (one per script or machine); the
# bound keeps a looping script from filling the table and the page.
MAX_TOKENS_PER_USER = 50
NAME_MAX = Token._meta.get_field("name").max_length


class TokenForm(forms.Form):
    name = forms.CharField(
        max_length=NAME_MAX,
        strip=True,
        help_text="What it is for, e.g. “backup script” or “deploy bot”.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "maxlength": NAME_MAX}),
    )


def _live_tokens(user):
    now = timezone.now()
    return Token.objects.filter(user=user, revoked_at__isnull=True).exclude(expires_at__lte=now)


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def tokens_page(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    form = TokenForm()
    secret = None
    status = 200
    if request.method == "POST":
        if request.POST.get("action") == "revoke":
            token = Token.objects.filter(user=request.user, pk=_pk(request.POST.get("token")))
            token = token.first()
            if token is None:
                messages.error(request, "No such token.")
            else:
                tokens.revoke(token)
                messages.success(request, f"Token “{token.name}” revoked.")
            return redirect("tokens")
        form = TokenForm(request.POST)
        if form.is_valid():
            if _live_tokens(request.user).count() >= MAX_TOKENS_PER_USER:
                form.add_error(
                    None, f"You have {MAX_TOKENS_PER_USER} tokens; revoke one to make another."
                )
                status = 400
            else:
                _token, secret = tokens.make(request.user, form.cleaned_data["name"])
                form = TokenForm()
                status = 201
        else:
            status = 400
    context = {
        "form": form,
        "secret": secret,
        "tokens": Token.objects.filter(user=request.user).order_by("-created_at")[:200],
        "now": timezone.now(),
    }
    return render(request, "chat/tokens.html", context, status=status)


def _pk(raw: str | None) -> int | None:
    return int(raw) if raw and raw.isascii() and raw.isdigit() and len(raw) < 19 else None


# Bot accounts named to the room page for the "bot" badge (chat/static/chat/ui/bots.js).
# Bots are flagged one by one by staff, so they are few; the bound keeps a page small
# should someone flag thousands.
MAX_BOT_NAMES = 500


def bot_names(request: HttpRequest) -> dict:
    """Context processor: ``parley_bots``, the usernames of bot accounts, read only by a
    template that uses it (base.html, on the room page)."""

    def names() -> list[str]:
        rows = Profile.objects.filter(is_bot=True, user__is_active=True)
        return list(
            rows.order_by("user_id").values_list("user__username", flat=True)[:MAX_BOT_NAMES]
        )

    # A callable: the template calls it, so pages that do not show it make no query.
    return {"parley_bots": names}
