/*
 * The reaction picker: a small popup of common emoji plus a field for any other one.
 * One picker for the page, opened next to the button that asked for it; Escape or a
 * click outside closes it and gives focus back to that button.
 */

import { el } from "./dom.js";

export const COMMON_EMOJI = ["👍", "❤️", "😂", "🎉", "😮", "😢", "👀", "🙏", "🔥", "✅", "👏", "🚀", "💯", "🤔", "😄", "👎"];

/** The first grapheme of `text` when it is an emoji (the server checks again). */
export function oneEmoji(text) {
  const trimmed = (text ?? "").trim();
  if (!trimmed) return null;
  const segments = [...new Intl.Segmenter(undefined, { granularity: "grapheme" }).segment(trimmed)];
  if (segments.length !== 1) return null;
  const grapheme = segments[0].segment;
  return /\p{Extended_Pictographic}|\p{Regional_Indicator}|\u20e3/u.test(grapheme) ? grapheme : null;
}

export class ReactionPicker {
  constructor() {
    this.onPick = null;
    this.anchor = null;
    this.field = el("input", {
      type: "text",
      class: "picker-field",
      placeholder: "Any emoji…",
      "aria-label": "Type any emoji",
      maxlength: "16",
      autocomplete: "off",
    });
    this.error = el("p", { class: "picker-error", role: "alert", hidden: true }, "That is not one emoji.");
    const grid = el(
      "div",
      { class: "picker-grid", role: "group", "aria-label": "Common reactions" },
      COMMON_EMOJI.map((emoji) =>
        el("button", { type: "button", class: "picker-emoji", dataset: { emoji }, "aria-label": `React with ${emoji}` }, emoji),
      ),
    );
    const form = el(
      "form",
      { class: "picker-form" },
      this.field,
      el("button", { type: "submit", class: "button-small" }, "Add"),
    );
    this.node = el(
      "div",
      { class: "picker", id: "emoji-picker", role: "dialog", "aria-label": "Add a reaction", hidden: true },
      grid,
      form,
      this.error,
    );
    grid.addEventListener("click", (e) => {
      const button = e.target.closest("[data-emoji]");
      if (button) this.pick(button.dataset.emoji);
    });
    grid.addEventListener("keydown", (e) => this.moveFocus(e));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const emoji = oneEmoji(this.field.value);
      this.error.hidden = Boolean(emoji);
      if (emoji) this.pick(emoji);
    });
    this.node.addEventListener("keydown", (e) => {
      if (e.key === "Escape") {
        e.preventDefault();
        e.stopPropagation();
        this.close();
      }
    });
    document.addEventListener("pointerdown", (e) => {
      if (!this.node.hidden && !this.node.contains(e.target) && !this.anchor?.contains(e.target)) this.close(false);
    });
    document.body.append(this.node);
  }

  get isOpen() {
    return !this.node.hidden;
  }

  open(anchor, onPick) {
    this.anchor = anchor;
    this.onPick = onPick;
    this.field.value = "";
    this.error.hidden = true;
    this.node.hidden = false;
    // Placed under the anchor, kept inside the window (CSSOM, which the CSP allows).
    const box = anchor.getBoundingClientRect();
    const width = this.node.offsetWidth;
    const height = this.node.offsetHeight;
    const left = Math.max(8, Math.min(box.right - width, window.innerWidth - width - 8));
    const below = box.bottom + 6;
    const top = below + height > window.innerHeight - 8 ? Math.max(8, box.top - height - 6) : below;
    this.node.style.left = `${left}px`;
    this.node.style.top = `${top}px`;
    this.node.querySelector("[data-emoji]").focus();
  }

  close(restoreFocus = true) {
    if (this.node.hidden) return;
    this.node.hidden = true;
    if (restoreFocus && this.anchor?.isConnected) this.anchor.focus();
    this.anchor = null;
    this.onPick = null;
  }

  pick(emoji) {
    const onPick = this.onPick;
    this.close();
    onPick?.(emoji);
  }

  moveFocus(e) {
    const buttons = [...this.node.querySelectorAll("[data-emoji]")];
    const index = buttons.indexOf(document.activeElement);
    if (index < 0) return;
    const step = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: 8, ArrowUp: -8 }[e.key];
    if (!step) return;
    e.preventDefault();
    buttons[(index + step + buttons.length) % buttons.length].focus();
  }
}
