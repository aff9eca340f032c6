/*
 * One message line of #messages, built from a message record:
 *
 *   {seq, clientId, user, body, html, ts, editedAt, deleted, replyTo, reactions, mentions,
 *    attachments}
 *
 * The server's `html` is the only markup ever inserted (PROTOCOL.md: sanitized, a small
 * Markdown subset); `body` is always text. A message whose html is empty (an old event, a
 * client's own pending line) shows its body as text.
 */

import { isBot } from "./bots.js";
import { el, formatTime, hueClass, initial, snippet } from "./dom.js";
import { formatSize } from "./uploads.js";

export const DELETED_TEXT = "This message was deleted.";

/** The record of a history or live `message` event. */
export function recordOf(event) {
  return {
    seq: event.seq,
    clientId: event.client_id ?? null,
    user: event.user ?? null,
    body: event.deleted ? "" : (event.body ?? ""),
    html: event.deleted ? "" : (event.html ?? ""),
    ts: event.ts ?? null,
    editedAt: event.edited_at ?? null,
    deleted: Boolean(event.deleted),
    replyTo: Number.isInteger(event.reply_to) ? event.reply_to : null,
    reactions: Array.isArray(event.reactions)
      ? event.reactions.map((r) => ({ emoji: r.emoji, users: [...(r.users ?? [])] }))
      : [],
    mentions: Array.isArray(event.mentions) ? event.mentions : [],
    attachments: !event.deleted && Array.isArray(event.attachments) ? event.attachments : [],
  };
}

/**
 * ctx: {me, canReact, canModerate}. Returns the <li>; fill-ins (reply preview text) are
 * done by the list, which knows the other messages.
 */
export function renderLine(msg, ctx) {
  const line = el("li", { class: "msg", dataset: { user: msg.user ?? "" } });
  if (msg.seq !== undefined && msg.seq !== null) line.dataset.seq = String(msg.seq);
  line.dataset.clientId = msg.clientId ?? "";
  const name = msg.user ?? "someone";
  const time = el("time", { class: "msg-ts" });
  if (msg.ts) {
    const { short, long } = formatTime(msg.ts);
    time.dateTime = msg.ts;
    time.textContent = short;
    time.title = long;
  }
  line.append(
    el("span", { class: `avatar ${hueClass(name)}`, "aria-hidden": "true" }, initial(name)),
    el(
      "div",
      { class: "msg-main" },
      el(
        "div",
        { class: "msg-head" },
        el("span", { class: "msg-user" }, name),
        // Bots get a badge (the names come from the page: ui/bots.js).
        isBot(msg.user) ? el("span", { class: "badge bot-badge" }, "bot") : null,
        " ",
        time,
        el("span", { class: "msg-edited", hidden: true }, "(edited)"),
      ),
      el("div", { class: "msg-reply-slot" }),
      el("div", { class: "msg-body" }),
      el("div", { class: "msg-attachments" }),
      el("div", { class: "reactions" }),
    ),
  );
  if (msg.seq !== undefined && msg.seq !== null) line.append(renderActions(msg, ctx));
  updateLine(line, msg, ctx);
  return line;
}

/** Brings an existing line up to date with its record (edits, reactions, deletion). */
export function updateLine(line, msg, ctx) {
  line.classList.toggle("deleted", msg.deleted);
  line.classList.toggle("mine", Boolean(ctx.me) && msg.user === ctx.me);
  line.classList.toggle("mentions-me", Boolean(ctx.me) && !msg.deleted && msg.mentions.includes(ctx.me));
  renderBody(line.querySelector(".msg-body"), msg, ctx);
  renderAttachments(line.querySelector(".msg-attachments"), msg);
  line.querySelector(".msg-edited").hidden = !msg.editedAt || msg.deleted;
  if (msg.editedAt) line.querySelector(".msg-edited").title = formatTime(msg.editedAt).long;
  renderReactions(line.querySelector(".reactions"), msg, ctx);
  const slot = line.querySelector(".msg-reply-slot");
  if (!msg.replyTo || msg.deleted) slot.replaceChildren();
  else if (!slot.firstChild) slot.append(replyQuote(msg.replyTo));
  const actions = line.querySelector(".msg-actions");
  if (actions) actions.hidden = msg.deleted || !actions.childElementCount;
}

export function renderBody(node, msg, ctx) {
  node.classList.remove("as-text");
  if (msg.deleted) {
    node.textContent = DELETED_TEXT;
    return;
  }
  if (msg.html) {
    // Sanitized by the server (chat/render.py); the page's CSP is the second line.
    node.innerHTML = msg.html;
    if (ctx.me) {
      for (const mention of node.querySelectorAll(".mention")) {
        mention.classList.toggle("me", mention.dataset.user === ctx.me);
      }
    }
  } else {
    node.classList.add("as-text");
    node.textContent = msg.body;
  }
}

/**
 * Attachments: images as thumbnails that open the full file, other files as a card with
 * their name and size. Only the server's own /uploads/ URLs are ever used; a deleted
 * message shows none. Redrawn only when the set changes (an edit or a reaction keeps the
 * loaded images).
 */
export function renderAttachments(node, msg) {
  if (!node) return;
  const shown = msg.deleted ? [] : (msg.attachments ?? []).filter((a) => typeof a?.url === "string" && a.url.startsWith("/uploads/"));
  const key = shown.map((a) => a.id).join(" ");
  if (node.dataset.key === key) return;
  node.dataset.key = key;
  node.replaceChildren(...shown.map(attachmentNode));
  node.hidden = shown.length === 0;
}

function attachmentNode(a) {
  const thumb = typeof a.thumbnail_url === "string" && a.thumbnail_url.startsWith("/uploads/") ? a.thumbnail_url : null;
  if (thumb) {
    // The thumbnail's box before it loads (at most 400 px on the long side, as the server
    // makes it), so the list does not jump when it arrives.
    const scale = a.width && a.height ? Math.min(1, 400 / Math.max(a.width, a.height)) : 1;
    const width = a.width ? Math.max(1, Math.round(a.width * scale)) : null;
    const height = a.height ? Math.max(1, Math.round(a.height * scale)) : null;
    return el(
      "a",
      { class: "att-image", href: a.url, target: "_blank", rel: "noopener", title: `${a.name} (${formatSize(a.size)})` },
      el("img", { src: thumb, alt: a.name ?? "image", width, height, loading: "lazy", decoding: "async" }),
    );
  }
  return el(
    "a",
    { class: "att-file", href: a.url, download: a.name ?? "", title: `Download ${a.name}` },
    el("span", { class: "att-file-icon", "aria-hidden": "true" }, fileIcon(a.content_type)),
    el("span", { class: "att-file-text" }, el("span", { class: "att-file-name" }, a.name ?? "file"), el("span", { class: "att-file-size" }, formatSize(a.size))),
  );
}

function fileIcon(type) {
  if (typeof type !== "string") return "📄";
  if (type.startsWith("image/")) return "🖼";
  if (type === "application/pdf") return "📕";
  if (type.startsWith("text/")) return "📝";
  if (/zip|compressed|tar|gzip|7z|rar/.test(type)) return "🗜";
  if (type.startsWith("audio/")) return "🎵";
  if (type.startsWith("video/")) return "🎞";
  return "📄";
}

function renderReactions(node, msg, ctx) {
  const chips = msg.deleted ? [] : msg.reactions.filter((r) => r.users.length);
  node.replaceChildren(
    ...chips.map(({ emoji, users }) => {
      const mine = Boolean(ctx.me) && users.includes(ctx.me);
      const who = users.length > 6 ? `${users.slice(0, 6).join(", ")} and ${users.length - 6} more` : users.join(", ");
      return el(
        "button",
        {
          type: "button",
          class: `reaction${mine ? " mine" : ""}`,
          dataset: { emoji },
          "aria-pressed": String(mine),
          "aria-label": `${emoji} ${users.length}: ${who}${mine ? " (including you)" : ""}`,
          title: `${who} reacted with ${emoji}`,
          disabled: !ctx.canReact,
        },
        el("span", { class: "reaction-emoji" }, emoji),
        el("span", { class: "reaction-count" }, String(users.length)),
      );
    }),
  );
  node.hidden = chips.length === 0;
}

function replyQuote(target) {
  return el(
    "button",
    {
      type: "button",
      class: "reply-quote",
      dataset: { target: String(target), action: "jump" },
      "aria-label": "Show the message this replies to",
    },
    el("span", { class: "reply-user" }, ""),
    el("span", { class: "reply-text" }, "…"),
  );
}

/** Fills a reply preview from the original (a record, or null when it cannot be had). */
export function fillReplyQuote(line, original) {
  const quote = line.querySelector(".reply-quote");
  if (!quote) return;
  const user = quote.querySelector(".reply-user");
  const text = quote.querySelector(".reply-text");
  if (!original) {
    user.textContent = "";
    text.textContent = "Original message not available";
  } else if (original.deleted) {
    user.textContent = original.user ?? "";
    text.textContent = DELETED_TEXT;
  } else {
    user.textContent = original.user ?? "someone";
    text.textContent = snippet(original.body);
  }
  quote.setAttribute("aria-label", `Replying to ${user.textContent || "a message"}: ${text.textContent}. Show it`);
}

// 16x16 icons of the line's toolbar, drawn as SVG so they follow the text colour.
const ICONS = {
  react:
    "M8 1a7 7 0 1 0 0 14A7 7 0 0 0 8 1Zm0 1.5a5.5 5.5 0 1 1 0 11 5.5 5.5 0 0 1 0-11ZM5.75 6a.9.9 0 1 0 0 1.8.9.9 0 0 0 0-1.8Zm4.5 0a.9.9 0 1 0 0 1.8.9.9 0 0 0 0-1.8ZM5.1 9.4a.75.75 0 0 0-.2 1.04A3.7 3.7 0 0 0 8 12a3.7 3.7 0 0 0 3.1-1.56.75.75 0 1 0-1.24-.84A2.2 2.2 0 0 1 8 10.5a2.2 2.2 0 0 1-1.86-.9.75.75 0 0 0-1.04-.2Z",
  reply:
    "M6.8 3.2a.75.75 0 0 1 0 1.06L4.56 6.5H9.5A4.5 4.5 0 0 1 14 11v1.25a.75.75 0 0 1-1.5 0V11a3 3 0 0 0-3-3H4.56l2.24 2.24a.75.75 0 1 1-1.06 1.06L2.22 7.78a.75.75 0 0 1 0-1.06L5.74 3.2a.75.75 0 0 1 1.06 0Z",
  edit: "M11.1 1.9a1.75 1.75 0 0 1 2.47 0l.53.53a1.75 1.75 0 0 1 0 2.47L5.6 13.4a.75.75 0 0 1-.35.2l-3.25.85a.5.5 0 0 1-.61-.61l.85-3.25a.75.75 0 0 1 .2-.35L11.1 1.9Zm1.41 1.06a.25.25 0 0 0-.35 0L10.9 4.2l.9.9 1.24-1.24a.25.25 0 0 0 0-.35l-.53-.53ZM10.74 6.16l-.9-.9-6.3 6.3-.42 1.32 1.32-.42 6.3-6.3Z",
  delete:
    "M6.5 1.5h3a1 1 0 0 1 1 1V3h2.75a.75.75 0 0 1 0 1.5h-.3l-.6 8.4A1.75 1.75 0 0 1 10.6 14.5H5.4a1.75 1.75 0 0 1-1.75-1.6l-.6-8.4h-.3a.75.75 0 0 1 0-1.5H5.5v-.5a1 1 0 0 1 1-1Zm-1.9 3 .58 8.3a.25.25 0 0 0 .25.2h5.14a.25.25 0 0 0 .25-.2l.58-8.3H4.6ZM7 3h2v-.5H7V3Z",
};

function icon(name) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 16 16");
  svg.setAttribute("width", "16");
  svg.setAttribute("height", "16");
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS(ns, "path");
  path.setAttribute("fill", "currentColor");
  path.setAttribute("d", ICONS[name]);
  svg.append(path);
  return svg;
}

function renderActions(msg, ctx) {
  const mine = Boolean(ctx.me) && msg.user === ctx.me;
  const button = (action, label) =>
    el("button", { type: "button", class: `msg-action action-${action}`, dataset: { action }, "aria-label": label, title: label }, icon(action));
  const bar = el("div", { class: "msg-actions", role: "toolbar", "aria-label": "Message actions" });
  if (ctx.canReact) bar.append(button("react", "Add reaction"), button("reply", "Reply"));
  if (mine && ctx.canReact) bar.append(button("edit", "Edit"));
  if ((mine && ctx.canReact) || ctx.canModerate) bar.append(button("delete", "Delete"));
  if (!bar.childElementCount) bar.hidden = true;
  return bar;
}

/** Shows a pending or failed own send's state where its time would be. */
export function setStatus(line, text) {
  const time = line.querySelector(".msg-ts");
  time.classList.add("msg-status");
  time.removeAttribute("datetime");
  time.textContent = text;
  time.title = text;
}

/** The editor that replaces a body while its author edits it. */
export function renderEditor(text) {
  const area = el("textarea", { class: "edit-box", rows: "2", "aria-label": "Edit message" });
  area.value = text;
  return el(
    "form",
    { class: "msg-editor" },
    area,
    el(
      "div",
      { class: "msg-editor-bar" },
      el("span", { class: "hint" }, "Enter to save · Esc to cancel"),
      el("button", { type: "button", class: "button-quiet button-small", dataset: { edit: "cancel" } }, "Cancel"),
      el("button", { type: "submit", class: "button-small" }, "Save"),
    ),
  );
}
