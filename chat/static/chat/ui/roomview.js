/*
 * RoomView: the open room. Binds one RoomClient (parley-client.js) to the message list,
 * the composer, presence, typing, the read tracker and the room header; open() switches
 * it to another room without a page load (the old client is closed, the new room's
 * history loaded, and its client resumes from the newest seq of that history).
 */

import { RoomClient } from "../parley-client.js";
import { Composer } from "./composer.js";
import { chatUrl, csrfToken, el, snippet } from "./dom.js";
import { History } from "./history.js";
import { MessageList } from "./messages.js";
import { ComposerGate, ModMenu } from "./modmenu.js";
import { ReactionPicker } from "./picker.js";
import { ReadTracker } from "./readtracker.js";
import { RoomHeader } from "./header.js";

const TYPING_SHOW_MS = 3000;
const STATE_LABELS = {
  connecting: (t) => `connecting (${t})…`,
  live: (t) => `live (${t})`,
  reconnecting: (t) => `reconnecting (${t})…`,
  offline: () => "offline",
  denied: () => "no access",
};

export class RoomView {
  /** config: {me, isStaff, maxChars, transport}; hooks: sidebar, notifier, confirm(text). */
  constructor(root, config, hooks) {
    this.root = root;
    this.config = config;
    this.hooks = hooks;
    this.room = null;
    this.client = null;
    this.typers = new Map();
    this.stateNode = root.querySelector("#conn-state");
    this.presenceNode = root.querySelector("#presence");
    this.typingNode = root.querySelector("#typing");
    this.jumpButton = root.querySelector("#jump-latest");
    this.list = new MessageList(root.querySelector("#messages"), this.context());
    this.history = new History(this.list);
    this.picker = new ReactionPicker();
    this.header = new RoomHeader(root, config, {
      changed: (room) => this.roomChanged(room),
      toast: (text) => this.toast(text),
    });
    this.composer = new Composer(root.querySelector("#composer"), {
      maxChars: config.maxChars,
      handlers: {
        send: (body, replyTo, attachments) => this.send(body, replyTo, attachments),
        typing: () => this.client?.typing(),
        editLast: () => this.editLast(),
      },
      // Attachments (ui/uploads.js): uploads go to the room shown; files drop on it.
      uploadUrl: () => (this.room ? `/api/rooms/${encodeURIComponent(this.room.slug)}/uploads/` : null),
      dropTarget: root,
    });
    this.tracker = new ReadTracker(this.list.node, (seq) => this.seen(seq));
    // Moderation (ui/modmenu.js): the moderator's menus; the moderated user's notices.
    this.mod = new ModMenu(root, {
      room: () => this.room,
      toast: (text) => this.toast(text),
      changed: (fields) => this.roomChanged(fields),
      deleteMessage: (seq) => this.client?.delete(seq),
    });
    this.gate = new ComposerGate(root, this.composer, () => `Message ${this.room?.kind === "direct" ? "" : "#"}${this.room?.name ?? this.room?.slug ?? ""}`);
    this.list.node.addEventListener("click", (e) => this.clicked(e));
    this.list.node.addEventListener("scroll", () => this.scrolled(), { passive: true });
    this.jumpButton?.addEventListener("click", () => {
      this.list.scrollToBottom();
      this.jumpButton.hidden = true;
    });
  }

  context() {
    const room = this.room;
    const canPost = Boolean(room && this.config.me && !room.is_archived && room.may_post !== false);
    const ctx = {
      me: this.config.me,
      canReact: canPost,
      canModerate: Boolean(canPost && (this.config.isStaff || room?.is_moderator)),
      fetchMessage: (seq) => this.history.fetchMessage(seq),
    };
    ctx.decorateLine = (line, record) => this.mod?.decorateLine(line, record, ctx);
    return ctx;
  }

  get slug() {
    return this.room?.slug ?? null;
  }

  /** Shows `room` (a room object) with `events` (its newest page, oldest first). */
  open(room, events, hasMore) {
    this.client?.retire(); // closes once its unacknowledged writes are through
    this.room = { ...room };
    this.typers.clear();
    this.renderTyping();
    this.presenceNode.replaceChildren();
    this.picker.close(false);
    this.composer.clear();
    this.gate.reset();
    this.header.show(this.room);
    this.applyPermissions();
    this.history.reset(room.slug, events, hasMore); // first: reply previews fetch through it
    this.list.reset(events, this.context());
    const readSeq = Number.isInteger(room.read_seq) ? room.read_seq : null;
    const divider = room.is_member && readSeq !== null ? this.list.setDivider(readSeq) : null;
    this.tracker.reset(readSeq ?? Infinity);
    if (divider) divider.scrollIntoView({ block: "center" });
    else this.list.scrollToBottom();
    if (this.jumpButton) this.jumpButton.hidden = true;

    const seqs = events.map((e) => e.seq).filter(Number.isInteger);
    const since = seqs.length ? Math.max(...seqs) : (room.last_seq ?? null);
    const client = new RoomClient({ room: room.slug, since, transport: this.config.transport, csrfToken });
    this.client = client;
    client.on("state", ({ state, transport }) => this.showState(state, transport));
    client.on("hello", (hello) => {
      if (Number.isInteger(hello.read_seq)) this.tracker.advanced(hello.read_seq);
    });
    client.on("event", (event) => this.apply(event));
    client.on("presence", (e) => this.showPresence(e.users));
    client.on("typing", (e) => this.showTyper(e.user));
    client.on("read", (e) => this.tracker.advanced(e.seq));
    client.on("failed", (f) => this.writeFailed(f));
    client.start();
    this.loadIfAtTop();
  }

  close() {
    this.client?.close();
    this.client = null;
  }

  applyPermissions() {
    const room = this.room;
    const ctx = this.context();
    this.list.ctx = ctx;
    this.mod.showHeader(room, ctx);
    if (this.gate.muted || this.gate.denied) return; // the notice says why, and until when
    this.composer.setEnabled(ctx.canReact, `Message ${room.kind === "direct" ? "" : "#"}${room.name ?? room.slug}`);
    const hint = this.root.querySelector("#composer-hint");
    if (hint) {
      hint.hidden = ctx.canReact;
      if (room.is_archived) hint.textContent = "This room is archived: it is read-only.";
      else if (!this.config.me) hint.replaceChildren(el("a", { href: `/accounts/login/?next=${chatUrl(`/rooms/${room.slug}/`)}` }, "Log in to post"), ".");
    }
  }

  roomChanged(room) {
    this.room = { ...this.room, ...room };
    this.header.show(this.room);
    this.applyPermissions();
    this.hooks.sidebar.roomChanged(this.room);
  }

  showState(state, transport) {
    this.stateNode.dataset.state = state;
    this.stateNode.textContent = (STATE_LABELS[state] ?? (() => state))(transport);
    if (state === "denied") this.gate.lost(); // 4403: kicked, banned or removed
  }

  apply(event) {
    const stick = this.list.isAtBottom();
    const record = this.list.apply(event);
    if (event.type !== "message" || !record) {
      if (stick) this.list.scrollToBottom();
      return;
    }
    this.clearTyper(event.user);
    const mine = event.user === this.config.me;
    if (mine) {
      this.list.removeDivider();
      if (!this.room.is_member && this.room.is_public) this.roomChanged({ is_member: true });
    }
    if (stick || mine) this.list.scrollToBottom();
    else if (this.jumpButton) this.jumpButton.hidden = false;
    if (!mine) {
      this.hooks.notifier.announce(`${event.user ?? "someone"}: ${snippet(event.body, 120)}`);
      if (!this.hooks.inboxLive() && record.mentions.includes(this.config.me)) {
        this.hooks.notifier.mention({ room: this.slug, roomName: this.room.name, user: event.user, body: event.body, onClick: () => this.jumpTo(event.seq) });
      }
    }
  }

  send(body, replyTo, attachments = []) {
    const { clientId, result } = this.client.send(body, { replyTo, attachments });
    this.list.addPending({ body, client_id: clientId, reply_to: replyTo });
    this.list.scrollToBottom();
    result.then(
      (seq) => {
        this.list.markAcked(clientId, seq);
        const slow = Number(this.room?.slow_mode_seconds) || 0;
        if (slow > 0 && !this.context().canModerate) this.gate.slow(slow); // slow mode
      },
      (failure) => this.list.markFailed(clientId, failure.detail),
    );
  }

  writeFailed(failure) {
    const { frame, detail } = failure;
    if (failure.code === "forbidden" && failure.retryAfter) this.gate.mute(failure.retryAfter);
    if (frame.type === "send") return; // shown on its own line
    if (frame.type === "edit") this.list.refresh(frame.target);
    const verb = { edit: "edit", delete: "delete", react: "react to" }[frame.type] ?? "change";
    this.toast(`Could not ${verb} the message: ${detail}`);
  }

  editLast() {
    const record = this.list.lastOwn();
    return record ? this.edit(record.seq) : false;
  }

  edit(seq) {
    return this.list.startEdit(seq, {
      onSave: (target, body) => this.client.edit(target, body),
      onClose: () => this.composer.focus(),
    });
  }

  async clicked(e) {
    const chip = e.target.closest(".reaction");
    const button = e.target.closest("[data-action]");
    const line = e.target.closest(".msg");
    const seq = Number(line?.dataset.seq);
    if (chip && this.context().canReact) {
      const record = this.list.get(seq);
      const entry = record?.reactions.find((r) => r.emoji === chip.dataset.emoji);
      this.client.react(seq, chip.dataset.emoji, entry?.users.includes(this.config.me) ? "remove" : "add");
      return;
    }
    if (!button) {
      if (line && matchMedia("(hover: none)").matches) line.classList.toggle("selected");
      return;
    }
    const action = button.dataset.action;
    if (action === "jump") {
      this.jumpTo(Number(button.dataset.target));
    } else if (action === "react") {
      this.picker.open(button, (emoji) => {
        const entry = this.list.get(seq)?.reactions.find((r) => r.emoji === emoji);
        if (!entry?.users.includes(this.config.me)) this.client.react(seq, emoji, "add");
      });
    } else if (action === "reply") {
      const record = this.list.get(seq);
      if (record) this.composer.replyTo(record);
    } else if (action === "edit") {
      this.edit(seq);
    } else if (action === "delete") {
      const record = this.list.get(seq);
      const mine = record?.user === this.config.me;
      const question = mine ? "Delete this message?" : `Delete this message by ${record?.user ?? "someone"}?`;
      if (await this.hooks.confirm(question, snippet(record?.body, 140), "Delete")) this.client.delete(seq);
      else button.focus();
    }
  }

  /** Scrolls to message `seq`, loading the history down to it when it is not on the page. */
  async jumpTo(seq) {
    if (this.list.highlight(seq)) return true;
    this.toast("Loading earlier messages…");
    const found = await this.history.loadUntil(seq);
    this.toast(found ? "" : "That message is no longer available.");
    return found && this.list.highlight(seq);
  }

  /** The tracker saw up to `seq`: read to the room's last event once the last line is seen. */
  seen(seq) {
    if (!this.room?.is_member || !this.client) return;
    const newest = Math.max(0, ...this.list.records.keys());
    const position = seq >= newest && this.client.lastSeq ? Math.max(seq, this.client.lastSeq) : seq;
    this.client.read(position);
    if (position >= (this.client.lastSeq ?? 0)) this.hooks.sidebar.read(this.slug, position);
  }

  scrolled() {
    if (this.jumpButton && this.list.isAtBottom()) this.jumpButton.hidden = true;
    this.loadIfAtTop();
  }

  async loadIfAtTop() {
    if (!this.list.isNearTop() || !this.history.hasMore) return;
    await this.history.loadOlder();
    // A page too short to scroll gives no scroll event to ask for more.
    const node = this.list.node;
    if (this.history.hasMore && node.scrollHeight <= node.clientHeight) this.loadIfAtTop();
  }

  showPresence(users) {
    const names = Array.isArray(users) ? users : [];
    this.presenceNode.replaceChildren(...names.map((name) => el("li", {}, name)));
    this.mod.decorateMembers(this.presenceNode, this.context()); // moderation
    const count = this.root.querySelector("#presence-count");
    if (count) count.textContent = String(names.length);
  }

  showTyper(user) {
    if (!user || user === this.config.me) return;
    clearTimeout(this.typers.get(user));
    this.typers.set(user, setTimeout(() => this.clearTyper(user), TYPING_SHOW_MS));
    this.renderTyping();
  }

  clearTyper(user) {
    if (!this.typers.has(user)) return;
    clearTimeout(this.typers.get(user));
    this.typers.delete(user);
    this.renderTyping();
  }

  renderTyping() {
    const names = [...this.typers.keys()];
    let text = "";
    if (names.length === 1) text = `${names[0]} is typing…`;
    else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
    else if (names.length > 2) text = "Several people are typing…";
    this.typingNode.textContent = text;
  }

  toast(text) {
    const node = this.root.querySelector("#toast");
    if (!node) return;
    clearTimeout(this.toastTimer);
    node.textContent = text;
    node.hidden = !text;
    if (text) this.toastTimer = setTimeout(() => (node.hidden = true), 5000);
  }
}

