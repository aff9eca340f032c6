"""Django middleware of the project (the chat app's own lives in chat/)."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_cache_control


class PrivatePagesMiddleware:
    """HTML pages without a Cache-Control of their own are ``private``.

    Parley's pages show the signed-in user's rooms, names and unread counts; with no
    Cache-Control a shared cache (a corporate proxy, a CDN) may keep one user's page and
    hand it to the next. A page that carries a CSRF token is also ``no-cache``: the
    browser must not show a stale copy whose token no longer matches the cookie. Views
    that set Cache-Control themselves (the admin's never_cache, for one) are left alone.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.has_header("Cache-Control"):
            return response
        if not response.get("Content-Type", "").lower().startswith("text/html"):
            return response
        if csrf_token_used(request, response):
            patch_cache_control(response, private=True, no_cache=True)
        else:
            patch_cache_control(response, private=True)
        return response


def csrf_token_used(request: HttpRequest, response: HttpResponse) -> bool:
    """Whether the page was rendered with a CSRF token (``get_token()`` was called).

    Seen from inside CsrfViewMiddleware by the flag get_token() sets, from outside it by
    the cookie it then sets: either position in MIDDLEWARE gives the right answer.
    """
    return bool(request.META.get("CSRF_COOKIE_NEEDS_UPDATE")) or (
        settings.CSRF_COOKIE_NAME in response.cookies
    )
