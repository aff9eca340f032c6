"""A database outage or a full disk is 503 ``unavailable`` on every Django door, never
Django's HTML 500 page, and keeps nothing half-written (chat/outages.py, chat/uploads.py).

The chaos run (bench/chaos.py) restarts a real PostgreSQL and fills a real filesystem;
these tests make the same errors come out of the same calls, so that each door is
checked on every run of the suite.
"""

from __future__ import annotations

import errno
import os

import pytest
from django.core.files.storage import FileSystemStorage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import InterfaceError, OperationalError
from django.test import Client

from chat import room_objects, tokens
from chat.models import Upload

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


def down(*_args, **_kwargs):
    raise OperationalError("connection to server at 127.0.0.1 failed: Connection refused")


def assert_unavailable(response) -> None:
    assert response.status_code == 503, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["error"]["code"] == "unavailable"
    assert int(response["Retry-After"]) >= 1


def test_a_token_request_while_the_database_is_down(alice, lobby, monkeypatch):
    _token, secret = tokens.make(alice, "script")
    monkeypatch.setattr(tokens, "_by_digest", down)
    client = Client(raise_request_exception=False)
    response = client.get("/api/rooms/", headers={"Authorization": f"Bearer {secret}"})
    assert_unavailable(response)


@pytest.fixture
def rooms_read(monkeypatch):
    """Make the room list's read fail with ``error`` (the page's and the API's)."""

    def make(error: BaseException) -> None:
        def fail(*_args, **_kwargs):
            raise error

        monkeypatch.setattr(room_objects, "visible", fail)
        monkeypatch.setattr(room_objects, "member_rooms", fail)

    return make


@pytest.mark.parametrize("error", [OperationalError, InterfaceError], ids=["operational", "if"])
def test_an_api_view_while_the_database_is_down(alice, lobby, rooms_read, error):
    rooms_read(error("server closed the connection unexpectedly"))
    client = Client(raise_request_exception=False)
    client.force_login(alice)
    assert_unavailable(client.get("/api/rooms/"))


def test_a_page_while_the_database_is_down_is_a_503_page(alice, lobby, rooms_read, settings):
    settings.DEBUG = False
    rooms_read(OperationalError("the database system is starting up"))
    client = Client(raise_request_exception=False)
    client.force_login(alice)
    response = client.get("/")
    assert response.status_code == 503
    assert b"unavailable" in response.content.lower()


def test_any_other_error_stays_a_500(alice, lobby, rooms_read, settings):
    settings.DEBUG = False
    rooms_read(ZeroDivisionError("a bug, not an outage"))
    client = Client(raise_request_exception=False)
    client.force_login(alice)
    assert client.get("/").status_code == 500
    assert client.get("/api/rooms/").status_code == 500


def test_an_upload_to_a_full_disk_keeps_nothing(alice, lobby, media, monkeypatch):
    real_save = FileSystemStorage._save

    def full(self, name, content):
        # What the kernel does: some bytes land, then ENOSPC.
        path = self.path(name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as partial:
            partial.write(content.read(10))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(FileSystemStorage, "_save", full)
    client = Client(raise_request_exception=False)
    client.force_login(alice)
    file = SimpleUploadedFile("notes.txt", b"hello world, " * 100, content_type="text/plain")
    response = client.post("/api/rooms/lobby/uploads/", {"file": file})
    assert_unavailable(response)
    assert not Upload.objects.exists()
    assert not [p for p in media.rglob("*") if p.is_file()]
    # Once there is room again, the same upload is stored.
    monkeypatch.setattr(FileSystemStorage, "_save", real_save)
    file = SimpleUploadedFile("notes.txt", b"hello world, " * 100, content_type="text/plain")
    response = client.post("/api/rooms/lobby/uploads/", {"file": file})
    assert response.status_code == 201, response.content
    assert Upload.objects.count() == 1
