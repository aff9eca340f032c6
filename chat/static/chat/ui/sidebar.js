/*
 * The sidebar (#sidebar): the user's rooms with unread and mention badges, the room
 * being viewed marked, and on narrow screens a drawer. It only draws what it is given:
 * room objects (PROTOCOL.md) from the page, the inbox stream or the rooms API.
 */

import { el, pageVisible } from "./dom.js";

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
  return el("span", { class: "room-icon", "aria-hidden": "true" }, room.kind === "direct" ? "@" : "#");
}

function byName(a, b) {
  return (a.name ?? a.slug).localeCompare(b.name ?? b.slug, undefined, { sensitivity: "base" });
}

export class Sidebar {
  /** onTotals({unread, mentions}): the counts the tab title shows. */
  constructor(app, { onTotals }) {
    this.app = app;
    this.node = app.querySelector("#sidebar");
    this.nav = app.querySelector("#room-nav");
    this.toggle = app.querySelector("#drawer-toggle");
    this.backdrop = app.querySelector("#drawer-backdrop");
    this.onTotals = onTotals;
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

  /** The rooms in sidebar order (what Alt+Up/Down walks through). */
  ordered() {
    const rooms = [...this.rooms.values()].sort(byName);
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
    const items = members.map((room) => this.item(room));
    const sections = [el("li", { class: "nav-section", role: "presentation" }, "Rooms")];
    if (!items.length) {
      sections.push(el("li", { class: "nav-empty" }, "Join a room to see it here."));
    }
    sections.push(...items);
    if (this.activeRoom && !this.rooms.has(this.active)) {
      sections.push(el("li", { class: "nav-section", role: "presentation" }, "Viewing"), this.item(this.activeRoom));
    }
    // Counts change while someone tabs through the list: keep their place.
    const focused = this.nav.contains(document.activeElement) ? document.activeElement.dataset.slug : null;
    this.nav.replaceChildren(...sections);
    if (focused) this.nav.querySelector(`a[data-slug="${focused}"]`)?.focus();
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
        href: `/rooms/${room.slug}/`,
        class: `room-item${unread || mentions ? " has-unread" : ""}${active ? " active" : ""}${room.is_archived ? " archived" : ""}`,
        dataset: { slug: room.slug },
        "aria-current": active ? "page" : null,
      },
      icon(room),
      el("span", { class: "room-item-name" }, room.name ?? room.slug),
      badge,
    );
    return el("li", {}, link);
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
