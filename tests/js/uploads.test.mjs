// Attachments' DOM-free parts: sizes as shown, and message records' attachments.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { recordOf } from "../../chat/static/chat/ui/render.js";
import { formatSize, MAX_FILES } from "../../chat/static/chat/ui/uploads.js";

describe("attachments", () => {
  it("shows sizes the way people read them", () => {
    assert.equal(formatSize(16), "16 B");
    assert.equal(formatSize(2048), "2.0 KB");
    assert.equal(formatSize(10 * 1024 * 1024), "10 MB");
    assert.equal(formatSize(1536 * 1024), "1.5 MB");
    assert.equal(formatSize(-1), "");
    assert.equal(formatSize(Number.NaN), "");
    assert.equal(MAX_FILES, 10);
  });

  it("keeps a message's attachments and drops a deleted one's", () => {
    const file = { id: "abc", name: "a.txt", size: 3, url: "/uploads/abc/a.txt", thumbnail_url: null };
    assert.deepEqual(recordOf({ type: "message", seq: 1, attachments: [file] }).attachments, [file]);
    assert.deepEqual(recordOf({ type: "message", seq: 1, attachments: [file], deleted: true }).attachments, []);
    assert.deepEqual(recordOf({ type: "message", seq: 1 }).attachments, []);
    assert.deepEqual(recordOf({ type: "message", seq: 1, attachments: "nope" }).attachments, []);
  });
});
