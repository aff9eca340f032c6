/*
 * ReadTracker: moves the read position as messages are really seen. A line counts as
 * seen when at least half of it (or half the list's height, for a tall one) is inside
 * the message list while the tab is visible; the position is sent at most once per
 * DEBOUNCE_MS, and only forward. Lines are picked up as they are added to the list.
 */

import { pageVisible } from "./dom.js";

const DEBOUNCE_MS = 1000;

export class ReadTracker {
  /** onSeen(seq): the highest seq seen so far, debounced; called only while visible. */
  constructor(list, onSeen) {
    this.list = list;
    this.onSeen = onSeen;
    this.visible = new Set();
    this.position = 0;
    this.timer = null;
    this.intersections = new IntersectionObserver((entries) => this.changed(entries), {
      root: list,
      threshold: [0, 0.5, 1],
    });
    this.mutations = new MutationObserver((records) => {
      for (const record of records) {
        for (const node of record.addedNodes) this.watch(node);
        for (const node of record.removedNodes) {
          if (node.nodeType === 1) {
            this.intersections.unobserve(node);
            this.visible.delete(node);
          }
        }
      }
    });
    this.mutations.observe(list, { childList: true });
    for (const node of list.children) this.watch(node);
    document.addEventListener("visibilitychange", () => this.check());
    window.addEventListener("focus", () => this.check());
  }

  /** A new room (or a reload of it): the server's position, nothing seen yet. */
  reset(position) {
    clearTimeout(this.timer);
    this.timer = null;
    this.position = Number.isInteger(position) ? position : 0;
    this.visible.clear();
    for (const node of this.list.children) {
      this.intersections.unobserve(node);
      this.watch(node);
    }
  }

  /** The server says the position moved (another tab, or our own read confirmed). */
  advanced(position) {
    if (Number.isInteger(position) && position > this.position) this.position = position;
  }

  watch(node) {
    if (node.nodeType === 1 && node.classList.contains("msg") && node.dataset.seq) {
      this.intersections.observe(node);
    }
  }

  changed(entries) {
    const rootHeight = this.list.clientHeight || 1;
    for (const entry of entries) {
      const seen =
        entry.isIntersecting &&
        (entry.intersectionRatio >= 0.5 || entry.intersectionRect.height >= rootHeight / 2);
      if (seen) this.visible.add(entry.target);
      else this.visible.delete(entry.target);
    }
    this.check();
  }

  highestVisible() {
    let highest = 0;
    for (const node of this.visible) {
      const seq = Number(node.dataset.seq);
      if (node.isConnected && Number.isInteger(seq) && seq > highest) highest = seq;
    }
    return highest;
  }

  check() {
    if (!pageVisible() || this.timer) return;
    if (this.highestVisible() <= this.position) return;
    // Debounced: scrolling through a hundred lines sends one read, not a hundred.
    this.timer = setTimeout(() => {
      this.timer = null;
      if (!pageVisible()) return;
      const seq = this.highestVisible();
      if (seq <= this.position) return;
      this.position = seq;
      this.onSeen(seq);
    }, DEBOUNCE_MS);
  }

  stop() {
    clearTimeout(this.timer);
    this.intersections.disconnect();
    this.mutations.disconnect();
  }
}
