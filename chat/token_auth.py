"""Token requests on the Django side, and bots' refused password logins.

``TokenAuthenticationMiddleware`` (after Django's AuthenticationMiddleware): a request
with ``Authorization: Bearer <secret>`` is that token's user for this request only. It
gets no session and no cookie: ``request.session`` is an empty one that is never saved,
so nothing the view does (a message, a CSRF token) outlives the request or reaches the
browser's cookie jar. A bad, revoked or expired token is a 401 with the protocol's
``unauthorized`` error on every path, pages and admin included: a script that sent a
token wants to know it failed, not to be handed a login page as anonymous.

A token request skips the CSRF check (``_dont_enforce_csrf_checks``, the flag Django's
CsrfViewMiddleware and the API's own check, chat/api/http.py, both honour): CSRF is a
browser riding on its cookie, and a cross-site page cannot set ``Authorization`` (that
needs a CORS preflight Parley never answers). A request with the session cookie still
needs its CSRF token. A token in the query string is never read (chat/tokens.py).

``BotPasswordRefusal`` (an authentication backend before ModelBackend): bots sign in with
tokens only, so a bot's username and password are refused on every login form (the site's
and the admin's). Raising PermissionDenied stops Django from asking the later backends.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.base import SessionBase
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, JsonResponse

from chat import outages, tokens
from chat.live.records import ErrorCode, error_body


class _RequestOnlySession(SessionBase):
    """A session that lives and dies with one request: never loaded, never saved."""

    def load(self) -> dict:
        return {}

    def exists(self, session_key: str) -> bool:
        return False

    def create(self) -> None:
        pass

    def save(self, must_create: bool = False) -> None:
        pass

    def delete(self, session_key: str | None = None) -> None:
        pass

    def is_empty(self) -> bool:
        return True  # SessionMiddleware sets no cookie for an empty session

    @classmethod
    def clear_expired(cls) -> None:
        pass


def unauthorized(detail: str | None = None) -> JsonResponse:
    response = JsonResponse(error_body(ErrorCode.UNAUTHORIZED, detail), status=401)
    response["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    response["Cache-Control"] = "no-store"
    return response


class TokenAuthenticationMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        secret = tokens.bearer_secret(request.META.get("HTTP_AUTHORIZATION"))
        if secret is None:
            return self.get_response(request)
        try:
            token = tokens.check(secret)
        except outages.OUTAGES:
            return outages.answer()
        if token is None:
            return unauthorized()
        request.user = token.user
        request.parley_token = token
        request.session = _RequestOnlySession()
        # The browser's session cookie, if one came along, is neither used nor deleted.
        request.COOKIES.pop(settings.SESSION_COOKIE_NAME, None)
        request._dont_enforce_csrf_checks = True
        response = self.get_response(request)
        # A page rendered for a token request set no CSRF cookie either.
        request.META["CSRF_COOKIE_NEEDS_UPDATE"] = False
        return response


class BotPasswordRefusal:
    """Refuses the password login of a bot account; answers nothing for anyone else. It
    has no ``get_user``: it signs nobody in, so no session names it (and Django's
    ``force_login`` skips backends without one)."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is None:
            username = kwargs.get(get_user_model().USERNAME_FIELD)
        if username is None:
            return None
        model = get_user_model()
        try:  # the lookup ModelBackend makes
            user = model._default_manager.get_by_natural_key(username)
        except model.DoesNotExist:
            return None
        if tokens.is_bot(user):
            raise PermissionDenied("bots sign in with tokens only")
        return None
