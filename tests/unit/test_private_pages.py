"""project.middleware.PrivatePagesMiddleware through Django's whole middleware stack."""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings
from django.http import HttpResponse, JsonResponse
from django.test import RequestFactory

from project.middleware import PrivatePagesMiddleware

pytestmark = pytest.mark.django_db

MIDDLEWARE = "project.middleware.PrivatePagesMiddleware"


@pytest.fixture(autouse=True)
def plain_static_storage(settings):
    # The manifest storage of DEBUG=0 needs collectstatic; these tests only need URLs.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


def directives(response) -> set[str]:
    return {d.strip() for d in response.get("Cache-Control", "").split(",") if d.strip()}


def test_it_is_installed_inside_the_csrf_middleware():
    stack = django_settings.MIDDLEWARE
    assert MIDDLEWARE in stack
    assert stack.index(MIDDLEWARE) > stack.index("django.middleware.csrf.CsrfViewMiddleware")


def test_a_page_with_a_csrf_token_is_private_and_no_cache(client):
    response = client.get("/accounts/login/")
    assert b"csrfmiddlewaretoken" in response.content
    assert {"private", "no-cache"} <= directives(response)


def test_a_page_without_a_token_is_private(client):
    response = client.get("/")
    assert response["Content-Type"].startswith("text/html")
    assert "private" in directives(response)


def test_outside_the_csrf_middleware_the_token_is_still_seen(client, settings):
    stack = [m for m in settings.MIDDLEWARE if m != MIDDLEWARE]
    settings.MIDDLEWARE = [MIDDLEWARE, *stack]
    assert {"private", "no-cache"} <= directives(client.get("/accounts/login/"))


def test_a_cache_control_of_the_views_own_is_kept(client):
    response = client.get("/admin/login/")  # never_cache
    assert "no-store" in directives(response)


def run(response: HttpResponse) -> HttpResponse:
    return PrivatePagesMiddleware(lambda request: response)(RequestFactory().get("/"))


def test_only_html_is_touched():
    assert "Cache-Control" not in run(JsonResponse({"a": 1}))
    assert "Cache-Control" not in run(HttpResponse(b"x", content_type="text/plain"))
    page = HttpResponse(b"<p>", content_type="text/html; charset=utf-8")
    page["Cache-Control"] = "public, max-age=60"
    assert run(page)["Cache-Control"] == "public, max-age=60"
    assert directives(run(HttpResponse(b"<p>"))) == {"private"}
