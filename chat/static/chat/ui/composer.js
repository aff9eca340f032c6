/*
 * The composer (#composer): Enter sends, Shift+Enter adds a line, Up in an empty box
 * edits your last message, Escape drops a reply. It grows with its text and counts the
 * characters left near the limit (the server's limit is the one that counts: a box
 * whose maxlength was removed still sends, and the send fails visibly).
 */

import { el, snippet } from "./dom.js";

const COUNT_FROM = 200; // show the count when this few characters are left

export class Composer {
  /** handlers: send(body, replyTo), typing(), editLast() -> bool */
  constructor(form, { maxChars, handlers }) {
    this.form = form;
    this.box = form.elements.body;
    this.button = form.querySelector("button[type=submit]");
    this.counter = form.querySelector("#char-count");
    this.replyBar = document.getElementById("reply-bar");
    this.maxChars = maxChars;
    this.handlers = handlers;
    this.reply = null;
    this.enabled = !this.box.disabled;
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
    this.update();
  }

  keydown(e) {
    if (e.isComposing) return;
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      if (this.box.value.trim()) this.submit();
    } else if (e.key === "ArrowUp" && !this.box.value && !e.altKey && !e.ctrlKey && !e.metaKey) {
      if (this.handlers.editLast()) e.preventDefault();
    } else if (e.key === "Escape" && this.reply) {
      e.preventDefault();
      this.clearReply();
    }
  }

  submit() {
    if (!this.enabled) return;
    const body = this.box.value;
    if (!body.trim()) return;
    const replyTo = this.reply?.seq ?? null;
    this.box.value = "";
    this.clearReply();
    this.update();
    this.handlers.send(body, replyTo);
    this.box.focus();
  }

  /** Posting allowed or not (anonymous, archived, no access); the reason is the hint. */
  setEnabled(enabled, placeholder = "") {
    this.enabled = enabled;
    this.box.disabled = !enabled;
    if (this.button) this.button.disabled = !enabled;
    this.box.placeholder = enabled ? placeholder : "";
    if (!enabled) this.clearReply();
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
    this.update();
  }

  update() {
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
