"""Attachments, the upload API and attaching (PROTOCOL.md "Attachments"): what is stored,
what type it gets, hostile names and files, who may upload, and the claims a send makes.

Serving and the cleanup are in test_upload_serving.py. Files go to a temporary
MEDIA_ROOT through the real FileSystemStorage; images are made by Pillow.
"""

from __future__ import annotations

import io
import json
import os

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from PIL import Image
from upload_files import HTML, PDF, PNG_MAGIC_HTML, SVG, image_bytes, png_claiming

from chat import log
from chat.live.events import OutboundEvent
from chat.live.records import SendRequest
from chat.live.ring import Ring
from chat.models import Message, Upload
from chat.uploads import clean_name
from project.request import UPLOAD_OVERHEAD_BYTES, body_limit

pytestmark = pytest.mark.django_db

UPLOAD = "/api/rooms/{}/uploads/"
SEND = "/api/rooms/{}/messages/"


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


@pytest.fixture
def as_alice(lobby, alice):
    client = Client()
    client.force_login(alice)
    return client


@pytest.fixture
def as_bob(lobby, bob):
    client = Client()
    client.force_login(bob)
    return client


def upload(client, data: bytes, name: str = "f.bin", slug: str = "lobby"):
    file = SimpleUploadedFile(name, data, content_type="image/png")  # the claim is ignored
    return client.post(UPLOAD.format(slug), {"file": file})


def uploaded(client, data: bytes, name: str = "f.bin", slug: str = "lobby") -> dict:
    response = upload(client, data, name, slug)
    assert response.status_code == 201, response.content
    return response.json()["upload"]


def send(client, slug="lobby", **fields):
    return client.post(SEND.format(slug), json.dumps(fields), content_type="application/json")


def stored_files(media) -> list[str]:
    return sorted(p.name for p in media.rglob("*") if p.is_file())


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    assert response.json()["error"]["code"] == code


# -- the upload API ---------------------------------------------------------------------


def test_an_image_is_stored_measured_and_thumbnailed(as_alice, media):
    body = uploaded(as_alice, image_bytes("PNG", (1200, 300)), "cat.png")
    assert set(body) == {
        *("id", "name", "size", "content_type", "url", "width", "height", "thumbnail_url")
    }
    assert body["content_type"] == "image/png" and body["name"] == "cat.png"
    assert (body["width"], body["height"]) == (1200, 300)
    assert body["url"] == f"/uploads/{body['id']}/cat.png"
    assert body["thumbnail_url"] == f"/uploads/{body['id']}/thumb/"
    assert len(body["id"]) >= 22  # 128 random bits
    row = Upload.objects.get(pk=body["id"])
    assert row.message is None and row.size == body["size"]
    # Stored under the id alone; the thumbnail is WebP, at most 400 px on the long side.
    assert row.file.name == f"uploads/{body['id'][:2]}/{body['id']}"
    with Image.open(row.thumbnail.path) as thumb:
        assert thumb.format == "WEBP" and thumb.size == (400, 100)


@pytest.mark.parametrize(
    ("data", "name", "expected"),
    [
        (image_bytes("JPEG"), "photo.png", "image/jpeg"),  # the content, not the name
        (image_bytes("GIF"), "a.gif", "image/gif"),
        (image_bytes("WEBP"), "a.webp", "image/webp"),
        (PDF, "doc.png", "application/pdf"),
        ("héllo wörld\n".encode(), "notes.exe", "text/plain"),
        (HTML, "page.html", "text/plain"),  # text, never text/html
        (HTML, "cat.png", "text/plain"),  # a "PNG" that is HTML
        (PNG_MAGIC_HTML, "cat.png", "application/octet-stream"),  # PNG magic, not a PNG
        (SVG, "logo.svg", "text/plain"),
        (b"\xff\xfe\x00bin\x00ary", "x.txt", "application/octet-stream"),
        (b"caf\xe9", "latin1.txt", "application/octet-stream"),  # not UTF-8
    ],
)
def test_the_content_type_comes_from_the_content(as_alice, data, name, expected):
    body = uploaded(as_alice, data, name)
    assert body["content_type"] == expected
    if not expected.startswith("image/"):
        assert body["width"] is None and body["thumbnail_url"] is None


def test_a_truncated_image_is_bytes_not_an_image(as_alice):
    body = uploaded(as_alice, image_bytes("PNG")[:200], "broken.png")
    assert body["content_type"] == "application/octet-stream"
    assert body["thumbnail_url"] is None


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\system32\\cmd.exe", "cmd.exe"),
        ("C:\\Users\\a\\report.pdf", "report.pdf"),
        ("..", "file"),
        ("", "file"),
        ("   ", "file"),
        (".bashrc", "bashrc"),
        ("a\x00b\x1f\x7fc.txt", "abc.txt"),
        ("invoice\u202egpj.exe", "invoicegpj.exe"),  # no bidi override
        ("name. . .", "name"),
        ("cafe\u0301.txt", "café.txt"),  # NFC
    ],
)
def test_hostile_names_are_cleaned(raw, clean):
    assert clean_name(raw) == clean


def test_a_5_kb_name_is_cut_keeping_its_extension(as_alice):
    body = uploaded(as_alice, b"text\n", "x" * 5000 + ".txt")
    assert len(body["name"]) == 255 and body["name"].endswith("xx.txt")
    assert clean_name("y" * 5000) == "y" * 255
    assert clean_name("z." + "e" * 5000) == ("z." + "e" * 5000)[:255]  # a "long extension"


def test_the_stored_path_never_uses_the_name(as_alice, media):
    body = uploaded(as_alice, b"root:x:0:0\n", "../../../../etc/passwd")
    assert body["name"] == "passwd"
    assert stored_files(media) == [body["id"]]
    assert not os.path.exists(media.parent / "etc")


def test_an_oversized_file_is_413_before_it_is_read_and_nothing_is_stored(
    as_alice, settings, media
):
    settings.CHAT_MAX_UPLOAD_BYTES = 1000
    response = upload(as_alice, b"x" * 1001, "big.txt")
    assert_error(response, 413, "too_large")
    # Declared far over the limit: refused from the length, the body never parsed.
    response = as_alice.generic(
        "POST",
        UPLOAD.format("lobby"),
        b"",
        content_type="multipart/form-data; boundary=x",
        CONTENT_LENGTH=str(100 * 1024 * 1024),
    )
    assert_error(response, 413, "too_large")
    assert Upload.objects.count() == 0 and stored_files(media) == []


def test_a_decompression_bomb_is_400_and_nothing_is_stored(as_alice, media):
    response = upload(as_alice, png_claiming(40_000, 25_000), "bomb.png")  # 10^9 pixels
    assert_error(response, 400, "bad_request")
    assert "pixels" in response.json()["error"]["detail"]
    assert Upload.objects.count() == 0 and stored_files(media) == []


def test_the_bomb_limit_is_pillows_own(as_alice, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100 * 100)
    assert_error(upload(as_alice, image_bytes("PNG", (101, 100)), "a.png"), 400, "bad_request")
    assert uploaded(as_alice, image_bytes("PNG", (100, 100)), "b.png")["width"] == 100


@pytest.mark.parametrize(
    "fields",
    [{}, {"other": "x"}],
)
def test_a_form_without_one_file_is_400(as_alice, fields):
    assert_error(as_alice.post(UPLOAD.format("lobby"), fields), 400, "bad_request")


def test_two_files_and_an_empty_file_are_400(as_alice):
    files = [SimpleUploadedFile("a", b"1"), SimpleUploadedFile("b", b"2")]
    assert_error(as_alice.post(UPLOAD.format("lobby"), {"file": files}), 400, "bad_request")
    assert_error(upload(as_alice, b"", "empty.txt"), 400, "bad_request")
    assert Upload.objects.count() == 0


def test_json_or_a_broken_multipart_body_is_400_not_500(as_alice):
    response = as_alice.post(UPLOAD.format("lobby"), "{}", content_type="application/json")
    assert_error(response, 400, "bad_request")
    response = as_alice.generic(
        "POST", UPLOAD.format("lobby"), b"garbage", content_type="multipart/form-data"
    )
    assert_error(response, 400, "bad_request")


def test_who_may_upload(client, as_bob, bob, secret, attic, media):
    data = image_bytes()
    assert_error(upload(client, data), 403, "forbidden")  # anonymous
    assert_error(upload(as_bob, data, slug="secret"), 403, "forbidden")  # not a member
    secret.members.add(bob)
    attic.members.add(bob)
    assert_error(upload(as_bob, data, slug="attic"), 403, "forbidden")  # archived
    assert_error(upload(as_bob, data, slug="nowhere"), 404, "not_found")
    assert Upload.objects.count() == 0 and stored_files(media) == []
    assert uploaded(as_bob, data, slug="secret")["content_type"] == "image/png"


def test_get_is_405(as_alice):
    response = as_alice.get(UPLOAD.format("lobby"))
    assert response.status_code == 405 and response["Allow"] == "POST"


def test_a_csrf_token_is_needed(lobby, alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert_error(upload(client, image_bytes()), 403, "forbidden")
    assert Upload.objects.count() == 0


# -- attaching ----------------------------------------------------------------------------


def test_a_send_attaches_its_uploads_and_history_shows_them(as_alice, media):
    a = uploaded(as_alice, image_bytes(), "a.png")
    b = uploaded(as_alice, b"notes\n", "b.txt")
    response = send(as_alice, body="look", client_id="c1", attachments=[b["id"], a["id"]])
    assert response.status_code == 201, response.content
    event = response.json()["event"]
    assert event["attachments"] == [a, b]  # in upload order, as history reads them
    message = Message.objects.get(seq=event["seq"])
    assert set(message.uploads.values_list("id", flat=True)) == {a["id"], b["id"]}
    page = as_alice.get(SEND.format("lobby")).json()["events"]
    assert page[-1]["attachments"] == [a, b]
    one = as_alice.get(f"{SEND.format('lobby')}{event['seq']}/").json()["event"]
    assert one == event | {"reactions": []}


def test_a_send_with_files_may_have_no_text(as_alice):
    a = uploaded(as_alice, image_bytes(), "a.png")
    response = send(as_alice, attachments=[a["id"]])
    assert response.status_code == 201, response.content
    assert response.json()["event"]["body"] == ""
    b = uploaded(as_alice, image_bytes(), "b.png")
    assert send(as_alice, body="  ", attachments=[b["id"]]).status_code == 201
    assert_error(send(as_alice, body=""), 400, "bad_request")  # no files: text is needed


def refused(client, **fields) -> None:
    before = Message.objects.count()
    assert_error(send(client, **fields), 400, "bad_request")
    assert Message.objects.count() == before


def test_an_upload_may_be_attached_once_by_its_uploader_in_its_room(
    as_alice, as_bob, bob, secret, media
):
    secret.members.add(bob)
    mine = uploaded(as_alice, image_bytes())
    elsewhere = uploaded(as_alice, image_bytes(), slug="secret")
    refused(as_bob, body="x", attachments=[mine["id"]])  # another user's
    refused(as_alice, body="x", attachments=[elsewhere["id"]])  # another room's
    refused(as_alice, body="x", attachments=[mine["id"], "A" * 22])  # unknown: nothing taken
    assert Upload.objects.get(pk=mine["id"]).message is None
    assert send(as_alice, body="x", client_id="one", attachments=[mine["id"]]).status_code == 201
    refused(as_alice, body="again", attachments=[mine["id"]])  # attached already
    # An idempotent resend is answered with the original seq, not refused.
    resend = send(as_alice, body="x", client_id="one", attachments=[mine["id"]])
    assert resend.status_code == 200 and resend.json()["event"]["attachments"][0] == mine


@pytest.mark.parametrize(
    "attachments",
    [
        "abc",
        {"id": "abc"},
        [1],
        [None],
        [["abc"]],
        ["../../x"],
        ["a" * 33],
        [""],
        ["\ud800"],
        ["dup", "dup"],
        [f"id{i}" for i in range(11)],  # 11: over the 10 a send may carry
    ],
)
def test_garbage_attachments_are_400(as_alice, attachments):
    refused(as_alice, body="x", attachments=attachments)


def test_ten_attachments_are_fine(as_alice):
    ids = [uploaded(as_alice, f"{i}\n".encode(), f"{i}.txt")["id"] for i in range(10)]
    response = send(as_alice, body="ten", attachments=ids)
    assert response.status_code == 201
    assert len(response.json()["event"]["attachments"]) == 10


def test_in_one_batch_two_sends_cannot_take_the_same_upload(alice, lobby, as_alice):
    a = uploaded(as_alice, image_bytes())

    def request(client_id):
        return SendRequest(
            room="lobby",
            user_id=alice.id,
            username="alice",
            body="x",
            client_id=client_id,
            attachments=(a["id"],),
        )

    first, second = log.append_events([request("c1"), request("c2")])
    assert first.created and first.event["attachments"][0]["id"] == a["id"]
    assert second.error == "bad_request" and not second.created
    assert Message.objects.count() == 1


def test_a_deleted_message_shows_no_attachments(as_alice):
    a = uploaded(as_alice, image_bytes())
    seq = send(as_alice, body="x", attachments=[a["id"]]).json()["seq"]
    assert as_alice.delete(f"{SEND.format('lobby')}{seq}/").status_code == 200
    event = as_alice.get(f"{SEND.format('lobby')}{seq}/").json()["event"]
    assert event["deleted"] is True and event["attachments"] == []


def test_replays_from_the_log_and_the_ring_carry_attachments(as_alice, lobby):
    a = uploaded(as_alice, image_bytes(), "a.png")
    seq = send(as_alice, body="x", attachments=[a["id"]]).json()["seq"]
    [replayed] = log.read_events(lobby.id, "lobby", seq - 1, 10)  # replay, long-poll
    assert replayed["attachments"] == [a]
    ring = Ring(8)
    ring.append(OutboundEvent(replayed))
    deleted = {"type": "deleted", "room": "lobby", "seq": seq + 1, "target": seq, "user": "x"}
    ring.append(OutboundEvent(deleted))
    assert ring[0].event["attachments"] == [] and ring[0].event["deleted"] is True


def test_the_twisted_body_cap_follows_the_upload_route(settings):
    settings.MAX_REQUEST_BYTES, settings.CHAT_MAX_UPLOAD_BYTES = 2048, 50_000
    upload_cap = 50_000 + UPLOAD_OVERHEAD_BYTES
    assert body_limit(b"/api/rooms/lobby/uploads/") == upload_cap
    assert body_limit(b"/api/rooms/lobby/uploads/?x=1") == upload_cap
    for other in (b"/api/rooms/lobby/messages/", b"/api/rooms/lobby/uploads/x", b"/", None):
        assert body_limit(other) == 2048


def test_a_sideways_photo_is_measured_and_thumbnailed_as_it_is_shown(as_alice):
    image = Image.new("RGB", (800, 400), (0, 90, 0))
    exif = image.getexif()
    exif[0x0112] = 6  # stored landscape, shown portrait (turned 90 degrees)
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif.tobytes())
    body = uploaded(as_alice, out.getvalue(), "phone.jpg")
    assert (body["width"], body["height"]) == (400, 800)
    row = Upload.objects.get(pk=body["id"])
    with Image.open(row.thumbnail.path) as thumb:
        assert thumb.size == (200, 400)


# -- what a user may make the server keep -------------------------------------------------


def test_a_muted_user_may_not_upload_and_is_told_when_to_retry(as_alice, lobby, alice, media):
    from datetime import timedelta

    from django.utils import timezone

    from chat.models import Mute

    Mute.objects.create(room=lobby, user=alice, until=timezone.now() + timedelta(minutes=10))
    response = upload(as_alice, b"plain text", "a.txt")
    assert_error(response, 403, "forbidden")
    assert 590 <= response.json()["error"]["retry_after"] <= 600
    assert response["Retry-After"]
    assert not Upload.objects.exists()
    assert stored_files(media) == []


def test_uploads_not_sent_are_bounded_per_user(as_alice, as_bob, media):
    from chat.api.upload_views import MAX_PENDING_UPLOADS

    ids = [
        uploaded(as_alice, b"note %d" % i, f"{i}.txt")["id"] for i in range(MAX_PENDING_UPLOADS)
    ]
    response = upload(as_alice, b"one too many", "x.txt")
    assert_error(response, 429, "rate_limited")
    assert response.json()["error"]["retry_after"] > 0
    assert Upload.objects.count() == MAX_PENDING_UPLOADS
    # Another user is not held by alice's files; sending some lets alice upload again.
    uploaded(as_bob, b"bob's", "b.txt")
    answer = send(as_alice, body="here", attachments=ids[:3], client_id="pending-1")
    assert answer.status_code == 201, answer.content
    uploaded(as_alice, b"now there is room", "y.txt")
