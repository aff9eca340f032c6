/*
 * The sidebar (#sidebar): the user's rooms, then their direct messages, with unread and
 * mention badges, the room being viewed marked, and on narrow screens a drawer. It only
 * draws what it is given: room objects (PROTOCOL.md) from the page, the inbox stream or
 * the rooms API. "New message" (the + of "Direct messages") opens the direct room with a
 * username through POST /api/dms/ and hands it to the page (onOpen).
 */

import { api, chatUrl, el, hueClass, initial, pageVisible } from "./dom.js";

const LOCK = "M5 7V5a3 3 0 0 1 6 0v2h.5A1.5 1.5 0 0 1 13 8.5v5a1.5 1.5 0 0 1-1.5 1.5h-7A1.5 1.5 0 0 1 3 13.5v-5A1.5 1.5 0 0 1 4.5 7H5Zm1.5 0h3V5a1.5 1.5 0 0 0-3 0v2Z";

function icon(room) {
  if (room.is_public === false) {
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", "0 0 16 16");
    svg.setAttribute("width", "14");
    svg.setAttribute("height", "14");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("class", "room-icon");
    const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
    path.setAttribute("d", LOCK);
    path.setAttribute("fill", "currentColor");
    svg.append(path);
    return svg;
  }
  return el("span", { class: "room-icon", "aria-hidden": "true" }, "#");
}

/** A direct room's mark: its other member's initial, in their colour. */
function avatar(room) {
  const name = room.name ?? room.slug;
  return el("span", { class: `dm-avatar ${hueClass(name)}`, "aria-hidden": "true" }, initial(name));
}

const isDirect = (room) => room.kind === "direct";

function byName(a, b) {
  return (a.name ?? a.slug).localeCompare(b.name ?? b.slug, undefined, { sensitivity: "base" });
}

export class Sidebar {
  /** onTotals({unread, mentions}): the counts the tab title shows; onOpen(room): open a
   * direct room just made or found by "New message". */
  constructor(app, { onTotals, onOpen }) {
    this.app = app;
    this.node = app.querySelector("#sidebar");
    this.nav = app.querySelector("#room-nav");
    this.toggle = app.querySelector("#drawer-toggle");
    this.backdrop = app.querySelector("#drawer-backdrop");
    this.onTotals = onTotals;
    this.onOpen = onOpen;
    this.dmForm = app.querySelector("#dm-new");
    // The form lives in the list, under its heading; the same node is put back at each
    // render, so what is typed survives the counts changing.
    this.dmRow = this.dmForm ? el("li", { class: "dm-new-row", hidden: true }, this.dmForm) : null;
    this.dmForm?.addEventListener("submit", (e) => {
      e.preventDefault();
      this.openDirect();
    });
    this.dmForm?.addEventListener("keydown", (e) => {
      if (e.key === "Escape") {
        e.preventDefault();
        e.stopPropagation();
        this.showDirectForm(false);
      }
    });
    this.rooms = new Map();
    this.active = null;
    this.activeRoom = null; // the room object of the page, member or not
    this.toggle?.addEventListener("click", () => this.setDrawer(!this.isDrawerOpen));
    this.backdrop?.addEventListener("click", () => this.setDrawer(false));
    this.node.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && this.isDrawerOpen) {
        e.preventDefault();
        this.setDrawer(false);
      }
    });
    document.addEventListener("visibilitychange", () => this.render());
  }

  /** Replaces the list of member rooms. */
  setRooms(rooms) {
    this.rooms = new Map(rooms.filter((r) => r.is_member !== false).map((r) => [r.slug, { ...r }]));
    this.render();
  }

  /** Changes one room's fields (counts after an activity or read event). */
  update(slug, fields) {
    const room = this.rooms.get(slug);
    if (room) Object.assign(room, fields);
    if (this.activeRoom?.slug === slug) Object.assign(this.activeRoom, fields);
    this.render();
  }

  setActive(room) {
    this.active = room.slug;
    this.activeRoom = { ...room };
    this.render();
  }

  get(slug) {
    return this.rooms.get(slug) ?? (this.activeRoom?.slug === slug ? this.activeRoom : null);
  }

  /** The rooms in sidebar order (what Alt+Up/Down walks through): rooms, then DMs. */
  ordered() {
    const all = [...this.rooms.values()].sort(byName);
    const rooms = [...all.filter((r) => !isDirect(r)), ...all.filter(isDirect)];
    if (this.activeRoom && !this.rooms.has(this.active)) rooms.push(this.activeRoom);
    return rooms;
  }

  neighbour(step) {
    const rooms = this.ordered();
    if (!rooms.length) return null;
    const index = rooms.findIndex((r) => r.slug === this.active);
    return rooms[(index + step + rooms.length) % rooms.length];
  }

  /** Counts the active room shows only while the tab is hidden: in view, it is being read. */
  shown(room) {
    if (room.slug === this.active && pageVisible()) return { unread: 0, mentions: 0 };
    return { unread: room.unread ?? 0, mentions: room.mentions ?? 0 };
  }

  render() {
    const members = [...this.rooms.values()].sort(byName);
    const rooms = members.filter((r) => !isDirect(r));
    const direct = members.filter(isDirect);
    const sections = [el("li", { class: "nav-section", role: "presentation" }, "Rooms")];
    if (!rooms.length) {
      sections.push(el("li", { class: "nav-empty" }, "Join a room to see it here."));
    }
    sections.push(...rooms.map((room) => this.item(room)));
    if (this.dmForm) {
      sections.push(this.directHead(), this.dmRow, ...direct.map((room) => this.item(room)));
      if (!direct.length) sections.push(el("li", { class: "nav-empty" }, "No direct messages yet."));
    }
    if (this.activeRoom && !this.rooms.has(this.active)) {
      sections.push(el("li", { class: "nav-section", role: "presentation" }, "Viewing"), this.item(this.activeRoom));
    }
    // Counts change while someone tabs through the list: keep their place.
    const active = this.nav.contains(document.activeElement) ? document.activeElement : null;
    const focused = active?.dataset.slug;
    this.nav.replaceChildren(...sections);
    if (focused) this.nav.querySelector(`a[data-slug="${focused}"]`)?.focus();
    else if (active && this.dmForm?.contains(active)) active.focus();
    let unread = 0;
    let mentions = 0;
    for (const room of members) {
      const counts = this.shown(room);
      unread += counts.unread;
      mentions += counts.mentions;
    }
    this.onTotals({ unread, mentions });
  }

  item(room) {
    const { unread, mentions } = this.shown(room);
    const active = room.slug === this.active;
    const parts = [];
    if (unread) parts.push(`${unread > 99 ? "99+" : unread} unread`);
    if (mentions) parts.push(`${mentions} mention${mentions === 1 ? "" : "s"}`);
    const badge =
      unread || mentions
        ? el(
            "span",
            { class: `room-badge${mentions ? " mention" : ""}`, "aria-label": parts.join(", ") },
            mentions ? `@${mentions > 99 ? "99+" : mentions}` : unread > 99 ? "99+" : String(unread),
          )
        : null;
    const link = el(
      "a",
      {
        href: chatUrl(`/rooms/${room.slug}/`), // under a host project's prefix
        class: `room-item${isDirect(room) ? " dm-item" : ""}${unread || mentions ? " has-unread" : ""}${active ? " active" : ""}${room.is_archived ? " archived" : ""}`,
        dataset: { slug: room.slug },
        "aria-current": active ? "page" : null,
      },
      isDirect(room) ? avatar(room) : icon(room),
      el("span", { class: "room-item-name" }, room.name ?? room.slug),
      badge,
    );
    return el("li", {}, link);
  }

  /** The "Direct messages" heading with its "New message" button. */
  directHead() {
    const open = !this.dmForm.hidden;
    const button = el(
      "button",
      {
        type: "button",
        class: "icon-button dm-new-button",
        title: "New message",
        "aria-label": "New message",
        "aria-expanded": String(open),
        "aria-controls": "dm-new",
        onclick: () => this.showDirectForm(this.dmForm.hidden),
      },
      "+",
    );
    return el("li", { class: "nav-section nav-section-dms", role: "presentation" }, el("span", {}, "Direct messages"), button);
  }

  showDirectForm(open) {
    if (!this.dmForm) return;
    this.dmForm.hidden = !open;
    this.dmRow.hidden = !open;
    const error = this.dmForm.querySelector("#dm-new-error");
    if (error) error.hidden = true;
    const input = this.dmForm.querySelector("input[name=user]");
    this.nav.querySelector(".dm-new-button")?.setAttribute("aria-expanded", String(open));
    if (open) input?.focus();
    else {
      if (input) input.value = "";
      this.nav.querySelector(".dm-new-button")?.focus();
    }
  }

  /** POST /api/dms/ with the username typed ("@bob" and " bob " are bob). */
  async openDirect() {
    const input = this.dmForm.querySelector("input[name=user]");
    const error = this.dmForm.querySelector("#dm-new-error");
    const button = this.dmForm.querySelector("button[type=submit]");
    const user = input.value.trim().replace(/^@/, "");
    if (!user) {
      input.focus();
      return;
    }
    button.disabled = true;
    const { ok, status, data } = await api("/api/dms/", { method: "POST", body: { user } });
    button.disabled = false;
    if (!ok || !data?.slug) {
      error.textContent =
        status === 404 ? `Nobody is called “${user}”.` : (data?.error?.detail ?? "Could not open the conversation.");
      error.hidden = false;
      input.select();
      return;
    }
    this.rooms.set(data.slug, { ...this.rooms.get(data.slug), ...data });
    input.value = "";
    this.dmForm.hidden = true;
    this.dmRow.hidden = true;
    this.render();
    this.onOpen?.(data);
  }

  get isDrawerOpen() {
    return this.app.classList.contains("drawer-open");
  }

  setDrawer(open) {
    if (open === this.isDrawerOpen) return;
    this.app.classList.toggle("drawer-open", open);
    this.toggle?.setAttribute("aria-expanded", String(open));
    if (this.backdrop) this.backdrop.hidden = !open;
    if (open) (this.nav.querySelector("[aria-current=page]") ?? this.nav.querySelector("a"))?.focus();
    else this.toggle?.focus();
  }

  /** After choosing a room from the drawer: closed, without pulling focus back. */
  closeDrawer() {
    if (!this.isDrawerOpen) return;
    this.app.classList.remove("drawer-open");
    this.toggle?.setAttribute("aria-expanded", "false");
    if (this.backdrop) this.backdrop.hidden = true;
  }
}
