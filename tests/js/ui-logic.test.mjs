// The DOM-free parts of the UI modules: message records, reactions, the emoji check.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { applyReaction } from "../../chat/static/chat/ui/messages.js";
import { oneEmoji } from "../../chat/static/chat/ui/picker.js";
import { recordOf } from "../../chat/static/chat/ui/render.js";

describe("message records", () => {
  it("blanks a deleted message and copies reactions", () => {
    const event = { type: "message", seq: 4, user: "bob", body: "x", html: "<b>x</b>", deleted: true, reactions: [{ emoji: "👍", users: ["a"] }] };
    const record = recordOf(event);
    assert.equal(record.body, "");
    assert.equal(record.html, "");
    assert.equal(record.deleted, true);
    record.reactions[0].users.push("b");
    assert.deepEqual(event.reactions[0].users, ["a"]); // a copy, not the event's list
  });

  it("applies reactions idempotently, in order of first reaction", () => {
    const record = recordOf({ type: "message", seq: 1, body: "hi" });
    applyReaction(record, { emoji: "🎉", user: "a", op: "add" });
    applyReaction(record, { emoji: "👍", user: "b", op: "add" });
    applyReaction(record, { emoji: "🎉", user: "a", op: "add" });
    applyReaction(record, { emoji: "🎉", user: "c", op: "add" });
    assert.deepEqual(record.reactions, [
      { emoji: "🎉", users: ["a", "c"] },
      { emoji: "👍", users: ["b"] },
    ]);
    applyReaction(record, { emoji: "👍", user: "b", op: "remove" });
    applyReaction(record, { emoji: "👍", user: "b", op: "remove" });
    applyReaction(record, { emoji: "🚀", user: "b", op: "remove" });
    assert.deepEqual(record.reactions, [{ emoji: "🎉", users: ["a", "c"] }]);
  });
});

describe("oneEmoji", () => {
  it("takes one emoji grapheme and refuses anything else", () => {
    assert.equal(oneEmoji(" 🦄 "), "🦄");
    assert.equal(oneEmoji("👍🏽"), "👍🏽");
    assert.equal(oneEmoji("🇫🇷"), "🇫🇷");
    assert.equal(oneEmoji("👨‍👩‍👧"), "👨‍👩‍👧");
    assert.equal(oneEmoji("ab"), null);
    assert.equal(oneEmoji("👍👍"), null);
    assert.equal(oneEmoji(""), null);
  });
});
