"""Attachments in a real browser, two people: alice attaches an image with the button, a
file by dropping it on the room and an image by pasting it; the chips show their
progress; she sends; bob sees the thumbnail (loaded from the server) and the file card
live, and a deletion takes them away."""

from __future__ import annotations

import io
import re

import pytest
from browser_helpers import shot, unique
from parley_testing import ServerProcess, wait_for_js
from PIL import Image
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def upload_server(live_server, tmp_path_factory):
    """A server with its own MEDIA_ROOT, sharing live_server's collected static files."""
    workdir = tmp_path_factory.mktemp("upload-browser")
    env = {"MEDIA_ROOT": str(workdir / "media"), "STATIC_ROOT": str(live_server.static_root)}
    server = ServerProcess(workdir, env=env, args=["--no-collectstatic"]).start()
    yield server
    server.stop()


def png(size=(900, 600), colour=(30, 140, 220)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


DROP = """([name, text]) => {
  const data = new DataTransfer();
  data.items.add(new File([text], name, { type: "text/plain" }));
  const room = document.querySelector("#room");
  for (const type of ["dragenter", "dragover", "drop"]) {
    const init = { dataTransfer: data, bubbles: true, cancelable: true };
    room.dispatchEvent(new DragEvent(type, init));
  }
}"""

PASTE = """async (bytes) => {
  const data = new DataTransfer();
  data.items.add(new File([new Uint8Array(bytes)], "pasted.png", { type: "image/png" }));
  const box = document.querySelector("#composer textarea");
  const init = { clipboardData: data, bubbles: true, cancelable: true };
  box.dispatchEvent(new ClipboardEvent("paste", init));
}"""


def test_alice_attaches_by_button_drop_and_paste_and_bob_sees_them_live(
    chat_user, make_room, upload_server
):
    room = make_room("files", server=upload_server)
    alice = chat_user("alice", server=upload_server)
    bob = chat_user("bob", server=upload_server)
    alice.open_room(room)
    bob.open_room(room)
    page = alice.page

    with page.expect_file_chooser() as chooser:
        page.locator("#attach-button").click()
    chooser.value.set_files(files=[{"name": "sky.png", "mimeType": "image/png", "buffer": png()}])
    page.evaluate(DROP, ["notes.txt", "meeting at noon\n"])
    page.evaluate(PASTE, list(png((300, 300), (240, 180, 40))))

    chips = page.locator("#pending-uploads .upload-chip")
    expect(chips).to_have_count(3)
    expect(page.locator("#pending-uploads .upload-chip.done")).to_have_count(3)
    expect(chips.nth(0).locator(".upload-thumb img")).to_be_visible()
    shot(page, "upload-chips")
    page.screenshot(path="/tmp/upload-chips.png")

    caption = unique("holiday")
    page.locator("#composer textarea").fill(caption)
    page.locator("#composer .send-button").click()
    expect(page.locator("#pending-uploads")).to_be_hidden()

    line = bob.page.locator("#messages li.msg", has_text=caption)
    expect(line.locator(".att-image img")).to_have_count(2)
    expect(line.locator(".att-file")).to_have_count(1)
    expect(line.locator(".att-file-name")).to_have_text("notes.txt")
    expect(line.locator(".att-file-size")).to_have_text("16 B")
    # The thumbnails were served to bob (the browser decoded them), each linking the file.
    wait_for_js(
        bob.page,
        "[...document.querySelectorAll('#messages .att-image img')].length === 2 &&"
        "[...document.querySelectorAll('#messages .att-image img')].every("
        "i => i.complete && i.naturalWidth > 0)",
    )
    hrefs = [a.get_attribute("href") for a in line.locator(".att-image").all()]
    [href] = [h for h in hrefs if h.endswith("/sky.png")]  # in the order they were stored
    assert re.fullmatch(r"/uploads/[A-Za-z0-9_-]+/sky\.png", href)
    full = bob.page.request.get(href)
    assert full.status == 200 and full.headers["content-type"] == "image/png"
    bob.page.screenshot(path="/tmp/upload-bob.png")
    shot(bob.page, "upload-bob")

    # Files alone: no text needed.
    page.evaluate(DROP, ["alone.txt", "only a file\n"])
    expect(page.locator("#pending-uploads .upload-chip.done")).to_have_count(1)
    page.locator("#composer textarea").press("Enter")
    expect(bob.page.locator("#messages .att-file-name", has_text="alone.txt")).to_have_count(1)

    # A deletion takes the files away, live and on the server.
    seq = line.get_attribute("data-seq")
    own = page.locator(f'#messages li[data-seq="{seq}"]')
    own.hover()
    own.locator("[data-action=delete]").click()
    page.locator("#confirm-dialog").get_by_role("button", name="Delete").click()
    expect(bob.page.locator(f'#messages li[data-seq="{seq}"] .att-image')).to_have_count(0)
    assert bob.page.request.get(href).status == 404


def test_a_cancelled_upload_leaves_no_chip_and_dark_narrow_layout(
    chat_user, make_room, upload_server, browser
):
    room = make_room("narrow", server=upload_server)
    alice = chat_user("carol", server=upload_server)
    page = alice.page
    page.set_viewport_size({"width": 360, "height": 720})
    page.emulate_media(color_scheme="dark")
    alice.open_room(room)
    # A slow link: the progress bar moves, and cancel stops the upload.
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    slow = {"offline": False, "latency": 20, "downloadThroughput": -1}
    cdp.send("Network.emulateNetworkConditions", {**slow, "uploadThroughput": 64 * 1024})
    page.evaluate(DROP, ["slow.txt", "z" * 1_000_000])
    uploading = page.locator("#pending-uploads .upload-chip.uploading")
    expect(uploading).to_have_count(1)
    wait_for_js(page, "document.querySelector('.upload-chip.uploading progress')?.value > 0")
    page.screenshot(path="/tmp/upload-progress.png")
    expect(page.locator("#composer .send-button")).to_be_disabled()  # waits for its files
    uploading.locator(".upload-remove").click()
    expect(page.locator("#pending-uploads .upload-chip")).to_have_count(0)
    cdp.send("Network.emulateNetworkConditions", {**slow, "latency": 0, "uploadThroughput": -1})
    expect(page.locator("#composer .send-button")).to_be_enabled()

    page.evaluate(DROP, ["a-very-long-file-name-for-a-narrow-screen.txt", "x" * 2000])
    page.evaluate(DROP, ["second.txt", "y"])
    expect(page.locator("#pending-uploads .upload-chip.done")).to_have_count(2)
    page.screenshot(path="/tmp/upload-narrow-dark.png")
    page.locator("#pending-uploads .upload-chip").nth(1).locator(".upload-remove").click()
    expect(page.locator("#pending-uploads .upload-chip")).to_have_count(1)
    page.locator("#composer textarea").fill("narrow")
    page.locator("#composer .send-button").click()
    sent = page.locator("#messages li.msg", has_text="narrow")
    expect(sent.locator(".att-file")).to_have_count(1)
    page.screenshot(path="/tmp/upload-narrow-dark-sent.png")
