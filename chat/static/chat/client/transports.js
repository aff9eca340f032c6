/*
 * The three live transports of PROTOCOL.md (WebSocket, Server-Sent Events, long-poll)
 * behind one small interface, so everything above them is shared:
 *
 *   new Transport(spec, sink); connect(cursor); write(frame); close()
 *   sink: opened(), event(e), acked(clientId, seq), rejected(clientId, code, detail, retry),
 *         closed(wasOpen, reason)   reason: a WebSocket close code or an HTTP status
 *
 * `spec` says which stream (a room's or the inbox) and carries `env`, the globals this
 * module uses (WebSocket, EventSource, fetch, timers), so it runs in a browser as in a
 * test with fakes. Nothing here touches the DOM.
 */

export const DEFAULT_TIMING = {
  backoffBase: 500,
  backoffCap: 30000,
  // A transport that has not opened after this long is treated as failed: a WebSocket
  // held in CONNECTING by a middlebox would otherwise hang for minutes.
  openTimeout: 10000,
  pollTimeout: 25, // seconds the server may hold a long-poll
  // A long-poll answer is due after pollTimeout; past this margin the request is dead.
  pollGrace: 15000,
  postTimeout: 15000,
  probeFirst: 2000,
  probeCap: 10 * 60 * 1000,
};

/** The globals in use: the page's by default, fakes in tests. */
export function defaultEnv(overrides = {}) {
  const g = globalThis;
  return {
    WebSocket: g.WebSocket,
    EventSource: g.EventSource,
    fetch: g.fetch?.bind(g),
    setTimeout: (fn, ms) => g.setTimeout(fn, ms),
    clearTimeout: (id) => g.clearTimeout(id),
    base: g.location?.href ?? "http://localhost/",
    random: Math.random,
    ...overrides,
  };
}

function sleep(env, ms, signal) {
  return new Promise((resolve) => {
    const id = env.setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      env.clearTimeout(id);
      resolve();
    });
  });
}

export function urlWith(base, path, params = {}) {
  const url = new URL(path, base);
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined) url.searchParams.set(key, String(value));
  }
  return url;
}

/**
 * fetch() and read the JSON body (data is null when there is none); gives up after `ms`,
 * or when `outer` (an AbortSignal) aborts.
 */
export async function fetchJson(env, url, options, ms, outer) {
  const controller = new AbortController();
  const abort = () => controller.abort();
  const timer = env.setTimeout(abort, ms);
  outer?.addEventListener("abort", abort);
  try {
    const init = { credentials: "same-origin", ...options, signal: controller.signal };
    const response = await env.fetch(String(url), init);
    const data = response.status === 204 ? null : await response.json().catch(() => null);
    return { response, data };
  } finally {
    env.clearTimeout(timer);
    outer?.removeEventListener("abort", abort);
  }
}

export function backoffDelay(timing, attempt, random = Math.random) {
  const ceiling = Math.min(timing.backoffCap, timing.backoffBase * 2 ** attempt);
  // "Equal jitter": half fixed, half random, so clients dropped together by a server
  // restart do not all come back in the same instant.
  return ceiling / 2 + random() * (ceiling / 2);
}

/**
 * Writes over HTTP for SSE and long-poll, which only receive: the long-poll POST, one at
 * a time, so seqs come in the order the user wrote them, as on one WebSocket.
 */
export class Poster {
  constructor(spec, sink) {
    this.spec = spec;
    this.sink = sink;
    this.queue = Promise.resolve();
  }

  write(frame) {
    this.queue = this.queue.then(() => this.post(frame));
  }

  async post(frame) {
    const { env, timing } = this.spec;
    // A send is the v1 body (no "type"); everything else is a v2 typed frame.
    const { type, ...rest } = frame;
    const body = type === "send" ? rest : frame;
    const id = frame.client_id ?? null;
    let response;
    let data;
    try {
      ({ response, data } = await fetchJson(
        env,
        urlWith(env.base, this.spec.pollPath),
        {
          method: "POST",
          headers: { "Content-Type": "application/json", "X-CSRFToken": this.spec.csrfToken() },
          body: JSON.stringify(body),
        },
        timing.postTimeout,
      ));
    } catch {
      if (id) this.sink.rejected(id, "unavailable", "The server did not answer.");
      return;
    }
    if (!id) return; // read and typing: nothing waits for an answer
    if (response.ok && data && "seq" in data) {
      this.sink.acked(id, data.seq); // seq is null for a reaction that changed nothing
      return;
    }
    const error = data?.error ?? {};
    // Without a readable answer the write may or may not be stored: resending the same
    // client_id is safe either way.
    const unknown = response.ok || response.status >= 500;
    const code = error.code || (unknown ? "unavailable" : "bad_request");
    const retry = data?.retry_after ?? error.retry_after;
    this.sink.rejected(id, code, error.detail || `HTTP ${response.status}`, retry);
  }
}

export class WebSocketTransport {
  static label = "websocket";

  constructor(spec, sink) {
    this.spec = spec;
    this.sink = sink;
    this.socket = null;
    this.isOpen = false;
  }

  connect(cursor) {
    const { env } = this.spec;
    const url = urlWith(env.base, this.spec.wsPath, this.spec.streamParams?.(cursor) ?? {});
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    const socket = new env.WebSocket(String(url));
    this.socket = socket;
    socket.onmessage = (e) => this.receive(e.data);
    socket.onclose = (e) => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.sink.closed(this.isOpen, e?.code);
    };
  }

  receive(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    if (frame.type === "hello" && !this.isOpen) {
      // The socket is usable only once the server has let us in and said hello.
      this.isOpen = true;
      this.sink.opened();
    }
    if (frame.type === "ack") this.sink.acked(frame.client_id, frame.seq ?? null);
    else if (frame.type === "error") {
      this.sink.rejected(frame.client_id ?? null, frame.code, frame.detail, frame.retry_after);
    } else this.sink.event(frame);
  }

  write(frame) {
    const open = this.spec.env.WebSocket.OPEN ?? 1;
    if (this.socket?.readyState === open) this.socket.send(JSON.stringify(frame));
  }

  close() {
    const socket = this.socket;
    this.socket = null;
    socket?.close();
  }
}

export class SseTransport {
  static label = "sse";

  constructor(spec, sink) {
    this.spec = spec;
    this.sink = sink;
    this.poster = spec.pollPath ? new Poster(spec, sink) : null;
    this.source = null;
    this.isOpen = false;
  }

  connect(cursor) {
    const { env } = this.spec;
    const url = urlWith(env.base, this.spec.ssePath, this.spec.streamParams?.(cursor) ?? {});
    const source = new env.EventSource(String(url), { withCredentials: true });
    this.source = source;
    source.onopen = () => {
      this.isOpen = true;
      this.sink.opened();
    };
    // Named events never reach onmessage: each type needs its own listener.
    for (const type of this.spec.sseTypes) {
      source.addEventListener(type, (e) => this.receive(e.data));
    }
    source.onerror = () => {
      // EventSource would reconnect by itself, but with the first URL's `since` and its
      // own fixed delay; reopening through the Connection with the client's cursor
      // resumes just as exactly and keeps one backoff policy for all transports.
      if (this.source !== source) return;
      this.close();
      this.sink.closed(this.isOpen);
    };
  }

  receive(text) {
    let event;
    try {
      event = JSON.parse(text);
    } catch {
      return; // not JSON: not an event of ours
    }
    this.sink.event(event);
  }

  write(frame) {
    this.poster?.write(frame);
  }

  close() {
    this.source?.close();
    this.source = null;
  }
}

export class LongPollTransport {
  static label = "longpoll";

  constructor(spec, sink) {
    this.spec = spec;
    this.sink = sink;
    this.poster = spec.writable ? new Poster(spec, sink) : null;
    this.controller = null;
    this.isOpen = false;
  }

  connect(cursor) {
    this.controller = new AbortController();
    this.run(cursor, this.controller.signal);
  }

  async run(cursor, signal) {
    const { env, timing, poll } = this.spec;
    // The first poll asks for no wait, so the client is "live" at once instead of after
    // the first long hold.
    let timeout = 0;
    while (!signal.aborted) {
      let answer;
      try {
        const url = urlWith(env.base, this.spec.pollPath, poll.params(cursor, timeout));
        const wait = timeout * 1000 + timing.pollGrace;
        const init = { cache: "no-store" };
        const { response, data } = await fetchJson(env, url, init, wait, signal);
        if (!response.ok || data === null) {
          if (!signal.aborted) this.sink.closed(this.isOpen, response.status);
          return;
        }
        answer = data;
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
      const pause = poll.pause?.(answer, cursor) ?? 0;
      cursor = poll.next(answer, cursor, events);
      timeout = timing.pollTimeout;
      if (pause > 0) await sleep(env, pause, signal);
    }
  }

  write(frame) {
    this.poster?.write(frame);
  }

  close() {
    this.controller?.abort();
    this.controller = null;
  }
}

export const TRANSPORTS = {
  ws: WebSocketTransport,
  sse: SseTransport,
  longpoll: LongPollTransport,
};
