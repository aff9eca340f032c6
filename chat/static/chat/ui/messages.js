/*
 * MessageList: the lines of #messages. The room log's messages in seq order, then the
 * user's own sends the log has not shown yet (pending, then acked), which stay below
 * the log until their `message` event replaces them. Also: day separators, runs of one
 * author's messages grouped, the "New messages" divider, and the inline editor.
 */

import { dayLabel, el, formatTime } from "./dom.js";
import { fillReplyQuote, recordOf, renderEditor, renderLine, setStatus, updateLine } from "./render.js";

const NEAR_EDGE_PX = 48;
const GROUP_GAP_MS = 5 * 60 * 1000;

export class MessageList {
  /** ctx: {me, canReact, canModerate, fetchMessage(seq) -> Promise<event|null>} */
  constructor(node, ctx) {
    this.node = node;
    this.ctx = ctx;
    this.records = new Map(); // seq -> record
    this.lines = new Map(); // seq -> <li>
    this.own = new Map(); // client_id -> <li>, own sends not yet in the log
    this.remote = new Map(); // seq -> Promise<record|null>, originals fetched for replies
    this.editing = null;
  }

  reset(events, ctx = this.ctx) {
    this.ctx = ctx;
    this.cancelEdit();
    this.records.clear();
    this.lines.clear();
    this.own.clear();
    this.remote.clear();
    const fragment = document.createDocumentFragment();
    for (const event of events) {
      if (event.type === "message" && Number.isInteger(event.seq)) fragment.append(this.make(event));
    }
    this.node.replaceChildren(fragment);
    this.decorate();
    for (const line of this.lines.values()) this.fillReply(line);
  }

  get oldestSeq() {
    let oldest = Infinity;
    for (const seq of this.records.keys()) oldest = Math.min(oldest, seq);
    return oldest;
  }

  get(seq) {
    return this.records.get(seq) ?? null;
  }

  lineOf(seq) {
    return this.lines.get(seq) ?? null;
  }

  /** The user's newest message that may still be edited. */
  lastOwn() {
    const mine = [...this.records.values()].filter((r) => r.user === this.ctx.me && !r.deleted);
    return mine.length ? mine.reduce((a, b) => (a.seq > b.seq ? a : b)) : null;
  }

  make(event) {
    const record = recordOf(event);
    const line = renderLine(record, this.ctx);
    this.records.set(record.seq, record);
    this.lines.set(record.seq, line);
    this.ctx.decorateLine?.(line, record); // moderation: the moderator's menu (ui/modmenu.js)
    return line;
  }

  /** A live durable event. Returns the record it added or changed (or null). */
  apply(event) {
    if (event.type === "message") {
      const own = this.own.get(event.client_id);
      if (own && event.user === this.ctx.me) {
        own.remove();
        this.own.delete(event.client_id);
      }
      const line = this.make(event);
      const firstOwn = this.own.values().next().value ?? null;
      this.node.insertBefore(line, firstOwn);
      this.decorate();
      this.fillReply(line);
      return this.records.get(event.seq);
    }
    const record = this.records.get(event.target);
    if (!record) return null;
    if (event.type === "edited") {
      record.body = event.body ?? "";
      record.html = event.html ?? "";
      record.mentions = Array.isArray(event.mentions) ? event.mentions : [];
      record.editedAt = event.ts ?? new Date().toISOString();
    } else if (event.type === "deleted") {
      record.deleted = true;
      record.body = "";
      record.html = "";
      record.reactions = [];
      if (this.editing?.seq === record.seq) this.cancelEdit();
    } else if (event.type === "reaction") {
      applyReaction(record, event);
    } else {
      return null;
    }
    this.refresh(record.seq);
    return record;
  }

  /** Redraws a line from its record (after a change, or to undo an optimistic edit). */
  refresh(seq) {
    const line = this.lines.get(seq);
    const record = this.records.get(seq);
    if (!line || !record) return;
    line.classList.remove("saving");
    updateLine(line, record, this.ctx);
    this.decorate();
    for (const quote of this.node.querySelectorAll(`.reply-quote[data-target="${seq}"]`)) {
      fillReplyQuote(quote.closest(".msg"), record);
    }
  }

  /** Older events from the history API (oldest first), put above the current lines. */
  prepend(events) {
    const anchor = this.node.querySelector(".msg");
    const anchorTop = anchor?.getBoundingClientRect().top;
    const fragment = document.createDocumentFragment();
    const added = [];
    const oldest = this.oldestSeq;
    for (const event of events) {
      // History shows each message in its current state, so its edited, reaction and
      // deleted events are already applied: only the messages themselves are lines.
      if (event.type !== "message" || this.records.has(event.seq)) continue;
      if (event.seq > oldest) continue; // only ever above what is shown
      added.push(this.make(event));
    }
    fragment.append(...added);
    this.node.prepend(fragment);
    this.decorate();
    for (const line of added) this.fillReply(line);
    // Keep the line that was on top where it was, so the reader does not lose their place.
    if (anchor) this.node.scrollTop += anchor.getBoundingClientRect().top - anchorTop;
    return added.length;
  }

  addPending(frame) {
    const record = recordOf({ user: this.ctx.me, body: frame.body, client_id: frame.client_id, reply_to: frame.reply_to });
    record.seq = null;
    const line = renderLine(record, this.ctx);
    line.classList.add("pending");
    setStatus(line, "sending…");
    this.node.append(line);
    this.own.set(frame.client_id, line);
    this.decorate();
    this.fillReply(line, record.replyTo);
  }

  markAcked(clientId, seq) {
    const line = this.own.get(clientId);
    if (!line) return;
    line.classList.remove("pending");
    line.dataset.seq = String(seq);
    setStatus(line, "sent");
  }

  markFailed(clientId, detail) {
    const line = this.own.get(clientId);
    if (!line) return;
    this.own.delete(clientId);
    line.classList.remove("pending");
    line.classList.add("failed");
    setStatus(line, `not sent: ${detail}`);
    this.decorate();
  }

  /** The "New messages" divider above the first message after `readSeq` not by me. */
  setDivider(readSeq) {
    this.removeDivider();
    if (!Number.isInteger(readSeq)) return null;
    const first = [...this.records.values()]
      .filter((r) => r.seq > readSeq && r.user !== this.ctx.me && !r.deleted)
      .reduce((a, b) => (a && a.seq < b.seq ? a : b), null);
    if (!first) return null;
    const divider = el(
      "li",
      { class: "new-divider", role: "separator", "aria-label": "New messages" },
      el("span", {}, "New messages"),
    );
    this.lines.get(first.seq).before(divider);
    this.decorate();
    return divider;
  }

  removeDivider() {
    const divider = this.node.querySelector(".new-divider");
    if (!divider) return;
    divider.remove();
    this.decorate();
  }

  /*
   * Day separators before the first message of each day, and "continued" on a message
   * that follows one of the same author within a few minutes (its name and avatar are
   * not repeated). Idempotent: it fixes only what is out of place.
   */
  decorate() {
    let previous = null;
    for (const node of [...this.node.children]) {
      if (node.classList.contains("day-divider")) {
        node.remove(); // put back below where it still belongs
        continue;
      }
      if (node.classList.contains("new-divider")) {
        if (previous) previous = { ...previous, broken: true }; // no grouping across it
        continue;
      }
      if (!node.classList.contains("msg")) continue;
      const time = node.querySelector(".msg-ts")?.dateTime || null;
      const day = time ? formatTime(time).day : previous?.day;
      const prevDay = previous?.day;
      if (day && day !== prevDay) {
        const label = dayLabel(day);
        const before = node.previousElementSibling?.classList.contains("new-divider") ? node.previousElementSibling : node;
        before.before(el("li", { class: "day-divider", role: "separator", "aria-label": label }, el("span", {}, label)));
      }
      const continued =
        previous !== null &&
        !previous.broken &&
        day === prevDay &&
        previous.user === node.dataset.user &&
        !node.classList.contains("deleted") &&
        !previous.deleted &&
        !node.matches(".pending, .failed") &&
        node.querySelector(".msg-edited")?.hidden !== false &&
        !node.querySelector(".reply-quote") &&
        (!time || !previous.time || new Date(time) - new Date(previous.time) < GROUP_GAP_MS);
      node.classList.toggle("continued", continued);
      previous = { user: node.dataset.user, day, time, deleted: node.classList.contains("deleted") };
    }
  }

  async fillReply(line, target = Number(line.querySelector(".reply-quote")?.dataset.target)) {
    if (!Number.isInteger(target) || !line.querySelector(".reply-quote")) return;
    const known = this.records.get(target);
    if (known) {
      fillReplyQuote(line, known);
      return;
    }
    if (!this.remote.has(target)) {
      const fetched = this.ctx.fetchMessage?.(target) ?? Promise.resolve(null);
      this.remote.set(target, fetched.then((event) => (event?.type === "message" ? recordOf(event) : null)).catch(() => null));
    }
    const original = await this.remote.get(target);
    if (line.isConnected) fillReplyQuote(line, this.records.get(target) ?? original);
  }

  /** Scrolls to a loaded message and flashes it; false when it is not loaded. */
  highlight(seq) {
    const line = this.lines.get(seq);
    if (!line) return false;
    line.scrollIntoView({ block: "center" });
    line.classList.remove("flash");
    void line.offsetWidth; // restart the animation
    line.classList.add("flash");
    line.tabIndex = -1;
    line.focus({ preventScroll: true });
    return true;
  }

  startEdit(seq, { onSave, onClose }) {
    this.cancelEdit();
    const record = this.records.get(seq);
    const line = this.lines.get(seq);
    if (!record || !line || record.deleted) return false;
    const form = renderEditor(record.body);
    const box = form.querySelector("textarea");
    const body = line.querySelector(".msg-body");
    const close = (save) => {
      if (this.editing?.form !== form) return;
      this.editing = null;
      line.classList.remove("editing");
      const text = box.value;
      form.remove();
      body.hidden = false;
      if (save && text.trim() && text !== record.body) {
        // Shown at once as text, marked as saving, until the `edited` event comes.
        body.classList.add("as-text");
        body.textContent = text;
        line.classList.add("saving");
        onSave(seq, text);
      }
      onClose?.();
    };
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      close(true);
    });
    form.querySelector("[data-edit=cancel]").addEventListener("click", () => close(false));
    box.addEventListener("keydown", (e) => {
      if (e.key === "Escape") {
        e.preventDefault();
        e.stopPropagation();
        close(false);
      } else if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        close(true);
      }
    });
    body.hidden = true;
    body.after(form);
    line.classList.add("editing");
    this.editing = { seq, form, close };
    box.focus();
    box.setSelectionRange(box.value.length, box.value.length);
    return true;
  }

  cancelEdit() {
    this.editing?.close(false);
  }

  isAtBottom() {
    const { scrollHeight, scrollTop, clientHeight } = this.node;
    return scrollHeight - scrollTop - clientHeight < NEAR_EDGE_PX;
  }

  isNearTop() {
    return this.node.scrollTop < NEAR_EDGE_PX;
  }

  scrollToBottom() {
    this.node.scrollTop = this.node.scrollHeight;
  }
}

/** A reaction event on a record's [{emoji, users}], idempotent either way. */
export function applyReaction(record, { emoji, user, op }) {
  let entry = record.reactions.find((r) => r.emoji === emoji);
  if (op === "remove") {
    if (!entry) return;
    entry.users = entry.users.filter((u) => u !== user);
    if (!entry.users.length) record.reactions = record.reactions.filter((r) => r !== entry);
    return;
  }
  if (!entry) {
    entry = { emoji, users: [] };
    record.reactions.push(entry);
  }
  if (!entry.users.includes(user)) entry.users.push(user);
}
