// InboxClient: the hello, activity, read and rooms events keep per-room counts current.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { InboxClient } from "../../chat/static/chat/parley-client.js";
import { FAST, env, makeFetch, until } from "./fakes.mjs";

const ROOMS = [
  { slug: "lobby", name: "Lobby", last_seq: 10, read_seq: 8, unread: 2, mentions: 0 },
  { slug: "dev", name: "Dev", last_seq: 5, read_seq: 5, unread: 0, mentions: 0 },
];

describe("InboxClient", () => {
  it("keeps counts from hello, activity and read over WebSocket", async () => {
    const e = env();
    const inbox = new InboxClient({ env: e, timing: FAST });
    const kinds = [];
    inbox.on("change", (event) => kinds.push(event.type));
    inbox.start();
    const ws = e.WebSocket.instances[0];
    assert.equal(ws.url.href, "ws://chat.test/ws/me/");
    ws.readyState = 1;
    ws.deliver({ type: "hello", user: "alice", rooms: ROOMS });
    assert.equal(inbox.state, "live");
    assert.equal(inbox.user, "alice");
    assert.deepEqual(inbox.totals, { unread: 2, mentions: 0 });

    ws.deliver({ type: "activity", room: "dev", seq: 6, user: "bob", kind: "message", mention: true, unread: 1, mentions: 1 });
    assert.deepEqual(inbox.totals, { unread: 3, mentions: 1 });
    assert.equal(inbox.rooms.get("dev").last_seq, 6);
    ws.deliver({ type: "read", room: "lobby", seq: 10, unread: 0, mentions: 0 });
    assert.equal(inbox.rooms.get("lobby").read_seq, 10);
    assert.deepEqual(inbox.totals, { unread: 1, mentions: 1 });
    ws.deliver({ type: "rooms", rooms: [ROOMS[0]] });
    assert.deepEqual([...inbox.rooms.keys()], ["lobby"]);
    assert.deepEqual(kinds, ["hello", "activity", "read", "rooms"]);

    // A reconnect starts with a fresh hello: counts are whatever it says.
    ws.drop();
    await until(() => e.WebSocket.instances.length === 2);
    e.WebSocket.instances[1].deliver({ type: "hello", user: "alice", rooms: [] });
    assert.equal(inbox.rooms.size, 0);
    inbox.close();
  });

  it("carries the poll session on over long-poll", async () => {
    let polls = 0;
    const fetch = makeFetch(() => {
      polls += 1;
      if (polls === 1) {
        return { body: { session: "s-1", events: [{ type: "hello", user: "alice", rooms: ROOMS }] } };
      }
      if (polls === 2) {
        return { body: { events: [{ type: "read", room: "lobby", seq: 10, unread: 0, mentions: 0 }] } };
      }
      return "hold";
    });
    const e = env({ fetch });
    const inbox = new InboxClient({ env: e, timing: FAST, transport: "longpoll" });
    inbox.start();
    await until(() => polls === 3);
    const [first, second, third] = fetch.requests;
    assert.equal(first.url.pathname, "/poll/me/");
    assert.equal(first.url.searchParams.has("session"), false);
    assert.equal(second.url.searchParams.get("session"), "s-1");
    assert.equal(third.url.searchParams.get("session"), "s-1");
    assert.deepEqual(inbox.totals, { unread: 0, mentions: 0 });
    inbox.close();
  });

  it("slows down when every poll lands where its session is unknown", async () => {
    // Each answer is a new session: the token was unknown to the process that answered.
    const inbox = new InboxClient({ env: env(), timing: FAST, transport: "longpoll" });
    const { pause } = inbox.spec.poll;
    assert.equal(pause({ session: "s-1" }, null), 0); // the first hello is no restart
    const waits = [2, 3, 4, 5, 6, 7].map((n) => pause({ session: `s-${n}` }, `s-${n - 1}`));
    assert.deepEqual(waits, [1000, 2000, 4000, 8000, 16000, 16000]);
    assert.equal(pause({ events: [] }, "s-7"), 0); // the session held: back to normal
    assert.equal(pause({ session: "s-8" }, "s-7"), 1000);

    // And the loop waits that long before its next poll.
    let polls = 0;
    const fetch = makeFetch(() => {
      polls += 1;
      return polls === 1 ? { body: { session: "a", events: [] } } : polls === 2 ? { body: { session: "b", events: [] } } : "hold";
    });
    const slept = [];
    const base = env({ fetch });
    const e = { ...base, setTimeout: (fn, ms) => (ms === 1000 && slept.push(ms), globalThis.setTimeout(fn, ms === 1000 ? 0 : ms)), clearTimeout: (id) => globalThis.clearTimeout(id) };
    const polling = new InboxClient({ env: e, timing: FAST, transport: "longpoll" });
    polling.start();
    await until(() => polls === 3);
    assert.deepEqual(slept, [1000]);
    polling.close();
  });

  it("listens for the inbox's named SSE events", () => {
    const e = env();
    const inbox = new InboxClient({ env: e, timing: FAST, transport: "sse" });
    inbox.start();
    const source = e.EventSource.instances[0];
    assert.equal(source.url.pathname, "/events/me/");
    source.open();
    source.deliver({ type: "hello", user: "alice", rooms: ROOMS });
    source.deliver({ type: "activity", room: "lobby", seq: 11, unread: 3, mentions: 1 });
    assert.deepEqual(inbox.totals, { unread: 3, mentions: 1 });
    inbox.close();
  });

  it("stops when the stream is not there for this user (403 / 404)", async () => {
    const fetch = makeFetch(() => ({ status: 403, body: { error: { code: "forbidden" } } }));
    const inbox = new InboxClient({ env: env({ fetch }), timing: FAST, transport: "longpoll" });
    inbox.start();
    await until(() => inbox.state === "denied");
  });
});
