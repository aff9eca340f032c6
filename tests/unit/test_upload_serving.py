"""Attachments served (``/uploads/<id>/<name>``, ``/uploads/<id>/thumb/``) and removed
(PROTOCOL.md "Attachments"): who gets them, their headers, conditional and Range
requests, a deleted message's files, and the removal of uploads never attached."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from upload_files import HTML, image_bytes

from chat.models import Upload
from chat.uploads import remove_unattached

pytestmark = pytest.mark.django_db

TEXT = b"0123456789" * 100  # 1000 bytes


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def as_alice(lobby, alice):
    return signed_in(alice)


def post_file(client, data: bytes, name: str, slug: str = "lobby") -> dict:
    file = SimpleUploadedFile(name, data)
    response = client.post(f"/api/rooms/{slug}/uploads/", {"file": file})
    assert response.status_code == 201, response.content
    return response.json()["upload"]


def attach(client, uploads: list[dict], slug: str = "lobby") -> int:
    body = {"body": "see", "attachments": [u["id"] for u in uploads]}
    response = client.post(
        f"/api/rooms/{slug}/messages/", json.dumps(body), content_type="application/json"
    )
    assert response.status_code == 201, response.content
    return response.json()["seq"]


@pytest.fixture
def text_file(as_alice) -> dict:
    upload = post_file(as_alice, TEXT, "digits.txt")
    attach(as_alice, [upload])
    return upload


def content(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def assert_secured(response) -> None:
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Security-Policy"] == "sandbox"
    assert response["Cache-Control"] == "private, no-cache"
    assert response["Cross-Origin-Resource-Policy"] == "same-origin"


# -- who gets a file ------------------------------------------------------------------------


def test_a_reader_gets_the_file_with_its_headers(client, text_file):
    response = client.get(text_file["url"])  # anonymous reads a public room
    assert response.status_code == 200
    assert content(response) == TEXT
    assert_secured(response)
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="digits.txt"'
    assert response["Content-Length"] == "1000" and response["Accept-Ranges"] == "bytes"
    assert response["ETag"] and response["Last-Modified"]


@pytest.mark.parametrize(
    ("data", "name", "disposition"),
    [
        (image_bytes("PNG"), "a.png", "inline"),
        (image_bytes("JPEG"), "a.jpg", "inline"),
        (image_bytes("GIF"), "a.gif", "inline"),
        (image_bytes("WEBP"), "a.webp", "inline"),
        (HTML, "page.html", "attachment"),
        (HTML, "fake.png", "attachment"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"/>', "x.svg", "attachment"),
    ],
)
def test_only_raster_images_are_inline(as_alice, data, name, disposition):
    upload = post_file(as_alice, data, name)
    attach(as_alice, [upload])
    response = as_alice.get(upload["url"])
    assert response["Content-Disposition"].split(";")[0] == disposition
    assert response["Content-Type"] != "text/html"
    assert_secured(response)


def test_the_thumbnail_is_served_beside_the_file(client, as_alice):
    upload = post_file(as_alice, image_bytes("PNG", (900, 900)), "big.png")
    attach(as_alice, [upload])
    response = client.get(upload["thumbnail_url"])
    assert response.status_code == 200 and response["Content-Type"] == "image/webp"
    assert content(response)[:4] == b"RIFF"
    assert_secured(response)
    text = post_file(as_alice, b"no picture\n", "thumb")  # a file named "thumb"
    attach(as_alice, [text])
    assert content(client.get(text["url"])) == b"no picture\n"
    assert client.get(f"/uploads/{text['id']}/thumb/").status_code == 404


def test_a_private_room_s_files_are_for_its_readers_only(alice, bob, secret, client):
    as_alice = signed_in(alice)
    upload = post_file(as_alice, TEXT, "s.txt", slug="secret")
    attach(as_alice, [upload], slug="secret")
    assert as_alice.get(upload["url"]).status_code == 200
    for other in (client, signed_in(bob)):  # anonymous, a non-member
        response = other.get(upload["url"])
        assert response.status_code == 404
        assert_secured(response)
        assert other.get(upload["url"].rsplit("/", 1)[0] + "/other-name").status_code == 404
    secret.members.remove(alice)  # losing access loses the files
    assert as_alice.get(upload["url"]).status_code == 404


def test_an_unattached_upload_is_only_for_its_uploader(as_alice, bob, client):
    upload = post_file(as_alice, TEXT, "draft.txt")
    assert as_alice.get(upload["url"]).status_code == 200
    assert signed_in(bob).get(upload["url"]).status_code == 404
    assert client.get(upload["url"]).status_code == 404


def test_a_deleted_message_s_files_are_no_longer_served(as_alice, client):
    image = post_file(as_alice, image_bytes(), "a.png")
    seq = attach(as_alice, [image])
    assert client.get(image["url"]).status_code == 200
    assert as_alice.delete(f"/api/rooms/lobby/messages/{seq}/").status_code == 200
    assert client.get(image["url"]).status_code == 404
    assert client.get(image["thumbnail_url"]).status_code == 404
    assert as_alice.get(image["url"]).status_code == 404  # nor to its uploader


@pytest.mark.parametrize(
    "path", ["/uploads/nope/x", "/uploads/AAAAAAAAAAAAAAAAAAAAAA/x", "/uploads/%00/x"]
)
def test_unknown_ids_are_404(as_alice, path):
    assert as_alice.get(path).status_code == 404


def test_other_methods_are_405(as_alice, text_file):
    response = as_alice.post(text_file["url"])
    assert response.status_code == 405 and response["Allow"] == "GET, HEAD"


def test_head_has_the_headers_and_no_body(client, text_file):
    response = client.head(text_file["url"])
    assert response.status_code == 200 and response["Content-Length"] == "1000"
    assert content(response) == b""


# -- conditional and Range requests ------------------------------------------------------------


def test_a_matching_etag_or_date_is_304(client, text_file):
    first = client.get(text_file["url"])
    again = client.get(text_file["url"], HTTP_IF_NONE_MATCH=first["ETag"])
    assert again.status_code == 304 and again["ETag"] == first["ETag"]
    assert_secured(again)
    since = client.get(text_file["url"], HTTP_IF_MODIFIED_SINCE=first["Last-Modified"])
    assert since.status_code == 304
    other = client.get(text_file["url"], HTTP_IF_NONE_MATCH='"something-else"')
    assert other.status_code == 200


@pytest.mark.parametrize(
    ("header", "status", "body", "content_range"),
    [
        ("bytes=0-9", 206, TEXT[:10], "bytes 0-9/1000"),
        ("bytes=990-", 206, TEXT[990:], "bytes 990-999/1000"),
        ("bytes=-5", 206, TEXT[-5:], "bytes 995-999/1000"),
        ("bytes=995-5000", 206, TEXT[995:], "bytes 995-999/1000"),
        ("bytes=1000-", 416, b"", "bytes */1000"),
        ("bytes=-0", 416, b"", "bytes */1000"),
        ("bytes=5-1", 200, TEXT, None),  # invalid: ignored
        ("bytes=0-1,5-6", 200, TEXT, None),  # several: the whole file
        ("items=0-1", 200, TEXT, None),
    ],
)
def test_range_requests(client, text_file, header, status, body, content_range):
    response = client.get(text_file["url"], HTTP_RANGE=header)
    assert response.status_code == status
    assert content(response) == body
    assert response.get("Content-Range") == content_range
    assert_secured(response)


def test_if_range_with_another_etag_gets_the_whole_file(client, text_file):
    etag = client.get(text_file["url"])["ETag"]
    same = client.get(text_file["url"], HTTP_RANGE="bytes=0-1", HTTP_IF_RANGE=etag)
    assert same.status_code == 206
    stale = client.get(text_file["url"], HTTP_RANGE="bytes=0-1", HTTP_IF_RANGE='"old"')
    assert stale.status_code == 200 and content(stale) == TEXT


# -- removal of uploads never attached ---------------------------------------------------------


def test_unattached_uploads_are_removed_after_24_h_with_their_files(
    as_alice, media, django_capture_on_commit_callbacks
):
    old = post_file(as_alice, image_bytes(), "old.png")
    fresh = post_file(as_alice, TEXT, "fresh.txt")
    kept = post_file(as_alice, TEXT, "kept.txt")
    attach(as_alice, [kept])
    day_ago = timezone.now() - timedelta(hours=25)
    Upload.objects.filter(pk__in=[old["id"], kept["id"]]).update(created_at=day_ago)
    files_before = {p.name for p in media.rglob("*") if p.is_file()}
    assert {old["id"], f"{old['id']}.thumb"} <= files_before

    with django_capture_on_commit_callbacks(execute=True):  # files go after the commit
        assert remove_unattached() == 1
    assert set(Upload.objects.values_list("id", flat=True)) == {fresh["id"], kept["id"]}
    files_after = {p.name for p in media.rglob("*") if p.is_file()}
    assert files_after == files_before - {old["id"], f"{old['id']}.thumb"}
    assert remove_unattached() == 0


def test_a_room_deleted_takes_its_files_along(
    as_alice, lobby, media, django_capture_on_commit_callbacks
):
    attach(as_alice, [post_file(as_alice, image_bytes(), "a.png")])
    assert any(p.is_file() for p in media.rglob("*"))
    with django_capture_on_commit_callbacks(execute=True):
        lobby.delete()
    assert not any(p.is_file() for p in media.rglob("*"))


def test_the_command_removes_them_too(as_alice, capsys):
    post_file(as_alice, TEXT, "a.txt")
    call_command("parley_clean_uploads", "--hours", "1")
    assert Upload.objects.count() == 1
    call_command("parley_clean_uploads", "--hours", "0")
    assert Upload.objects.count() == 0
    assert "1 unattached upload(s) removed" in capsys.readouterr().out


# -- the admin -------------------------------------------------------------------------------


def test_the_admin_lists_filters_searches_and_deletes_with_the_files(
    admin_client, as_alice, media, plain_static_storage, django_capture_on_commit_callbacks
):
    kept = post_file(as_alice, TEXT, "report.txt")
    attach(as_alice, [kept])
    loose = post_file(as_alice, image_bytes(), "loose.png")
    page = admin_client.get("/admin/chat/upload/")
    assert page.status_code == 200 and b"report.txt" in page.content
    for query, shown, hidden in [
        ("?attached=no", b"loose.png", b"report.txt"),
        ("?attached=yes", b"report.txt", b"loose.png"),
        (f"?q={loose['id']}", b"loose.png", b"report.txt"),
        ("?q=rep", b"report.txt", b"loose.png"),
        ("?room=lobby&user=alice", b"report.txt", b""),
    ]:
        page = admin_client.get(f"/admin/chat/upload/{query}")
        assert page.status_code == 200 and shown in page.content, query
        assert not hidden or hidden not in page.content, query
    assert admin_client.get("/admin/chat/upload/?room=nowhere").status_code == 200
    with django_capture_on_commit_callbacks(execute=True):  # files go after the commit
        response = admin_client.post(
            "/admin/chat/upload/",
            {"action": "delete_selected", "_selected_action": [loose["id"]], "post": "yes"},
        )
    assert response.status_code == 302
    assert not Upload.objects.filter(pk=loose["id"]).exists()
    assert loose["id"] not in {p.name for p in media.rglob("*")}


# -- settings ------------------------------------------------------------------------------


def settings_output(**env) -> subprocess.CompletedProcess:
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.CHAT_MAX_UPLOAD_BYTES, s.MEDIA_ROOT, s.CHAT_UPLOAD_CLEANUP_SECONDS)"
    )
    environ = {**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings", **env}
    return subprocess.run(
        [sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=60
    )


def test_upload_settings_come_from_the_environment(tmp_path):
    done = settings_output(CHAT_MAX_UPLOAD_BYTES="2048", MEDIA_ROOT=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-3:] == ["2048", str(tmp_path), "3600"]
    for bad in ("ten", "0", "-5"):
        done = settings_output(CHAT_MAX_UPLOAD_BYTES=bad)
        assert done.returncode != 0 and "CHAT_MAX_UPLOAD_BYTES" in done.stderr
