/*
 * What reaches the user outside the message list: the tab title's unread count, the
 * screen reader announcements of new messages (#announcer, an ARIA live region), and
 * browser notifications of mentions and direct messages while the tab is hidden.
 * Notification permission is asked only when the user presses the bell, never on page
 * load.
 */

import { pageVisible, snippet } from "./dom.js";

const STORAGE_KEY = "parley.notify";

export class Notifier {
  constructor({ bell, announcer }) {
    this.bell = bell;
    this.announcer = announcer;
    this.base = document.title;
    this.unread = 0;
    this.queue = [];
    this.announceTimer = null;
    bell?.addEventListener("click", () => this.toggle());
    this.renderBell();
  }

  get supported() {
    return typeof window.Notification === "function";
  }

  get enabled() {
    return this.supported && Notification.permission === "granted" && localStorage.getItem(STORAGE_KEY) !== "0";
  }

  async toggle() {
    if (!this.supported) return;
    if (this.enabled) {
      localStorage.setItem(STORAGE_KEY, "0");
    } else if (Notification.permission === "granted") {
      localStorage.setItem(STORAGE_KEY, "1");
    } else if (Notification.permission !== "denied") {
      const answer = await Notification.requestPermission();
      if (answer === "granted") localStorage.setItem(STORAGE_KEY, "1");
    }
    this.renderBell();
  }

  renderBell() {
    const bell = this.bell;
    if (!bell) return;
    bell.hidden = !this.supported;
    if (!this.supported) return;
    const denied = Notification.permission === "denied";
    bell.setAttribute("aria-pressed", String(this.enabled));
    bell.classList.toggle("on", this.enabled);
    bell.title = denied
      ? "Notifications are blocked in this browser's site settings"
      : this.enabled
        ? "Notifications of mentions and direct messages are on (click to turn off)"
        : "Notify me of mentions and direct messages";
    bell.setAttribute("aria-label", this.enabled ? "Notifications on" : "Notify me of mentions and direct messages");
    bell.disabled = denied;
  }

  /** The page's own title ("Lobby · Parley"), before the count. */
  setTitle(base) {
    this.base = base;
    this.renderTitle();
  }

  setUnread(total) {
    this.unread = total;
    this.renderTitle();
  }

  renderTitle() {
    const count = this.unread > 99 ? "99+" : String(this.unread);
    document.title = this.unread ? `(${count}) ${this.base}` : this.base;
  }

  /** Tells screen readers about a new message; a burst is read as one summary. */
  announce(text) {
    if (!this.announcer) return;
    this.queue.push(text);
    if (this.announceTimer) return;
    this.announceTimer = setTimeout(() => {
      const items = this.queue.splice(0);
      this.announceTimer = null;
      this.announcer.textContent = items.length > 3 ? `${items.length} new messages` : items.join(". ");
    }, 400);
  }

  /** Whether a mention arriving now should notify: the tab is hidden and the bell on. */
  get wanted() {
    return !pageVisible() && this.enabled;
  }

  /** A mention of the user, while the tab is hidden: a notification (if turned on). */
  mention(details) {
    return this.wanted ? this.show(details) : null;
  }

  /** direct: a message in a direct room ("bob sent you a message"). */
  show({ room, roomName, user, body, onClick, direct = false }) {
    const who = user ?? "Someone";
    const title = direct ? `${who} sent you a message` : `${who} mentioned you in ${roomName ?? room}`;
    const notification = new Notification(title, {
      body: snippet(body ?? "", 140),
      tag: `parley-${room}`,
      icon: document.querySelector("link[rel=icon]")?.href,
    });
    notification.onclick = () => {
      window.focus();
      notification.close();
      onClick?.();
    };
    return notification;
  }
}
