/*
 * parley-client.js: Parley's live client (PROTOCOL.md v2), with no DOM, for any page.
 *
 *   // Import RoomClient and InboxClient from this module (/static/chat/parley-client.js).
 *   // (Not written as an import statement here: collectstatic rewrites those, even in a
 *   // comment, and one naming this very file never settles its hash.)
 *   const room = new RoomClient({ room: "lobby", since: 41, csrfToken: () => token });
 *   room.on("event", (e) => ...);   // durable events, exactly once, in seq order
 *   room.start();
 *   const { clientId, result } = room.send("hi", { replyTo: 40 });  // result: Promise<seq>
 *
 * RoomClient connects over WebSocket, SSE or long-poll (falling back in that order),
 * resumes with `since` after every drop, drops replayed duplicates by seq, and keeps
 * every write (send, edit, delete, react) with its client_id until the server acks it,
 * resending it after each reconnect: the server answers a repeat with the original seq.
 * InboxClient follows the user's inbox stream (/ws/me/ and its fallbacks).
 */

import { Connection } from "./client/connection.js";
import { DEFAULT_TIMING, backoffDelay, defaultEnv } from "./client/transports.js";

export { DEFAULT_TIMING, defaultEnv };

const ROOM_EVENTS = ["message", "edited", "reaction", "deleted", "presence", "typing", "read"];
const INBOX_EVENTS = ["hello", "activity", "read", "rooms"];
const TYPING_EVERY_MS = 2500;
const RATE_LIMIT_RETRIES = 8;

export function newClientId(prefix = "c") {
  const c = globalThis.crypto;
  if (c?.randomUUID) return `${prefix}-${c.randomUUID()}`;
  // randomUUID exists only in secure contexts (https, localhost); plain http on a LAN
  // address still has getRandomValues.
  const bytes = c.getRandomValues(new Uint8Array(16));
  return `${prefix}-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/** on(type, fn) -> off(); a throwing listener does not stop the others. */
class Emitter {
  constructor() {
    this.listeners = new Map();
  }

  on(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(fn);
    return () => this.listeners.get(type)?.delete(fn);
  }

  emit(type, payload) {
    for (const fn of this.listeners.get(type) ?? []) {
      try {
        fn(payload);
      } catch (error) {
        console.error("parley:", type, error);
      }
    }
  }
}

function specOf(options, paths) {
  return {
    env: defaultEnv(options.env),
    timing: { ...DEFAULT_TIMING, ...options.timing },
    csrfToken: options.csrfToken ?? (() => ""),
    ...paths,
  };
}

/** Browser online/offline events, when there is a window to listen on. */
function watchNetwork(env, connection) {
  const target = env.window ?? (globalThis.addEventListener ? globalThis : null);
  if (!target) return () => {};
  const online = () => connection.online();
  const offline = () => connection.offline();
  target.addEventListener("online", online);
  target.addEventListener("offline", offline);
  return () => {
    target.removeEventListener("online", online);
    target.removeEventListener("offline", offline);
  };
}

/**
 * One room's live stream and writes. Events: "state" {state, transport}, "hello",
 * "event" (durable: message, edited, reaction, deleted), "presence", "typing", "read",
 * "failed" {clientId, code, detail, frame} (a write the server refused for good).
 */
export class RoomClient extends Emitter {
  constructor(options) {
    super();
    const slug = options.room;
    const paths = {
      wsPath: `/ws/rooms/${slug}/`,
      ssePath: `/events/rooms/${slug}/`,
      pollPath: `/poll/rooms/${slug}/`,
      sseTypes: ROOM_EVENTS,
      writable: true,
      streamParams: (since) => ({ since }),
      poll: {
        params: (since, timeout) => ({ since, timeout }),
        next: (answer, since, events) => {
          const seqs = events.map((e) => e.seq).filter(Number.isInteger);
          return Number.isInteger(answer.last_seq) ? answer.last_seq : Math.max(since ?? 0, ...seqs);
        },
      },
      ...options.paths,
    };
    this.room = slug;
    this.spec = specOf(options, paths);
    this.env = this.spec.env;
    this.since = Number.isInteger(options.since) ? options.since : null;
    this.outbox = new Map(); // client_id -> {frame, resolve, reject, limited}
    this.retryAttempt = 0;
    this.retryTimer = null;
    this.readWanted = 0;
    this.readConfirmed = 0;
    this.lastTyping = -Infinity;
    this.connection = new Connection(this.spec, options.transport ?? "", {
      cursor: () => this.since,
      opened: () => this.opened(),
      event: (e) => this.receive(e),
      acked: (id, seq) => this.settle(id, seq),
      rejected: (id, code, detail, retry) => this.rejected(id, code, detail, retry),
      state: (state, transport) => this.emit("state", { state, transport }),
    });
  }

  /** The seq of the last durable event delivered (null before any is known). */
  get lastSeq() {
    return this.since;
  }

  get state() {
    return this.connection.state;
  }

  get transport() {
    return this.connection.name;
  }

  /** Writes not yet acknowledged, oldest first. */
  get pending() {
    return [...this.outbox.values()].map((entry) => entry.frame);
  }

  start() {
    this.unwatch = watchNetwork(this.env, this.connection);
    this.connection.start();
    return this;
  }

  /**
   * Stops delivering anything (listeners are dropped) but stays connected until every
   * write it holds is acknowledged or refused, then closes: a page switching rooms does
   * not lose a message sent just before.
   */
  retire() {
    this.listeners.clear();
    this.retiring = true;
    if (!this.outbox.size) this.close();
  }

  /** Ends the stream; unacknowledged writes stay unanswered (their promises pend). */
  close() {
    this.unwatch?.();
    this.env.clearTimeout(this.retryTimer);
    this.connection.stop();
  }

  send(body, { replyTo = null, clientId, attachments = [] } = {}) {
    const frame = { type: "send", body, client_id: clientId ?? newClientId("c") };
    if (replyTo !== null && replyTo !== undefined) frame.reply_to = replyTo;
    if (attachments?.length) frame.attachments = [...attachments]; // upload ids
    return this.write(frame);
  }

  edit(target, body) {
    return this.write({ type: "edit", target, body, client_id: newClientId("e") });
  }

  delete(target) {
    return this.write({ type: "delete", target, client_id: newClientId("d") });
  }

  react(target, emoji, op = "add") {
    return this.write({ type: "react", target, emoji, op, client_id: newClientId("r") });
  }

  /** Moves the read position forward; remembered and sent again after a reconnect. */
  read(seq) {
    if (!Number.isInteger(seq) || seq <= Math.max(this.readWanted, this.readConfirmed)) return;
    this.readWanted = seq;
    this.connection.write({ type: "read", seq });
  }

  typing() {
    const now = Date.now();
    if (now - this.lastTyping < TYPING_EVERY_MS) return;
    if (this.connection.write({ type: "typing" })) this.lastTyping = now;
  }

  write(frame) {
    let entry;
    const result = new Promise((resolve, reject) => {
      entry = { frame, resolve, reject, limited: 0 };
    });
    result.catch(() => {}); // a caller that ignores the outcome gets no unhandled rejection
    this.outbox.set(frame.client_id, entry);
    this.connection.write(frame);
    return { clientId: frame.client_id, result };
  }

  opened() {
    this.retryAttempt = 0;
    this.resend();
    if (this.readWanted > this.readConfirmed) {
      this.connection.write({ type: "read", seq: this.readWanted });
    }
  }

  resend() {
    // Same client_id as before: the server answers a repeat with the original seq.
    for (const { frame } of this.outbox.values()) this.connection.write(frame);
  }

  receive(event) {
    switch (event.type) {
      case "hello":
        // Without `since` the stream starts at the live edge: the hello says where.
        if (this.since === null && Number.isInteger(event.last_seq)) this.since = event.last_seq;
        if (Number.isInteger(event.read_seq)) {
          this.readConfirmed = Math.max(this.readConfirmed, event.read_seq);
        }
        this.emit("hello", event);
        return;
      case "presence":
      case "typing":
        this.emit(event.type, event);
        return;
      case "read":
        if (Number.isInteger(event.seq)) {
          this.readConfirmed = Math.max(this.readConfirmed, event.seq);
        }
        this.emit("read", event);
        return;
    }
    // Durable events arrive in seq order; anything at or below the last one is a replay
    // overlap already delivered (after a reconnect or a WebSocket probe taking over).
    if (!Number.isInteger(event.seq)) return;
    if (this.since !== null && event.seq <= this.since) return;
    this.since = event.seq;
    // Our own write's event may come before its ack (PROTOCOL.md guarantee 6).
    if (event.client_id && this.outbox.has(event.client_id)) this.settle(event.client_id, event.seq);
    this.emit("event", event);
  }

  settle(clientId, seq) {
    const entry = this.outbox.get(clientId);
    if (!entry) return;
    this.outbox.delete(clientId);
    this.retryAttempt = 0;
    entry.resolve(seq);
    if (this.retiring && !this.outbox.size) this.close();
  }

  rejected(clientId, code, detail, retryAfter) {
    const entry = clientId ? this.outbox.get(clientId) : null;
    if (!entry) {
      this.emit("error", { code, detail });
      return;
    }
    if (code === "unavailable") {
      this.retryLater(backoffDelay(this.spec.timing, 2 + this.retryAttempt++, this.env.random));
      return;
    }
    if (code === "rate_limited" && entry.limited++ < RATE_LIMIT_RETRIES) {
      // Sent too fast: the write goes out again once the server's window allows it.
      this.retryLater(Math.max(1, Number(retryAfter) || 2) * 1000);
      return;
    }
    this.outbox.delete(clientId);
    // retryAfter: a mute's end (forbidden), for the page's notice (ui/modmenu.js).
    const failure = { clientId, code, detail: detail || code, frame: entry.frame, retryAfter: retryAfter ?? null };
    entry.reject(Object.assign(new Error(failure.detail), failure));
    this.emit("failed", failure);
    if (this.retiring && !this.outbox.size) this.close();
  }

  retryLater(delay) {
    if (this.retryTimer) return;
    this.retryTimer = this.env.setTimeout(() => {
      this.retryTimer = null;
      this.resend();
    }, delay);
  }
}

/**
 * The signed-in user's inbox: counts across their rooms. Events: "state", "hello"
 * {user, rooms}, "activity", "read", "rooms", and "change" after any of them. `rooms`
 * holds the current room objects by slug.
 */
export class InboxClient extends Emitter {
  constructor(options = {}) {
    super();
    const paths = {
      wsPath: "/ws/me/",
      ssePath: "/events/me/",
      pollPath: "/poll/me/",
      sseTypes: INBOX_EVENTS,
      writable: false,
      // A new poll session starts with a hello; its token carries the session on.
      // Sessions live in one server process: behind workers that do not keep a client on
      // one of them, a token may be unknown where the next poll lands, and the answer is
      // a new session's hello at once. Each one in a row waits longer (1 s doubling, at
      // most 16 s) so that bouncing is slow polling, not a loop of requests.
      poll: {
        params: (session, timeout) => ({ session, timeout }),
        next: (answer, session) => answer.session ?? session,
        pause: (answer, session) => {
          const restarted = session != null && answer.session && answer.session !== session;
          this.restarts = restarted ? (this.restarts ?? 0) + 1 : 0;
          return restarted ? Math.min(1000 * 2 ** (this.restarts - 1), 16000) : 0;
        },
      },
      ...options.paths,
    };
    this.spec = specOf(options, paths);
    this.env = this.spec.env;
    this.rooms = new Map();
    this.user = null;
    this.connection = new Connection(this.spec, options.transport ?? "", {
      cursor: () => null, // every connection starts afresh with a hello
      opened: () => {},
      event: (e) => this.receive(e),
      acked: () => {},
      rejected: () => {},
      state: (state, transport) => this.emit("state", { state, transport }),
    });
  }

  get state() {
    return this.connection.state;
  }

  get transport() {
    return this.connection.name;
  }

  /** Unread messages and mentions summed over every room. */
  get totals() {
    let unread = 0;
    let mentions = 0;
    for (const room of this.rooms.values()) {
      unread += room.unread ?? 0;
      mentions += room.mentions ?? 0;
    }
    return { unread, mentions };
  }

  start() {
    this.unwatch = watchNetwork(this.env, this.connection);
    this.connection.start();
    return this;
  }

  close() {
    this.unwatch?.();
    this.connection.stop();
  }

  receive(event) {
    switch (event.type) {
      case "hello":
        this.user = event.user ?? null;
        this.replaceRooms(event.rooms);
        break;
      case "rooms":
        this.replaceRooms(event.rooms);
        break;
      case "activity":
      case "read": {
        const room = this.rooms.get(event.room);
        if (!room) break;
        if (Number.isInteger(event.unread)) room.unread = event.unread;
        if (Number.isInteger(event.mentions)) room.mentions = event.mentions;
        if (event.type === "read" && Number.isInteger(event.seq)) {
          room.read_seq = Math.max(room.read_seq ?? 0, event.seq);
        }
        if (event.type === "activity" && Number.isInteger(event.seq)) {
          room.last_seq = Math.max(room.last_seq ?? 0, event.seq);
        }
        break;
      }
      default:
        return;
    }
    this.emit(event.type, event);
    this.emit("change", event);
  }

  replaceRooms(rooms) {
    this.rooms = new Map((Array.isArray(rooms) ? rooms : []).map((r) => [r.slug, { ...r }]));
  }
}
