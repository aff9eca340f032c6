// ui/modmenu.js: what a muted user is told ("9 more minutes"), from retry_after.
import assert from "node:assert/strict";
import { test } from "node:test";

import { mutedText, remaining } from "../../chat/static/chat/ui/modmenu.js";

test("remaining() counts seconds, then minutes, then hours", () => {
  assert.equal(remaining(1), "1 more second");
  assert.equal(remaining(45), "45 more seconds");
  assert.equal(remaining(88.2), "89 more seconds");
  assert.equal(remaining(90), "2 more minutes");
  assert.equal(remaining(540), "9 more minutes");
  assert.equal(remaining(600), "10 more minutes");
  assert.equal(remaining(3600), "60 more minutes");
  assert.equal(remaining(86400), "24 more hours");
  assert.equal(remaining(7200), "2 more hours");
});

test("remaining() never says zero or nonsense", () => {
  assert.equal(remaining(0), "1 more second");
  assert.equal(remaining(-5), "1 more second");
  assert.equal(remaining("x"), "1 more second");
});

test("mutedText() is the notice", () => {
  assert.equal(mutedText(599), "You are muted in this room for 10 more minutes.");
});
