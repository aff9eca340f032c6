/*
 * The composer (#composer): Enter sends, Shift+Enter adds a line, Up in an empty box
 * edits your last message, Escape drops a reply. It grows with its text and counts the
 * characters left near the limit (the server's limit is the one that counts: a box
 * whose maxlength was removed still sends, and the send fails visibly). Attachments
 * (ui/uploads.js): the attach button, files dropped on the room and images pasted into
 * the box become chips; a send carries their ids, and may have no text when it does.
 */

import { el, snippet } from "./dom.js";
import { acceptDrops, Uploads } from "./uploads.js";

const COUNT_FROM = 200; // show the count when this few characters are left

export class Composer {
  /**
   * handlers: send(body, replyTo, attachmentIds), typing(), editLast() -> bool;
   * uploadUrl(): the upload URL of the room shown; dropTarget: where files may be dropped.
   */
  constructor(form, { maxChars, handlers, uploadUrl, dropTarget }) {
    this.form = form;
    this.box = form.elements.body;
    this.button = form.querySelector("button[type=submit]");
    this.counter = form.querySelector("#char-count");
    this.replyBar = document.getElementById("reply-bar");
    this.maxChars = maxChars;
    this.handlers = handlers;
    this.reply = null;
    this.enabled = !this.box.disabled;
    this.held = null; // moderation (ui/modmenu.js): why sending waits, e.g. slow mode
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.submit();
    });
    this.box.addEventListener("keydown", (e) => this.keydown(e));
    this.box.addEventListener("input", () => {
      this.update();
      if (this.box.value) this.handlers.typing();
    });
    this.replyBar?.querySelector("button")?.addEventListener("click", () => {
      this.clearReply();
      this.focus();
    });
    this.attachments(form, uploadUrl, dropTarget);
    this.update();
  }

  /** Attachments: the button, drops, pastes and the chips (none without the markup). */
  attachments(form, uploadUrl, dropTarget) {
    const list = form.querySelector("#pending-uploads");
    const input = form.querySelector("#attach-input");
    this.attachButton = form.querySelector("#attach-button");
    if (!list || !input || !uploadUrl) return;
    this.uploads = new Uploads(list, { url: uploadUrl, changed: () => this.update() });
    this.attachButton?.addEventListener("click", () => input.click());
    input.addEventListener("change", () => {
      this.uploads.add(input.files);
      input.value = ""; // the same file may be picked again
      this.focus();
    });
    this.box.addEventListener("paste", (e) => {
      const files = Array.from(e.clipboardData?.files ?? []);
      // Text copied with a picture beside it (from a document) stays a text paste.
      const text = Array.from(e.clipboardData?.types ?? []).includes("text/plain");
      if (!files.length || text || !this.enabled) return;
      e.preventDefault(); // a pasted image is a file, not text
      this.uploads.add(files);
    });
    if (dropTarget) acceptDrops(dropTarget, this.uploads, () => this.enabled);
  }

  keydown(e) {
    if (e.isComposing) return;
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      if (this.box.value.trim() || this.uploads?.ready) this.submit();
    } else if (e.key === "ArrowUp" && !this.box.value && !e.altKey && !e.ctrlKey && !e.metaKey) {
      if (this.handlers.editLast()) e.preventDefault();
    } else if (e.key === "Escape" && this.reply) {
      e.preventDefault();
      this.clearReply();
    }
  }

  submit() {
    if (!this.enabled || this.held) return;
    const body = this.box.value;
    // Attachments: a send waits for its uploads; with files, the text may be empty.
    if (this.uploads?.busy) return;
    const attachments = this.uploads?.ids() ?? [];
    if (!body.trim() && !attachments.length) return;
    const replyTo = this.reply?.seq ?? null;
    this.box.value = "";
    this.clearReply();
    this.uploads?.clear();
    this.update();
    this.handlers.send(body, replyTo, attachments);
    this.box.focus();
  }

  /** Posting allowed or not (anonymous, archived, no access); the reason is the hint. */
  setEnabled(enabled, placeholder = "") {
    this.enabled = enabled;
    this.box.disabled = !enabled;
    if (this.button) this.button.disabled = !enabled || Boolean(this.held);
    this.box.placeholder = enabled ? placeholder : "";
    if (!enabled) this.clearReply();
    if (this.attachButton) this.attachButton.disabled = !enabled; // attachments
    if (!enabled) this.uploads?.clear();
  }

  /** Sending held back (slow mode's countdown, shown on the button); typing goes on. */
  hold(text) {
    this.held = text || null;
    if (!this.button) return;
    this.button.disabled = !this.enabled || Boolean(this.held);
    this.button.textContent = this.held ? this.held.replace(/^Slow mode: /, "") : "Send";
    this.button.title = this.held ?? "";
    this.button.classList.toggle("held", Boolean(this.held));
  }

  replyTo(record) {
    if (!this.enabled || !this.replyBar) return;
    this.reply = record;
    const preview = this.replyBar.querySelector(".reply-bar-text");
    preview.replaceChildren(
      "Replying to ",
      el("strong", {}, record.user ?? "someone"),
      el("span", { class: "reply-bar-snippet" }, snippet(record.body, 70)),
    );
    this.replyBar.hidden = false;
    this.focus();
  }

  clearReply() {
    this.reply = null;
    if (this.replyBar) this.replyBar.hidden = true;
  }

  focus() {
    if (this.enabled) this.box.focus();
  }

  clear() {
    this.box.value = "";
    this.clearReply();
    this.uploads?.clear(); // attachments of the room left behind
    this.update();
  }

  update() {
    // Attachments: files alone may be sent (the box is not required), not while uploading.
    if (this.uploads) {
      this.box.required = !this.uploads.ids().length;
      if (this.button) this.button.disabled = !this.enabled || Boolean(this.held) || this.uploads.busy;
    }
    // Grow with the text up to the CSS max-height (CSSOM is allowed by the CSP).
    this.box.style.height = "auto";
    this.box.style.height = `${Math.min(this.box.scrollHeight + 2, 200)}px`;
    if (!this.counter) return;
    const left = this.maxChars - this.box.value.length;
    this.counter.hidden = left > COUNT_FROM;
    this.counter.classList.toggle("over", left < 0);
    this.counter.textContent = left >= 0 ? `${left} characters left` : `${-left} characters over the limit`;
  }
}
