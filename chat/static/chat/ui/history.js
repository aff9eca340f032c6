/*
 * History of the open room from the API: older pages as the reader scrolls up, the gap
 * down to a message a reply points at, and single messages for reply previews.
 */

import { api } from "./dom.js";

const PAGE = 50;
const JUMP_PAGE = 200; // PROTOCOL.md's largest page
const JUMP_PAGES = 25; // a jump reads at most this many pages back

export class History {
  constructor(list) {
    this.list = list;
    this.slug = null;
    this.before = Infinity;
    this.hasMore = false;
    this.loading = null;
  }

  /** A room was opened with `events` (its newest page); `hasMore`: older ones exist. */
  reset(slug, events, hasMore) {
    this.slug = slug;
    const seqs = events.map((e) => e.seq).filter(Number.isInteger);
    this.before = seqs.length ? Math.min(...seqs) : Infinity;
    this.hasMore = Boolean(hasMore) && seqs.length > 0;
    this.loading = null;
  }

  base() {
    return `/api/rooms/${this.slug}/messages/`;
  }

  /** The newest page of a room (to open it): {events, hasMore} or null. */
  static async newest(slug) {
    const { ok, data } = await api(`/api/rooms/${slug}/messages/?limit=${PAGE}`);
    if (!ok || !Array.isArray(data?.events)) return null;
    return { events: data.events, hasMore: Boolean(data.has_more) };
  }

  async loadOlder(limit = PAGE) {
    if (!this.hasMore) return false;
    if (this.loading) return this.loading;
    const slug = this.slug;
    const query = Number.isFinite(this.before) ? `before=${this.before}&` : "";
    this.loading = api(`${this.base()}?${query}limit=${limit}`).then(({ ok, data }) => {
      this.loading = null;
      if (slug !== this.slug || !ok || !Array.isArray(data?.events)) return false;
      const seqs = data.events.map((e) => e.seq).filter(Number.isInteger);
      if (seqs.length) this.before = Math.min(this.before, ...seqs);
      this.hasMore = Boolean(data.has_more) && seqs.length > 0;
      this.list.prepend(data.events);
      return true;
    });
    return this.loading;
  }

  /** Loads until the room's message `seq` is on the page; true when it is. */
  async loadUntil(seq) {
    for (let page = 0; page < JUMP_PAGES && !this.list.get(seq); page += 1) {
      if (!this.hasMore || seq >= this.before) break;
      if (!(await this.loadOlder(JUMP_PAGE))) break;
    }
    return Boolean(this.list.get(seq));
  }

  /** One message (GET .../messages/<seq>/), for a reply whose original is not loaded. */
  async fetchMessage(seq) {
    const { ok, data } = await api(`${this.base()}${seq}/`);
    if (!ok || !data) return null;
    return data.event ?? data.message ?? (data.type ? data : null);
  }
}
