// RoomClient over each transport, against fakes: resume, order, dedupe, the write queue.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { RoomClient } from "../../chat/static/chat/parley-client.js";
import { FAST, env, makeFetch, until } from "./fakes.mjs";

function room(overrides = {}, options = {}) {
  const e = env(overrides);
  const client = new RoomClient({
    room: "lobby",
    env: e,
    timing: FAST,
    csrfToken: () => "tok",
    ...options,
  });
  const seen = [];
  const states = [];
  client.on("event", (event) => seen.push(event.seq));
  client.on("state", ({ state }) => states.push(state));
  return { client, e, seen, states };
}

const message = (seq, extra = {}) => ({ type: "message", room: "lobby", seq, body: `m${seq}`, ...extra });

describe("RoomClient over WebSocket", () => {
  it("resumes with since, delivers in order exactly once", async () => {
    const { client, e, seen, states } = room({}, { since: 5 });
    client.start();
    const ws = e.WebSocket.instances[0];
    assert.equal(ws.url.href, "ws://chat.test/ws/rooms/lobby/?since=5");
    assert.equal(client.state, "connecting");
    ws.hello({ last_seq: 7 });
    assert.equal(client.state, "live");
    assert.equal(client.transport, "websocket");
    for (const seq of [4, 5, 6, 7, 6]) ws.deliver(message(seq));
    assert.deepEqual(seen, [6, 7]);

    ws.drop();
    assert.equal(client.state, "reconnecting");
    await until(() => e.WebSocket.instances.length === 2);
    const again = e.WebSocket.instances[1];
    assert.equal(again.url.searchParams.get("since"), "7");
    again.hello({ last_seq: 8 });
    again.deliver(message(7));
    again.deliver(message(8));
    assert.deepEqual(seen, [6, 7, 8]);
    assert.deepEqual(states.slice(0, 3), ["connecting", "live", "reconnecting"]);
    client.close();
  });

  it("takes the hello's last_seq as the start when no since is given", () => {
    const { client, e, seen } = room();
    client.start();
    const ws = e.WebSocket.instances[0];
    assert.equal(ws.url.searchParams.has("since"), false);
    ws.hello({ last_seq: 41, read_seq: 38 });
    assert.equal(client.lastSeq, 41);
    ws.deliver(message(41));
    ws.deliver(message(42));
    assert.deepEqual(seen, [42]);
    client.close();
  });

  it("queues writes until the hello and resends unacked ones after a reconnect", async () => {
    const { client, e } = room({}, { since: 0 });
    client.start();
    const first = client.send("hello", { replyTo: 3 });
    const ws = e.WebSocket.instances[0];
    assert.deepEqual(ws.sent, []); // not open yet
    ws.hello();
    // Not sent on hello by itself: the reconnect logic's opened() resends the outbox.
    assert.deepEqual(ws.sent, [
      { type: "send", body: "hello", client_id: first.clientId, reply_to: 3 },
    ]);
    ws.drop();
    await until(() => e.WebSocket.instances.length === 2);
    const again = e.WebSocket.instances[1];
    again.hello();
    assert.equal(again.sent[0].client_id, first.clientId); // the same client_id again
    again.deliver({ type: "ack", client_id: first.clientId, seq: 9 });
    assert.equal(await first.result, 9);
    assert.deepEqual(client.pending, []);
    client.close();
  });

  it("counts the write's own event as its ack", async () => {
    const { client, e } = room({}, { since: 0 });
    client.start();
    e.WebSocket.instances[0].hello();
    const { clientId, result } = client.send("mine");
    e.WebSocket.instances[0].deliver(message(1, { client_id: clientId }));
    assert.equal(await result, 1);
    client.close();
  });

  it("writes edit, delete, react, read and typing frames", () => {
    const { client, e } = room({}, { since: 0 });
    client.start();
    const ws = e.WebSocket.instances[0];
    ws.hello();
    const edit = client.edit(4, "new text");
    const del = client.delete(4);
    const react = client.react(4, "👍", "remove");
    client.read(4);
    client.read(3); // backwards: nothing
    client.typing();
    client.typing(); // throttled
    assert.deepEqual(ws.sent, [
      { type: "edit", target: 4, body: "new text", client_id: edit.clientId },
      { type: "delete", target: 4, client_id: del.clientId },
      { type: "react", target: 4, emoji: "👍", op: "remove", client_id: react.clientId },
      { type: "read", seq: 4 },
      { type: "typing" },
    ]);
    ws.deliver({ type: "ack", client_id: react.clientId, seq: null }); // a no-op reaction
    return react.result.then((seq) => {
      assert.equal(seq, null);
      client.close();
    });
  });

  it("sends a read made while disconnected once it is back", async () => {
    const { client, e } = room({}, { since: 0 });
    client.start();
    client.read(12);
    const ws = e.WebSocket.instances[0];
    ws.hello({ read_seq: 2 });
    assert.deepEqual(ws.sent, [{ type: "read", seq: 12 }]);
    ws.deliver({ type: "read", room: "lobby", seq: 12 });
    ws.drop(1001);
    await until(() => e.WebSocket.instances.length === 2);
    e.WebSocket.instances[1].hello({ read_seq: 12 });
    assert.deepEqual(e.WebSocket.instances[1].sent, []); // confirmed already
    client.close();
  });

  it("fails a refused write, retries an unavailable or rate-limited one", async () => {
    const { client, e } = room({}, { since: 0 });
    const failed = [];
    client.on("failed", (f) => failed.push(f.code));
    client.start();
    const ws = e.WebSocket.instances[0];
    ws.hello();
    const big = client.send("x".repeat(10));
    ws.deliver({ type: "error", code: "too_large", detail: "too long", client_id: big.clientId });
    await assert.rejects(big.result, { code: "too_large", message: "too long" });
    assert.deepEqual(failed, ["too_large"]);

    const busy = client.send("later");
    ws.deliver({ type: "error", code: "unavailable", client_id: busy.clientId });
    await until(() => ws.sent.filter((f) => f.client_id === busy.clientId).length === 2);

    ws.deliver({ type: "error", code: "rate_limited", client_id: busy.clientId, retry_after: 0.01 });
    await until(() => ws.sent.filter((f) => f.client_id === busy.clientId).length === 3, 2000);
    ws.deliver({ type: "ack", client_id: busy.clientId, seq: 3 });
    assert.equal(await busy.result, 3);
    client.close();
  });

  it("keeps a retired client connected until its writes are acknowledged", async () => {
    const { client, e, seen } = room({}, { since: 0 });
    client.start();
    const ws = e.WebSocket.instances[0];
    ws.hello();
    const { clientId, result } = client.send("just before switching");
    client.retire();
    ws.deliver(message(1));
    assert.deepEqual(seen, []); // nobody listens any more
    ws.drop();
    await until(() => e.WebSocket.instances.length === 2);
    const again = e.WebSocket.instances[1];
    again.hello();
    assert.equal(again.sent[0].client_id, clientId); // still resent after a reconnect
    again.deliver({ type: "ack", client_id: clientId, seq: 2 });
    assert.equal(await result, 2);
    assert.equal(again.closed, true);
    assert.equal(client.state, "live"); // stopped, not failed

    const idle = room({}, { since: 0 });
    idle.client.start();
    idle.client.retire();
    assert.equal(idle.e.WebSocket.instances[0].closed, true);
  });

  it("stops for good when the server ends the socket with 4403", async () => {
    const { client, e, states } = room({}, { since: 0 });
    client.start();
    e.WebSocket.instances[0].hello();
    e.WebSocket.instances[0].drop(4403);
    assert.equal(client.state, "denied");
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(e.WebSocket.instances.length, 1);
    assert.equal(states.at(-1), "denied");
  });
});

describe("RoomClient over SSE", () => {
  it("falls back when WebSocket never opens, and writes over the long-poll POST", async () => {
    const fetch = makeFetch((request) => {
      if (request.method === "POST") {
        return request.body.type === "read" ? { status: 204 } : { status: 201, body: { seq: 11 } };
      }
      return "hold";
    });
    const { client, e, seen } = room({ fetch }, { since: 9 });
    client.start();
    e.WebSocket.instances[0].drop();
    await until(() => e.WebSocket.instances.length === 2);
    e.WebSocket.instances[1].drop();
    await until(() => e.EventSource.instances.length === 1);
    const source = e.EventSource.instances[0];
    assert.equal(source.url.href, "http://chat.test/events/rooms/lobby/?since=9");
    source.open();
    assert.equal(client.transport, "sse");
    assert.equal(client.state, "live");
    source.deliver(message(10));
    source.deliver({ type: "edited", seq: 11, target: 10, body: "x" });
    source.deliver({ type: "presence", users: ["alice"] });
    source.deliver(message(10));
    assert.deepEqual(seen, [10, 11]);

    const sent = client.send("over http");
    client.read(11);
    assert.equal(await sent.result, 11);
    await until(() => fetch.requests.length === 2);
    const [post, read] = fetch.requests;
    assert.equal(post.url.pathname, "/poll/rooms/lobby/");
    assert.equal(post.headers["X-CSRFToken"], "tok");
    assert.deepEqual(post.body, { body: "over http", client_id: sent.clientId });
    assert.deepEqual(read.body, { type: "read", seq: 11 });
    client.close();
  });

  it("probes WebSocket while on the fallback and takes it over, without duplicates", async () => {
    const { client, e, seen } = room({}, { since: 0, transport: "" });
    client.start();
    e.WebSocket.instances[0].drop();
    await until(() => e.WebSocket.instances.length === 2);
    e.WebSocket.instances[1].drop();
    await until(() => e.EventSource.instances.length === 1);
    e.EventSource.instances[0].open();
    e.EventSource.instances[0].deliver(message(1));
    await until(() => e.WebSocket.instances.length === 3); // the probe
    const probe = e.WebSocket.instances[2];
    assert.equal(probe.url.searchParams.get("since"), "1");
    probe.hello();
    assert.equal(client.transport, "websocket");
    assert.equal(e.EventSource.instances[0].closed, true);
    probe.deliver(message(1));
    probe.deliver(message(2));
    assert.deepEqual(seen, [1, 2]);
    client.close();
  });
});

describe("RoomClient over long-poll", () => {
  it("polls with since and timeout, follows last_seq, posts typed frames", async () => {
    let polls = 0;
    const fetch = makeFetch((request) => {
      if (request.method === "POST") return { status: 200, body: { seq: 20 } };
      polls += 1;
      if (polls === 1) return { body: { events: [message(3), message(4)], last_seq: 4 } };
      if (polls === 2) return { body: { events: [message(4), { type: "typing", user: "bob" }, message(5)], last_seq: 5 } };
      return "hold";
    });
    const { client, seen } = room({ fetch }, { since: 2, transport: "longpoll" });
    const typing = [];
    client.on("typing", (t) => typing.push(t.user));
    client.start();
    await until(() => polls === 3);
    const gets = fetch.requests.filter((r) => r.method === "GET");
    assert.equal(gets[0].url.search, "?since=2&timeout=0");
    assert.equal(gets[1].url.search, "?since=4&timeout=25");
    assert.equal(gets[2].url.search, "?since=5&timeout=25");
    assert.deepEqual(seen, [3, 4, 5]);
    assert.deepEqual(typing, ["bob"]);
    assert.equal(client.transport, "longpoll");

    const edit = client.edit(5, "fixed");
    assert.equal(await edit.result, 20);
    const post = fetch.requests.find((r) => r.method === "POST");
    assert.deepEqual(post.body, { type: "edit", target: 5, body: "fixed", client_id: edit.clientId });
    client.close();
  });

  it("gives up on a 403 and reconnects after a network error", async () => {
    let answers = [new Error("network down"), { status: 403, body: { error: { code: "forbidden" } } }];
    const fetch = makeFetch(() => answers.shift() ?? "hold");
    const { client, states } = room({ fetch }, { since: 0, transport: "longpoll" });
    client.start();
    await until(() => client.state === "denied");
    assert.deepEqual(states.at(-1), "denied");
    assert.equal(states.includes("live"), false);
    assert.equal(fetch.requests.length, 2);
  });
});
