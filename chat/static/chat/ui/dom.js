// Small DOM and HTTP helpers shared by the UI modules.

/**
 * el("li", {class: "msg", dataset: {seq: 4}, onclick}, child, "text", ...).
 * Strings become text nodes: nothing here ever parses a string as HTML.
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  if (match) return decodeURIComponent(match[1]);
  return document.querySelector("input[name=csrfmiddlewaretoken]")?.value ?? "";
}

// Where the chat app's URLs live: "/" in Parley's own project, "/chat/" (say) in a host
// project that includes chat.urls under a prefix; the page tells (views.py "base").
const pageData = typeof document === "undefined" ? null : JSON.parse(document.getElementById("parley-data")?.textContent || "null");
export const BASE = (pageData && pageData.base) || "/";

/** A chat path written from the root ("/api/rooms/") under the app's prefix. */
export const chatUrl = (path) => (path.startsWith("/") ? BASE + path.slice(1) : path);

/** JSON over fetch: {ok, status, data}; network trouble is {ok: false, status: 0}.
 *  ``path`` is a chat path from the root ("/api/rooms/"), put under the app's prefix. */
export async function api(path, { method = "GET", body, timeout = 15000 } = {}) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeout);
  const headers = { Accept: "application/json" };
  if (method !== "GET") {
    headers["X-CSRFToken"] = csrfToken();
    if (body !== undefined) headers["Content-Type"] = "application/json";
  }
  try {
    const response = await fetch(chatUrl(path), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
      signal: controller.signal,
    });
    const data = await response.json().catch(() => null);
    return { ok: response.ok, status: response.status, data };
  } catch {
    return { ok: false, status: 0, data: null };
  } finally {
    clearTimeout(timer);
  }
}

const pad = (n) => String(n).padStart(2, "0");

/** The reader's local time: "14:05", and "Mon 21 Nov 2026, 14:05" for the tooltip. */
export function formatTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return { short: "", long: "", day: "" };
  const short = `${pad(date.getHours())}:${pad(date.getMinutes())}`;
  const long = date.toLocaleString(undefined, {
    weekday: "short",
    year: "numeric",
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
  });
  const day = `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
  return { short, long, day };
}

/** "Today", "Yesterday" or "Monday, 21 November" for a YYYY-MM-DD local day. */
export function dayLabel(day) {
  const [y, m, d] = day.split("-").map(Number);
  const date = new Date(y, m - 1, d);
  const today = new Date();
  const startOfToday = new Date(today.getFullYear(), today.getMonth(), today.getDate());
  const diff = Math.round((startOfToday - date) / 86400000);
  if (diff === 0) return "Today";
  if (diff === 1) return "Yesterday";
  const options = { weekday: "long", month: "long", day: "numeric" };
  if (y !== today.getFullYear()) options.year = "numeric";
  return date.toLocaleDateString(undefined, options);
}

/** A stable colour (one of 8 CSS classes) for a username. */
export function hueClass(name) {
  let hash = 0;
  for (const ch of name ?? "") hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return `hue-${hash % 8}`;
}

export function initial(name) {
  return (name ?? "?").trim().charAt(0).toUpperCase() || "?";
}

/** The first line of a text, at most `max` characters, for previews. */
export function snippet(text, max = 90) {
  const line = (text ?? "").replace(/\s+/g, " ").trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

/** Whether the reader is looking at the page: tab visible (document.hidden is false). */
export function pageVisible() {
  return document.visibilityState === "visible";
}
