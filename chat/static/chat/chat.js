/*
 * Parley's browser client for the room page (the wire contract is PROTOCOL.md).
 *
 * One live connection at a time, over WebSocket, Server-Sent Events or long-poll, tried
 * in that order. The three transports deliver the same events, so everything above them
 * is shared: the message list, the outbox of unacknowledged sends, presence and typing.
 *
 *   Transport (WebSocketTransport | SseTransport | LongPollTransport)
 *       connect(since), send(msg), close()  ->  sink: opened, event, acked, rejected, closed
 *   Connection   picks the transport, reconnects with backoff, shows #conn-state
 *   Room         applies events by seq, keeps the outbox, wires the page together
 */
(() => {
  "use strict";

  const root = document.getElementById("room");
  if (!root) return;

  const BACKOFF_BASE_MS = 500;
  const BACKOFF_CAP_MS = 30000;
  // A transport that fails this many times in a row without ever opening is given up
  // for the next one: WebSocket is the one most often blocked by proxies and firewalls.
  const FAILURES_BEFORE_FALLBACK = 2;
  // A transport that has not opened after this long is treated as failed; a WebSocket
  // held in CONNECTING by a middlebox would otherwise hang the page for minutes.
  const OPEN_TIMEOUT_MS = 10000;
  const POLL_TIMEOUT_S = 25;
  // A long-poll answer is due after POLL_TIMEOUT_S; past this margin the request is dead.
  const POLL_GRACE_MS = 15000;
  const POST_TIMEOUT_MS = 15000;
  const RETRY_CAP_MS = 30000;
  const PROBE_FIRST_MS = 2000;
  const PROBE_CAP_MS = 10 * 60 * 1000;
  const TYPING_SEND_INTERVAL_MS = 2000;
  const TYPING_SHOW_MS = 3000;
  const HISTORY_PAGE = 50;
  const HISTORY_TIMEOUT_MS = 15000;
  const NEAR_EDGE_PX = 48;

  // ---------------------------------------------------------------- small helpers

  function readConfig(node) {
    const data = node.dataset;
    return {
      room: data.room,
      user: data.user || null,
      canPost: data.canPost === "1",
      lastSeq: Number.parseInt(data.lastSeq, 10) || 0,
      historyUrl: data.historyUrl,
      wsUrl: data.wsUrl,
      sseUrl: data.sseUrl,
      pollUrl: data.pollUrl,
      forced: data.transport || "",
    };
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text; // bodies are text, never HTML
    return node;
  }

  function urlWith(path, params) {
    const url = new URL(path, location.href);
    for (const [key, value] of Object.entries(params)) url.searchParams.set(key, String(value));
    return url;
  }

  function newClientId() {
    if (crypto.randomUUID) return `c-${crypto.randomUUID()}`;
    // randomUUID exists only in secure contexts (https, localhost); plain http on a LAN
    // address still has getRandomValues.
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return `c-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
  }

  function csrfToken() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    if (match) return decodeURIComponent(match[1]);
    return document.querySelector("input[name=csrfmiddlewaretoken]")?.value ?? "";
  }

  function backoffDelay(attempt, cap) {
    const ceiling = Math.min(cap, BACKOFF_BASE_MS * 2 ** attempt);
    // "Equal jitter": half fixed, half random, so clients dropped together by a server
    // restart do not all come back in the same instant.
    return ceiling / 2 + Math.random() * (ceiling / 2);
  }

  /**
   * fetch() and read the JSON body (data is null when it is not JSON); gives up after
   * `ms`, or when `outer` (an AbortSignal) aborts.
   */
  async function fetchJson(url, options, ms, outer) {
    const controller = new AbortController();
    const abort = () => controller.abort();
    const timer = setTimeout(abort, ms);
    outer?.addEventListener("abort", abort);
    try {
      const init = { credentials: "same-origin", ...options, signal: controller.signal };
      const response = await fetch(url, init);
      const data = await response.json().catch(() => null);
      return { response, data };
    } finally {
      clearTimeout(timer);
      outer?.removeEventListener("abort", abort);
    }
  }

  function formatTime(iso) {
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return { short: "", long: "" };
    const pad = (n) => String(n).padStart(2, "0");
    // UTC, like the lines the server renders into the page.
    const short = `${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}`;
    return { short, long: `${date.toISOString().slice(0, 10)} ${short} UTC` };
  }

  // ---------------------------------------------------------------- sending over HTTP

  /**
   * POSTs sends one at a time, for SSE and long-poll (which only receive). One at a time
   * keeps the order of seqs the order the user typed them in, as a WebSocket does.
   */
  class MessagePoster {
    constructor(url, sink) {
      this.url = url;
      this.sink = sink;
      this.queue = Promise.resolve();
    }

    send(msg) {
      this.queue = this.queue.then(() => this.post(msg));
    }

    async post(msg) {
      let response;
      let data;
      try {
        ({ response, data } = await fetchJson(
          this.url,
          {
            method: "POST",
            headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
            body: JSON.stringify({ body: msg.body, client_id: msg.client_id }),
          },
          POST_TIMEOUT_MS,
        ));
      } catch {
        this.sink.rejected(msg.client_id, "unavailable", "The server did not answer.");
        return;
      }
      if (response.ok && Number.isInteger(data?.seq)) {
        this.sink.acked(msg.client_id, data.seq);
        return;
      }
      const error = data?.error ?? {};
      // Without a readable answer the send may or may not be stored: resending the same
      // client_id is safe either way.
      const unknown = response.ok || response.status >= 500;
      const code = error.code || (unknown ? "unavailable" : "bad_request");
      this.sink.rejected(msg.client_id, code, error.detail || `HTTP ${response.status}`);
    }
  }

  // ---------------------------------------------------------------- transports

  class WebSocketTransport {
    static label = "websocket";

    constructor(config, sink) {
      this.path = config.wsUrl;
      this.sink = sink;
      this.socket = null;
      this.isOpen = false;
    }

    connect(since) {
      const url = urlWith(this.path, { since });
      url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
      const socket = new WebSocket(url);
      this.socket = socket;
      socket.onmessage = (e) => this.receive(e.data);
      socket.onclose = () => {
        if (this.socket !== socket) return;
        this.socket = null;
        this.sink.closed(this.isOpen);
      };
    }

    receive(text) {
      let frame;
      try {
        frame = JSON.parse(text);
      } catch {
        return;
      }
      switch (frame.type) {
        case "hello":
          // The socket is only usable once the server has accepted us into the room.
          this.isOpen = true;
          this.sink.opened();
          break;
        case "ack":
          this.sink.acked(frame.client_id, frame.seq);
          break;
        case "error":
          this.sink.rejected(frame.client_id ?? null, frame.code, frame.detail);
          break;
        default:
          this.sink.event(frame);
      }
    }

    send(msg) {
      this.write({ type: "send", body: msg.body, client_id: msg.client_id });
    }

    typing() {
      this.write({ type: "typing" });
    }

    write(frame) {
      if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(frame));
    }

    close() {
      const socket = this.socket;
      this.socket = null;
      socket?.close();
    }
  }

  class SseTransport {
    static label = "sse";

    constructor(config, sink) {
      this.path = config.sseUrl;
      this.sink = sink;
      this.poster = new MessagePoster(config.pollUrl, sink);
      this.source = null;
      this.isOpen = false;
    }

    connect(since) {
      const source = new EventSource(urlWith(this.path, { since }));
      this.source = source;
      source.onopen = () => {
        this.isOpen = true;
        this.sink.opened();
      };
      // Named events do not reach onmessage: each type needs its own listener.
      for (const type of ["message", "deleted", "presence", "typing"]) {
        source.addEventListener(type, (e) => this.receive(e.data));
      }
      source.onerror = () => {
        // EventSource would reconnect by itself (sending Last-Event-ID), but its URL
        // still carries the first `since`, and its fixed retry delay ignores our backoff
        // and state display. Reopening through the Connection with since=<last seq>
        // resumes just as exactly and keeps one policy for all transports.
        if (this.source !== source) return;
        this.close();
        this.sink.closed(this.isOpen);
      };
    }

    receive(text) {
      try {
        this.sink.event(JSON.parse(text));
      } catch {
        // not JSON: not an event of ours
      }
    }

    send(msg) {
      this.poster.send(msg);
    }

    close() {
      this.source?.close();
      this.source = null;
    }
  }

  class LongPollTransport {
    static label = "longpoll";

    constructor(config, sink) {
      this.path = config.pollUrl;
      this.sink = sink;
      this.poster = new MessagePoster(config.pollUrl, sink);
      this.controller = null;
      this.isOpen = false;
    }

    connect(since) {
      this.controller = new AbortController();
      this.run(since, this.controller.signal);
    }

    async run(since, signal) {
      // The first poll asks for no wait, so the page shows "live" at once instead of
      // after the first 25-second hold.
      let timeout = 0;
      while (!signal.aborted) {
        let answer;
        try {
          answer = await this.poll(since, timeout, signal);
        } catch {
          if (!signal.aborted) this.sink.closed(this.isOpen);
          return;
        }
        if (signal.aborted) return;
        if (!this.isOpen) {
          this.isOpen = true;
          this.sink.opened();
        }
        const events = Array.isArray(answer.events) ? answer.events : [];
        for (const event of events) this.sink.event(event);
        since = Number.isInteger(answer.last_seq) ? answer.last_seq : lastSeqOf(events, since);
        timeout = POLL_TIMEOUT_S;
      }
    }

    async poll(since, timeout, signal) {
      const url = urlWith(this.path, { since, timeout });
      const wait = timeout * 1000 + POLL_GRACE_MS;
      const { response, data } = await fetchJson(url, { cache: "no-store" }, wait, signal);
      if (!response.ok || data === null) throw new Error(`long-poll answered ${response.status}`);
      return data;
    }

    send(msg) {
      this.poster.send(msg);
    }

    close() {
      this.controller?.abort();
      this.controller = null;
    }
  }

  function lastSeqOf(events, fallback) {
    const seqs = events.map((e) => e.seq).filter(Number.isInteger);
    return Math.max(fallback, ...seqs);
  }

  const TRANSPORTS = { ws: WebSocketTransport, sse: SseTransport, longpoll: LongPollTransport };

  // ---------------------------------------------------------------- connection

  /**
   * Keeps one transport connected: falls back from WebSocket to SSE to long-poll when one
   * never opens, retries with exponential backoff, and shows the state in #conn-state.
   */
  class Connection {
    constructor(config, stateNode, handlers) {
      this.config = config;
      this.stateNode = stateNode;
      // handlers: since(), opened(), event(e), acked(id, seq), rejected(id, code, detail)
      this.handlers = handlers;
      const forced = TRANSPORTS[config.forced] ? config.forced : "";
      this.kinds = forced ? [forced] : ["ws", "sse", "longpoll"];
      this.kindIndex = 0;
      this.transport = null;
      this.live = false;
      this.everLive = false;
      this.attempt = 0;
      this.failuresInRow = 0;
      this.retryTimer = null;
      this.openTimer = null;
      this.probe = null;
      this.probeAttempt = 0;
      this.probeTimer = null;
      this.state = "connecting";
    }

    /** The transport in use, or the one the next attempt will use. */
    get name() {
      return TRANSPORTS[this.kinds[this.kindIndex]].label;
    }

    start() {
      window.addEventListener("online", () => this.online());
      window.addEventListener("offline", () => this.show("offline"));
      this.connect();
    }

    connect() {
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
      const transport = this.attach(TRANSPORTS[this.kinds[this.kindIndex]]);
      this.transport = transport;
      this.live = false;
      this.show(this.everLive ? "reconnecting" : "connecting");
      this.openTimer = setTimeout(() => this.giveUp(transport), OPEN_TIMEOUT_MS);
      transport.connect(this.handlers.since());
    }

    /**
     * A new transport whose stream reaches us only while it is ours (the current one or
     * the upgrade probe): a replaced transport's late events are dropped.
     */
    attach(Kind) {
      let transport = null;
      const sink = {
        opened: () => {
          if (transport === this.probe) this.adopt(transport);
          else if (transport === this.transport) this.opened();
        },
        event: (e) => {
          if (transport === this.transport) this.handlers.event(e);
        },
        closed: (wasOpen) => {
          if (transport === this.probe) this.probeFailed();
          else if (transport === this.transport) this.closed(wasOpen);
        },
        // Acks and errors are facts about a send whichever connection carried it.
        acked: (id, seq) => this.handlers.acked(id, seq),
        rejected: (id, code, detail) => this.handlers.rejected(id, code, detail),
      };
      transport = new Kind(this.config, sink);
      return transport;
    }

    opened() {
      clearTimeout(this.openTimer);
      this.live = true;
      this.everLive = true;
      this.attempt = 0;
      this.failuresInRow = 0;
      this.show("live");
      if (this.kindIndex > 0) this.scheduleProbe();
      else this.probeAttempt = 0;
      this.handlers.opened();
    }

    giveUp(transport) {
      if (this.transport !== transport || this.live) return;
      transport.close();
      this.closed(false);
    }

    closed(wasOpen) {
      clearTimeout(this.openTimer);
      this.stopProbe();
      this.transport = null;
      this.live = false;
      if (wasOpen) {
        this.failuresInRow = 0;
        // A connection that worked and then dropped points at the server or the network,
        // not at a blocked transport: try the preferred one again.
        this.kindIndex = 0;
      } else if (++this.failuresInRow >= FAILURES_BEFORE_FALLBACK) {
        this.failuresInRow = 0;
        this.kindIndex = Math.min(this.kindIndex + 1, this.kinds.length - 1);
      }
      this.scheduleReconnect();
    }

    scheduleReconnect() {
      const delay = backoffDelay(this.attempt++, BACKOFF_CAP_MS);
      this.retryTimer = setTimeout(() => this.connect(), delay);
      if (navigator.onLine === false) this.show("offline");
      else this.show(this.everLive ? "reconnecting" : "connecting");
    }

    /*
     * A fallback is also taken when the whole server was down for a while (a restart),
     * not only when WebSocket is blocked. While a fallback is live, a WebSocket is tried
     * in the background now and then, and taken over when it opens, so clients do not
     * stay on long-poll after every deploy. Each failed probe doubles the wait.
     */
    scheduleProbe() {
      clearTimeout(this.probeTimer);
      const delay = Math.min(PROBE_CAP_MS, PROBE_FIRST_MS * 2 ** this.probeAttempt++);
      this.probeTimer = setTimeout(() => this.startProbe(), delay);
    }

    startProbe() {
      if (!this.live || this.kindIndex === 0) return;
      this.probe = this.attach(TRANSPORTS[this.kinds[0]]);
      this.probeTimer = setTimeout(() => this.probeFailed(), OPEN_TIMEOUT_MS);
      this.probe.connect(this.handlers.since());
    }

    adopt(probe) {
      clearTimeout(this.probeTimer);
      this.probe = null;
      this.transport.close();
      this.transport = probe;
      this.kindIndex = 0;
      // Events the old transport delivered meanwhile come again in the probe's replay;
      // the Room drops them by seq.
      this.opened();
    }

    probeFailed() {
      this.stopProbe();
      if (this.live) this.scheduleProbe();
    }

    stopProbe() {
      clearTimeout(this.probeTimer);
      const probe = this.probe;
      this.probe = null;
      probe?.close();
    }

    online() {
      if (this.live) {
        this.show("live");
      } else if (!this.transport) {
        this.attempt = 0;
        this.connect();
      }
    }

    send(msg) {
      if (this.live) this.transport.send(msg);
    }

    typing() {
      if (this.live) this.transport.typing?.();
    }

    show(state) {
      this.state = state;
      const name = this.name;
      const labels = {
        connecting: `connecting (${name})…`,
        live: `live (${name})`,
        reconnecting: `reconnecting (${name})…`,
        offline: "offline",
      };
      this.stateNode.dataset.state = state;
      this.stateNode.textContent = labels[state];
    }
  }

  // ---------------------------------------------------------------- message list

  function renderLine({ seq, clientId, user, ts, body, deleted }) {
    const line = element("li", "msg");
    if (seq !== undefined) line.dataset.seq = String(seq);
    line.dataset.clientId = clientId ?? "";
    const time = element("time", "msg-ts");
    if (ts) {
      const { short, long } = formatTime(ts);
      time.dateTime = ts;
      time.textContent = short;
      time.title = long;
    }
    line.append(element("span", "msg-user", user ?? "someone"), " ", time, " ");
    line.append(element("span", "msg-body", body));
    if (deleted) showDeleted(line);
    return line;
  }

  function showDeleted(line) {
    line.classList.remove("pending", "failed");
    line.classList.add("deleted");
    line.querySelector(".msg-body").textContent = "message deleted";
  }

  /**
   * The lines of #messages: the room log in seq order, then the user's own sends that the
   * log has not shown yet (pending, then acked), which stay below the log until their
   * `message` event replaces them.
   */
  class MessageList {
    constructor(node, me) {
      this.node = node;
      this.me = me;
      this.bySeq = new Map();
      this.ownUnconfirmed = new Map(); // client_id -> line
      for (const line of node.querySelectorAll("li.msg[data-seq]")) {
        this.bySeq.set(Number(line.dataset.seq), line);
      }
    }

    get oldestSeq() {
      let oldest = Infinity;
      for (const seq of this.bySeq.keys()) oldest = Math.min(oldest, seq);
      return oldest;
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

    appendMessage(event) {
      const own = event.user === this.me ? this.ownUnconfirmed.get(event.client_id) : null;
      if (own) {
        own.remove();
        this.ownUnconfirmed.delete(event.client_id);
      }
      const line = renderLine(this.fieldsOf(event));
      const firstUnconfirmed = this.ownUnconfirmed.values().next().value ?? null;
      this.node.insertBefore(line, firstUnconfirmed);
      this.bySeq.set(event.seq, line);
    }

    markDeleted(seq) {
      const line = this.bySeq.get(seq);
      if (line) showDeleted(line);
    }

    addPending(msg) {
      const line = renderLine({ clientId: msg.client_id, user: this.me, body: msg.body });
      line.classList.add("pending");
      setStatus(line, "sending…");
      this.node.append(line);
      this.ownUnconfirmed.set(msg.client_id, line);
    }

    markAcked(clientId, seq) {
      const line = this.ownUnconfirmed.get(clientId);
      if (!line) return;
      line.classList.remove("pending");
      line.dataset.seq = String(seq);
      setStatus(line, "sent");
    }

    markFailed(clientId, detail) {
      const line = this.ownUnconfirmed.get(clientId);
      if (!line) return;
      this.ownUnconfirmed.delete(clientId);
      line.classList.remove("pending");
      line.classList.add("failed");
      setStatus(line, `not sent: ${detail}`);
    }

    /** Older events from the history API (oldest first), put above the current lines. */
    prepend(events) {
      const anchor = this.node.firstElementChild;
      const anchorTop = anchor?.getBoundingClientRect().top;
      const fragment = document.createDocumentFragment();
      for (const event of events) {
        if (event.type !== "message" || this.bySeq.has(event.seq)) continue;
        const line = renderLine(this.fieldsOf(event));
        fragment.append(line);
        this.bySeq.set(event.seq, line);
      }
      this.node.prepend(fragment);
      for (const event of events) if (event.type === "deleted") this.markDeleted(event.target);
      // Keep the line that was on top where it was, so the reader does not lose their place.
      if (anchor) this.node.scrollTop += anchor.getBoundingClientRect().top - anchorTop;
    }

    fieldsOf(event) {
      return {
        seq: event.seq,
        clientId: event.client_id,
        user: event.user,
        ts: event.ts,
        body: event.deleted ? "" : event.body ?? "",
        deleted: Boolean(event.deleted),
      };
    }
  }

  function setStatus(line, text) {
    const time = line.querySelector(".msg-ts");
    time.classList.add("msg-status");
    time.removeAttribute("datetime");
    time.textContent = text;
    time.title = text;
  }

  // ---------------------------------------------------------------- presence and typing

  function showPresence(node, users) {
    const names = Array.isArray(users) ? users : [];
    node.replaceChildren(...names.map((name) => element("li", null, name)));
  }

  class TypingIndicator {
    constructor(node, me) {
      this.node = node;
      this.me = me;
      this.timers = new Map(); // user -> timeout that hides them
    }

    show(user) {
      if (!user || user === this.me) return;
      clearTimeout(this.timers.get(user));
      this.timers.set(user, setTimeout(() => this.clear(user), TYPING_SHOW_MS));
      this.render();
    }

    clear(user) {
      if (!this.timers.has(user)) return;
      clearTimeout(this.timers.get(user));
      this.timers.delete(user);
      this.render();
    }

    render() {
      const names = [...this.timers.keys()];
      let text = "";
      if (names.length === 1) text = `${names[0]} is typing…`;
      else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
      else if (names.length > 2) text = "Several people are typing…";
      this.node.textContent = text;
    }
  }

  // ---------------------------------------------------------------- history

  class HistoryLoader {
    constructor(url, list, lastSeq) {
      this.url = url;
      this.list = list;
      const oldest = list.oldestSeq;
      this.before = Number.isFinite(oldest) ? oldest : lastSeq + 1;
      this.hasMore = this.before > 1;
      this.loading = false;
    }

    async loadIfAtTop() {
      if (this.loading || !this.hasMore || !this.list.isNearTop()) return;
      this.loading = true;
      try {
        const url = urlWith(this.url, { before: this.before, limit: HISTORY_PAGE });
        const { response, data: page } = await fetchJson(url, {}, HISTORY_TIMEOUT_MS);
        if (!response.ok || page === null) return; // try again on the next scroll
        const events = Array.isArray(page.events) ? page.events : [];
        this.list.prepend(events);
        const seqs = events.map((e) => e.seq).filter(Number.isInteger);
        if (seqs.length) this.before = Math.min(this.before, ...seqs);
        this.hasMore = Boolean(page.has_more) && seqs.length > 0;
      } catch {
        // network trouble: try again on the next scroll
      } finally {
        this.loading = false;
      }
      // A page too short to scroll gives no scroll event to ask for more.
      const node = this.list.node;
      if (this.hasMore && node.scrollHeight <= node.clientHeight) this.loadIfAtTop();
    }
  }

  // ---------------------------------------------------------------- composer

  function setUpComposer(form, canPost, { onSend, onTyping }) {
    const textarea = form.elements.body;
    const button = form.querySelector("button[type=submit]");
    if (!canPost) {
      textarea.disabled = true;
      if (button) button.disabled = true;
      return;
    }
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const body = textarea.value;
      if (!body.trim()) return;
      textarea.value = "";
      onSend(body);
      textarea.focus();
    });
    textarea.addEventListener("keydown", (e) => {
      if (e.key !== "Enter" || e.shiftKey || e.isComposing) return;
      e.preventDefault();
      if (textarea.value.trim()) form.requestSubmit();
    });
    textarea.addEventListener("input", () => {
      if (textarea.value) onTyping();
    });
  }

  // ---------------------------------------------------------------- the room

  class Room {
    constructor(node) {
      this.config = readConfig(node);
      this.list = new MessageList(node.querySelector("#messages"), this.config.user);
      this.lastSeq = Math.max(this.config.lastSeq, ...this.list.bySeq.keys());
      this.outbox = new Map(); // client_id -> {body, client_id}, until acked or failed
      this.retryAttempt = 0;
      this.retryTimer = null;
      this.lastTypingSent = 0;
      this.presenceNode = node.querySelector("#presence");
      this.typing = new TypingIndicator(node.querySelector("#typing"), this.config.user);
      this.history = new HistoryLoader(this.config.historyUrl, this.list, this.lastSeq);
      this.connection = new Connection(this.config, node.querySelector("#conn-state"), {
        since: () => this.lastSeq,
        opened: () => this.resendUnacked(),
        event: (e) => this.apply(e),
        acked: (id, seq) => this.acked(id, seq),
        rejected: (id, code, detail) => this.rejected(id, code, detail),
      });
      setUpComposer(node.querySelector("#composer"), this.config.canPost, {
        onSend: (body) => this.send(body),
        onTyping: () => this.userTyped(),
      });
      this.list.node.addEventListener("scroll", () => this.history.loadIfAtTop(), {
        passive: true,
      });
    }

    start() {
      this.list.scrollToBottom();
      this.connection.start();
      this.history.loadIfAtTop();
    }

    apply(event) {
      if (event.type === "presence") {
        showPresence(this.presenceNode, event.users);
        return;
      }
      if (event.type === "typing") {
        this.typing.show(event.user);
        return;
      }
      // Durable events arrive in seq order; anything at or below lastSeq is a replay
      // overlap already shown. A gap is not filled in: the server does not make them.
      if (!Number.isInteger(event.seq) || event.seq <= this.lastSeq) return;
      this.lastSeq = event.seq;
      const stick = this.list.isAtBottom();
      if (event.type === "message") {
        if (event.user === this.config.user) this.outbox.delete(event.client_id);
        this.typing.clear(event.user);
        this.list.appendMessage(event);
      } else if (event.type === "deleted") {
        this.list.markDeleted(event.target);
      }
      if (stick) this.list.scrollToBottom();
    }

    send(body) {
      const msg = { body, client_id: newClientId() };
      this.outbox.set(msg.client_id, msg);
      this.list.addPending(msg);
      this.list.scrollToBottom();
      this.connection.send(msg);
    }

    resendUnacked() {
      // Same client_id as before: the server answers a repeat with the original seq.
      for (const msg of this.outbox.values()) this.connection.send(msg);
    }

    acked(clientId, seq) {
      if (!this.outbox.delete(clientId)) return;
      this.retryAttempt = 0;
      this.list.markAcked(clientId, seq);
    }

    rejected(clientId, code, detail) {
      if (!clientId || !this.outbox.has(clientId)) {
        console.warn("parley:", code, detail);
        return;
      }
      if (code === "unavailable") {
        this.retryLater();
        return;
      }
      this.outbox.delete(clientId);
      this.list.markFailed(clientId, detail || code);
    }

    retryLater() {
      if (this.retryTimer) return;
      const delay = backoffDelay(2 + this.retryAttempt++, RETRY_CAP_MS);
      this.retryTimer = setTimeout(() => {
        this.retryTimer = null;
        this.resendUnacked();
      }, delay);
    }

    userTyped() {
      const now = Date.now();
      if (now - this.lastTypingSent < TYPING_SEND_INTERVAL_MS) return;
      this.lastTypingSent = now;
      this.connection.typing(); // only WebSocket carries typing frames
    }
  }

  const room = new Room(root);
  // For tests and debugging in the console.
  window.parley = {
    transport: () => room.connection.name,
    lastSeq: () => room.lastSeq,
    state: () => room.connection.state,
  };
  room.start();
})();
