// Fakes of the browser's WebSocket, EventSource and fetch, for parley-client.js in node.
// Each fake records what the client did and lets the test play the server's part.

export const FAST = {
  backoffBase: 5,
  backoffCap: 20,
  openTimeout: 300,
  pollTimeout: 25,
  pollGrace: 500,
  postTimeout: 500,
  probeFirst: 30,
  probeCap: 200,
};

export const tick = (ms = 0) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until `check()` is truthy (polls every 2 ms, fails after `ms`). */
export async function until(check, ms = 1000) {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${check}`);
    await tick(2);
  }
}

export function makeWebSocket() {
  class FakeWebSocket {
    static OPEN = 1;
    static instances = [];

    constructor(url) {
      this.url = new URL(url);
      this.readyState = 0;
      this.sent = [];
      this.closed = false;
      FakeWebSocket.instances.push(this);
    }

    send(text) {
      this.sent.push(JSON.parse(text));
    }

    close() {
      this.closed = true;
      this.readyState = 3;
    }

    // The server's side:
    hello(fields = {}) {
      this.readyState = 1;
      this.deliver({ type: "hello", room: "lobby", user: "alice", last_seq: 0, ...fields });
    }

    deliver(frame) {
      this.onmessage?.({ data: JSON.stringify(frame) });
    }

    drop(code = 1006) {
      this.readyState = 3;
      this.onclose?.({ code });
    }

    get last() {
      return FakeWebSocket.instances.at(-1);
    }
  }
  return FakeWebSocket;
}

export function makeEventSource() {
  class FakeEventSource {
    static instances = [];

    constructor(url) {
      this.url = new URL(url);
      this.listeners = new Map();
      this.closed = false;
      FakeEventSource.instances.push(this);
    }

    addEventListener(type, fn) {
      if (!this.listeners.has(type)) this.listeners.set(type, []);
      this.listeners.get(type).push(fn);
    }

    close() {
      this.closed = true;
    }

    // The server's side:
    open() {
      this.onopen?.();
    }

    deliver(event) {
      for (const fn of this.listeners.get(event.type) ?? []) fn({ data: JSON.stringify(event) });
    }

    fail() {
      this.onerror?.();
    }
  }
  return FakeEventSource;
}

/**
 * fetch whose answers come from `handler(request)`: return {status, body} (body made
 * JSON), or "hold" to keep the request open until it is aborted.
 */
export function makeFetch(handler) {
  const requests = [];
  async function fetch(url, init = {}) {
    const request = {
      url: new URL(url),
      method: init.method ?? "GET",
      headers: init.headers ?? {},
      body: init.body ? JSON.parse(init.body) : null,
    };
    requests.push(request);
    const answer = await handler(request);
    if (answer === "hold") {
      return new Promise((_, reject) => {
        const abort = () => reject(new DOMException("aborted", "AbortError"));
        if (init.signal?.aborted) abort();
        init.signal?.addEventListener("abort", abort);
      });
    }
    if (answer instanceof Error) throw answer;
    const { status = 200, body = null } = answer ?? {};
    return new Response(body === null ? null : JSON.stringify(body), { status });
  }
  fetch.requests = requests;
  return fetch;
}

export function env(overrides = {}) {
  return {
    base: "http://chat.test/rooms/lobby/",
    WebSocket: makeWebSocket(),
    EventSource: makeEventSource(),
    fetch: makeFetch(() => "hold"),
    window: null,
    random: () => 0.5,
    ...overrides,
  };
}
