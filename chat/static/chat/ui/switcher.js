/*
 * The quick switcher (Ctrl+K or Cmd+K): a dialog with a filter over every room the user
 * may read, the sidebar's first. Up/Down move, Enter opens, Escape closes (the <dialog>
 * element traps focus and gives it back on close).
 */

import { el } from "./dom.js";

export class Switcher {
  /** rooms(): Promise<room objects>; go(slug) opens one. */
  constructor(dialog, { rooms, go }) {
    this.dialog = dialog;
    this.input = dialog.querySelector("input");
    this.list = dialog.querySelector("ul");
    this.rooms = rooms;
    this.go = go;
    this.all = [];
    this.index = 0;
    this.input.addEventListener("input", () => {
      this.index = 0;
      this.render();
    });
    this.input.addEventListener("keydown", (e) => this.keydown(e));
    this.list.addEventListener("click", (e) => {
      const option = e.target.closest("[data-slug]");
      if (option) this.choose(option.dataset.slug);
    });
    dialog.addEventListener("click", (e) => {
      if (e.target === dialog) dialog.close(); // a click on the backdrop
    });
  }

  async open() {
    if (this.dialog.open) return;
    this.input.value = "";
    this.index = 0;
    this.all = [];
    this.render();
    this.dialog.showModal();
    this.input.focus();
    this.all = await this.rooms();
    this.render();
  }

  matches() {
    const query = this.input.value.trim().toLowerCase();
    return this.all.filter((r) => !query || `${r.name} ${r.slug}`.toLowerCase().includes(query)).slice(0, 12);
  }

  render() {
    const found = this.matches();
    this.index = Math.min(this.index, Math.max(found.length - 1, 0));
    this.list.replaceChildren(
      ...found.map((room, i) =>
        el(
          "li",
          {
            id: `switch-${room.slug}`,
            role: "option",
            class: "switch-option",
            dataset: { slug: room.slug },
            "aria-selected": String(i === this.index),
          },
          el("span", { class: "room-icon", "aria-hidden": "true" }, room.is_public === false ? "🔒" : "#"),
          el("span", { class: "switch-name" }, room.name ?? room.slug),
          room.unread ? el("span", { class: "room-badge" }, String(room.unread)) : null,
          room.is_member === false ? el("span", { class: "switch-note" }, "not joined") : null,
        ),
      ),
    );
    if (!found.length) this.list.append(el("li", { class: "switch-empty" }, "No room matches."));
    const current = found[this.index];
    if (current) this.input.setAttribute("aria-activedescendant", `switch-${current.slug}`);
    else this.input.removeAttribute("aria-activedescendant");
  }

  keydown(e) {
    const found = this.matches();
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      if (!found.length) return;
      this.index = (this.index + (e.key === "ArrowDown" ? 1 : -1) + found.length) % found.length;
      this.render();
    } else if (e.key === "Enter") {
      e.preventDefault();
      if (found[this.index]) this.choose(found[this.index].slug);
    }
  }

  choose(slug) {
    this.dialog.close();
    this.go(slug);
  }
}
