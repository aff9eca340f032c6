"""``/api/openapi.json`` (chat/api/openapi.py) against chat/urls.py: every /api/ URL is
described and nothing else is; each path's methods are the ones its view answers (any
other is 405 with that Allow); the document is served as built and loads in
schemathesis. The answers themselves are checked against it by
tests/integration/test_openapi_schemathesis.py."""

from __future__ import annotations

import re

import pytest
import schemathesis
from django.urls import URLPattern, URLResolver, get_resolver

from chat.api.openapi import description

pytestmark = pytest.mark.django_db
METHODS = ("get", "post", "put", "patch", "delete")


def api_routes() -> set[str]:
    """Every /api/ route of the URLconf, as an OpenAPI path template."""
    found: set[str] = set()

    def walk(patterns, prefix: str) -> None:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern) and route.startswith("api/"):
                if pattern.name == "api_not_found":  # the JSON 404 of every other path
                    continue
                found.add("/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route))

    walk(get_resolver().url_patterns, "")
    return found


def test_every_api_url_is_described_and_nothing_else():
    assert api_routes() == set(description()["paths"])


def concrete(path: str) -> str:
    return path.replace("{slug}", "lobby").replace("{seq}", "1")


@pytest.mark.parametrize("path", sorted(description()["paths"]))
def test_each_path_answers_its_described_methods_and_405s_the_rest(client, lobby, path):
    described = {m.upper() for m in description()["paths"][path] if m in METHODS}
    for method in METHODS:
        response = getattr(client, method)(concrete(path))
        if method.upper() in described:
            assert response.status_code != 405, (method, path)
            continue
        assert response.status_code == 405, (method, path, response.status_code)
        assert response.json()["error"]["code"] == "bad_request"
        allowed = {m.strip() for m in response["Allow"].split(",")} - {"HEAD"}
        assert allowed == described, (path, response["Allow"])


def test_unknown_api_paths_are_json_404s(client):
    for path in ("/api/nothing/", "/api/rooms/Not_A_Slug!/", "/api/rooms/a/b/c/d/e/"):
        for method in ("get", "post", "delete"):
            response = getattr(client, method)(path)
            assert response.status_code == 404, (method, path)
            assert response.json()["error"]["code"] == "not_found"


def test_the_served_document_is_the_description_and_loads(client):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == description()
    assert response.json()["openapi"].startswith("3.1")
    schema = schemathesis.openapi.from_dict(response.json())
    operations = [op for op in schema.get_all_operations()]
    assert len(operations) == sum(
        1 for item in description()["paths"].values() for m in item if m in METHODS
    )


def test_every_error_status_has_the_error_shape():
    doc = description()
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            assert operation["security"], (path, method)
            for status, answer in operation["responses"].items():
                if status.startswith("4") or status.startswith("5"):
                    assert answer == {"$ref": f"#/components/responses/{status}"}
                    assert status in doc["components"]["responses"]


WRITES = [
    ("post", "/api/rooms/lobby/messages/"),
    ("patch", "/api/rooms/lobby/messages/1/"),
    ("post", "/api/rooms/lobby/messages/1/reactions/"),
    ("post", "/api/rooms/lobby/read/"),
    ("post", "/api/rooms/lobby/moderation/"),
    ("post", "/api/dms/"),
]
WRONG_SHAPES = [
    "[]",
    '"text"',
    "42",
    "null",
    "true",
    '{"body": 5, "emoji": [], "seq": "1", "user": {}, "action": 3}',
    '{"body": null, "emoji": null, "seq": null, "user": null, "action": null}',
    '{"body": ["x"], "client_id": 7, "reply_to": "x", "op": "twist", "seconds": -1}',
    "not json",
    "",
]


@pytest.mark.parametrize("method, path", WRITES)
@pytest.mark.parametrize("body", WRONG_SHAPES)
def test_a_json_body_of_the_wrong_shape_is_a_400(admin_client, lobby, method, path, body):
    response = getattr(admin_client, method)(path, body, content_type="application/json")
    assert response.status_code == 400, (method, path, body, response.content[:300])
    assert response.json()["error"]["code"] == "bad_request"
