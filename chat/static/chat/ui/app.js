/*
 * The room page, put together: the sidebar fed by the inbox stream, the open room, the
 * room switching (history.pushState, no page load), keyboard shortcuts and dialogs.
 * The page passes its data in <script type="application/json" id="parley-data">, which
 * the CSP allows (it is not executed).
 */

import { InboxClient } from "../parley-client.js";
import { api, chatUrl } from "./dom.js"; // chatUrl: the app's prefix in a host project
import { History } from "./history.js";
import { Notifier } from "./notify.js";
import { RoomView } from "./roomview.js";
import { Sidebar } from "./sidebar.js";
import { Switcher } from "./switcher.js";

const ROOMS_REFRESH_MS = 30000; // the sidebar's pace when the inbox stream is not there

const app = document.getElementById("app");
const root = document.getElementById("room");
const data = JSON.parse(document.getElementById("parley-data")?.textContent || "null");

if (app && root && data) start();

function start() {
  const config = {
    me: data.me || null,
    isStaff: Boolean(data.is_staff),
    maxChars: data.max_chars || 4000,
    transport: data.transport || "",
  };
  const transportQuery = config.transport ? `?transport=${config.transport}` : "";
  const notifier = new Notifier({ bell: root.querySelector("#bell"), announcer: document.getElementById("announcer") });
  const sidebar = new Sidebar(app, {
    onTotals: ({ unread }) => notifier.setUnread(unread),
    onOpen: (room) => go(room.slug), // "New message": the direct room, made or found
  });
  sidebar.setRooms(data.rooms ?? []);
  let inbox = null;

  const view = new RoomView(root, config, {
    notifier,
    confirm,
    inboxLive: () => inbox?.state === "live",
    sidebar: {
      roomChanged(room) {
        if (room.is_member) sidebar.rooms.set(room.slug, { ...sidebar.rooms.get(room.slug), ...room });
        else sidebar.rooms.delete(room.slug);
        sidebar.setActive(room);
      },
      read: (slug, seq) => sidebar.update(slug, { unread: 0, mentions: 0, read_seq: seq }),
    },
  });

  function show(room, events, hasMore) {
    view.open(room, events, hasMore);
    sidebar.setActive(room);
    notifier.setTitle(`${room.name ?? room.slug} · Parley`);
  }

  /** The room object: the one-room API, else what the sidebar or the list knows. */
  async function roomObject(slug) {
    const one = await api(`/api/rooms/${slug}/`);
    if (one.ok && one.data?.slug === slug) return one.data;
    const known = sidebar.get(slug);
    if (known) return known;
    const all = await api("/api/rooms/");
    return all.data?.rooms?.find((r) => r.slug === slug) ?? null;
  }

  let navigation = 0;
  async function go(slug, { push = true } = {}) {
    sidebar.closeDrawer();
    if (!slug || slug === view.slug) return;
    const mine = ++navigation;
    root.setAttribute("aria-busy", "true");
    const [room, page] = await Promise.all([roomObject(slug), History.newest(slug)]);
    if (mine !== navigation) return; // a later choice won
    root.removeAttribute("aria-busy");
    if (!room || !page) {
      // No access or no such room: the server's page says which, properly.
      location.assign(chatUrl(`/rooms/${slug}/${transportQuery}`));
      return;
    }
    if (push) history.pushState({ slug }, "", chatUrl(`/rooms/${slug}/${transportQuery}`));
    show(room, page.events, page.hasMore);
    if (view.composer.enabled) view.composer.focus();
    else view.list.node.focus();
  }

  // Links to rooms (sidebar, anywhere in the page) switch in place; a modified click
  // (new tab, new window) is left to the browser.
  document.addEventListener("click", (e) => {
    const link = e.target.closest("a[data-slug]");
    if (!link || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    go(link.dataset.slug);
  });
  window.addEventListener("popstate", (e) => {
    const slug = e.state?.slug ?? location.pathname.match(/\/rooms\/([^/]+)\/$/)?.[1]; // any prefix
    go(slug, { push: false });
  });
  history.replaceState({ slug: data.room.slug }, "", location.href);

  const switcher = new Switcher(document.getElementById("switcher"), {
    go,
    rooms: async () => {
      const mine = sidebar.ordered();
      const { data: all } = await api("/api/rooms/");
      const others = (all?.rooms ?? []).filter((r) => !mine.some((m) => m.slug === r.slug));
      return [...mine, ...others.map((r) => ({ ...r, is_member: r.is_member ?? !config.me }))];
    },
  });
  root.querySelector("#switch-button")?.addEventListener("click", () => switcher.open());

  document.addEventListener("keydown", (e) => {
    if (e.altKey && !e.ctrlKey && !e.metaKey && (e.key === "ArrowUp" || e.key === "ArrowDown")) {
      e.preventDefault();
      go(sidebar.neighbour(e.key === "ArrowUp" ? -1 : 1)?.slug);
    } else if ((e.ctrlKey || e.metaKey) && !e.altKey && e.key.toLowerCase() === "k") {
      e.preventDefault();
      switcher.open();
    }
  });

  if (config.me) inbox = startInbox();
  show(data.room, data.events ?? [], data.has_more);
  // A search result links to /rooms/<slug>/?at=<seq>: open the room at that message
  // (loading older history down to it if need be), flashed and focused.
  const at = Number(new URLSearchParams(location.search).get("at"));
  if (Number.isInteger(at) && at > 0) view.jumpTo(at);
  // For tests and debugging in the console.
  window.parley = {
    transport: () => view.client?.transport,
    lastSeq: () => view.client?.lastSeq,
    state: () => view.client?.state,
    room: () => view.slug,
    inbox: () => inbox?.state ?? null,
    go,
  };

  function startInbox() {
    const client = new InboxClient({ transport: config.transport });
    const refill = () => sidebar.setRooms([...client.rooms.values()]);
    client.on("hello", refill);
    client.on("rooms", () => {
      refill();
      // The open room's object too: a moderator's slow mode, say, holds from now on.
      const open = client.rooms.get(view.slug);
      if (open) view.roomChanged(open);
    });
    client.on("read", (e) => sidebar.update(e.room, { unread: e.unread, mentions: e.mentions, read_seq: e.seq }));
    client.on("activity", (e) => {
      sidebar.update(e.room, { unread: e.unread, mentions: e.mentions, last_seq: e.seq });
      // A direct message notifies like a mention (ui/notify.js decides on the bell).
      const direct = e.kind === "message" && sidebar.get(e.room)?.kind === "direct";
      if ((e.mention || direct) && e.user !== config.me) notifyMention(e, direct);
    });
    client.on("state", ({ state }) => {
      if (state === "denied") pollRooms();
    });
    return client.start();
  }

  async function notifyMention(activity, direct = false) {
    // Decided when the mention arrives, not after the text is fetched.
    if (!notifier.wanted) return;
    const room = sidebar.get(activity.room) ?? { slug: activity.room };
    let body = "";
    if (activity.room === view.slug) body = view.list.get(activity.seq)?.body ?? "";
    else {
      const { ok, data: answer } = await api(`/api/rooms/${activity.room}/messages/${activity.seq}/`);
      if (ok) body = (answer?.event ?? answer)?.body ?? "";
    }
    notifier.show({
      direct,
      room: activity.room,
      roomName: room.name,
      user: activity.user,
      body,
      onClick: async () => {
        await go(activity.room);
        view.jumpTo(activity.seq);
      },
    });
  }

  /** Without an inbox stream (an older server): the rooms API, now and then. */
  async function pollRooms() {
    const { ok, data: answer } = await api("/api/rooms/");
    const rooms = answer?.rooms;
    if (ok && Array.isArray(rooms) && rooms.some((r) => "is_member" in r)) sidebar.setRooms(rooms);
    setTimeout(pollRooms, ROOMS_REFRESH_MS);
  }
}

/** A modal yes/no question (the <dialog> in the page); resolves true for yes. */
function confirm(question, detail, yes = "OK") {
  const dialog = document.getElementById("confirm-dialog");
  dialog.querySelector("#confirm-title").textContent = question;
  dialog.querySelector("#confirm-text").textContent = detail ?? "";
  dialog.querySelector("#confirm-text").hidden = !detail;
  dialog.querySelector("button[value=ok]").textContent = yes;
  dialog.returnValue = "";
  dialog.showModal();
  dialog.querySelector("button[value=cancel]").focus();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}
