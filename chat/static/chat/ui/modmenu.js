/*
 * Moderation in the room page (PROTOCOL.md "Moderation"), both sides of it.
 *
 * ModMenu, for moderators (staff, or the room's moderators: the room object's
 * is_moderator): a "Moderate" button on each message by someone else and on each name in
 * the people list opens a dialog to delete the message, mute the author (10 min, 1 hour,
 * 1 day), kick or ban them, with a reason; a slow-mode control in the room header. Every
 * choice is one POST /api/rooms/<slug>/moderation/ (or the message's DELETE); the server
 * decides and answers (a moderator cannot be muted, and so on), shown as a toast.
 *
 * ComposerGate, for the user moderated: a notice above the composer when a write is
 * refused for a mute ("You are muted for 9 more minutes", the composer disabled until
 * retry_after passes), when access ends (the 4403 close: kicked, banned or removed;
 * no reconnect loop, a link to reload), and a slow-mode countdown after each send in a
 * room with slow mode on (the send button waits; typing goes on).
 */

import { api, el } from "./dom.js";

export const MUTE_CHOICES = [
  [10, "Mute 10 min"],
  [60, "Mute 1 hour"],
  [1440, "Mute 1 day"],
];
export const SLOW_CHOICES = [
  [0, "Off"],
  [10, "10 s"],
  [30, "30 s"],
  [60, "1 min"],
  [300, "5 min"],
  [900, "15 min"],
];
const SVG = "http://www.w3.org/2000/svg";
// A shield: the moderator's mark, drawn like the other action icons (16 x 16).
const SHIELD =
  "M8 1.2 2.8 3v4.3c0 3.2 2.2 6 5.2 7.5 3-1.5 5.2-4.3 5.2-7.5V3L8 1.2Zm0 1.6 3.7 1.3v3.2c0 2.4-1.5 4.6-3.7 5.8-2.2-1.2-3.7-3.4-3.7-5.8V4.1L8 2.8Z";

/** "9 more minutes", "1 more hour", "45 more seconds": what is left of `seconds`. */
export function remaining(seconds) {
  const s = Math.max(1, Math.ceil(Number(seconds) || 0));
  const [n, unit] = s >= 5400 ? [Math.round(s / 3600), "hour"] : s >= 90 ? [Math.ceil(s / 60), "minute"] : [s, "second"];
  return `${n} more ${unit}${n === 1 ? "" : "s"}`;
}

export function mutedText(seconds) {
  return `You are muted in this room for ${remaining(seconds)}.`;
}

function shield() {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 16 16");
  svg.setAttribute("width", "16");
  svg.setAttribute("height", "16");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  const path = document.createElementNS(SVG, "path");
  path.setAttribute("fill", "currentColor");
  path.setAttribute("d", SHIELD);
  svg.append(path);
  return svg;
}

export class ModMenu {
  /** hooks: room() -> the open room object; toast(text); changed(fields); deleteMessage(seq). */
  constructor(root, hooks) {
    this.root = root;
    this.hooks = hooks;
    this.dialog = null;
    this.target = null; // {user, seq}
    root.querySelector("#messages")?.addEventListener("click", (e) => {
      const button = e.target.closest("[data-action=moderate]");
      if (!button) return;
      const line = button.closest(".msg");
      this.open(line?.dataset.user, Number(line?.dataset.seq) || null, button);
    });
    root.querySelector("#presence")?.addEventListener("click", (e) => {
      const button = e.target.closest(".member-mod");
      if (button) this.open(button.dataset.user, null, button);
    });
  }

  /** Adds the "Moderate" button to a message line by someone else. */
  decorateLine(line, record, ctx) {
    const bar = line.querySelector(".msg-actions");
    if (!bar || !ctx.canModerate || !record.user || record.user === ctx.me) return;
    if (bar.querySelector("[data-action=moderate]")) return;
    const label = `Moderate ${record.user}`;
    bar.append(
      el("button", { type: "button", class: "msg-action action-moderate", dataset: { action: "moderate" }, "aria-label": label, title: label }, shield()),
    );
    bar.hidden = record.deleted;
  }

  /** The people list: a "Moderate" button after each name but one's own. */
  decorateMembers(list, ctx) {
    if (!ctx.canModerate) return;
    for (const item of list.children) {
      const name = item.textContent;
      if (!name || name === ctx.me || item.querySelector(".member-mod")) continue;
      const label = `Moderate ${name}`;
      item.classList.add("member");
      item.replaceChildren(
        el("span", { class: "member-name" }, name),
        el("button", { type: "button", class: "icon-button member-mod", dataset: { user: name }, "aria-label": label, title: label }, shield()),
      );
    }
  }

  /** The slow-mode control (moderators) or badge (everyone) in the room header. */
  showHeader(room, ctx) {
    const actions = this.root.querySelector(".room-actions");
    if (!actions) return;
    let box = actions.querySelector(".slow-mode");
    if (!box) {
      box = el("span", { class: "slow-mode" });
      actions.prepend(box);
    }
    const seconds = Number(room.slow_mode_seconds) || 0;
    if (ctx.canModerate) {
      const select = el("select", { id: "slow-mode-select", "aria-label": "Slow mode", title: "Slow mode: one message per interval" });
      const choices = SLOW_CHOICES.some(([s]) => s === seconds) ? SLOW_CHOICES : [...SLOW_CHOICES, [seconds, `${seconds} s`]];
      for (const [value, label] of choices) {
        select.append(el("option", { value: String(value), selected: value === seconds }, value ? `Slow: ${label}` : "Slow mode: off"));
      }
      select.addEventListener("change", () => this.setSlowMode(Number(select.value), select));
      box.replaceChildren(select);
      box.hidden = false;
    } else {
      box.replaceChildren(seconds ? `Slow mode: ${seconds} s` : "");
      box.classList.toggle("badge", Boolean(seconds));
      box.hidden = !seconds;
    }
  }

  async setSlowMode(seconds, control) {
    control.disabled = true;
    const answer = await this.post({ action: "slow_mode", seconds });
    control.disabled = false;
    if (answer) {
      this.hooks.changed({ slow_mode_seconds: answer.room?.slow_mode_seconds ?? seconds });
      this.hooks.toast(seconds ? `Slow mode on: one message per ${seconds} s.` : "Slow mode off.");
    }
  }

  build() {
    const reason = el("input", { type: "text", name: "reason", maxlength: "500", placeholder: "Reason (kept in the audit log)", "aria-label": "Reason", autocomplete: "off" });
    const buttons = el("div", { class: "mod-choices" });
    const choose = (payload, label, danger = false) =>
      el("button", { type: "button", class: danger ? "button-danger" : "button-quiet", dataset: { choice: JSON.stringify(payload) } }, label);
    for (const [minutes, label] of MUTE_CHOICES) buttons.append(choose({ action: "mute", minutes }, label));
    buttons.append(
      choose({ action: "kick" }, "Kick", true),
      choose({ action: "ban" }, "Ban", true),
      el("button", { type: "button", class: "button-danger mod-delete", dataset: { choice: "delete" } }, "Delete message"),
    );
    const dialog = el(
      "dialog",
      { id: "mod-dialog", class: "dialog mod-dialog", "aria-labelledby": "mod-title" },
      el(
        "form",
        { method: "dialog" },
        el("h2", { id: "mod-title" }),
        el("label", { class: "mod-reason" }, reason),
        buttons,
        el("div", { class: "dialog-buttons" }, el("button", { value: "cancel", class: "button-quiet" }, "Cancel")),
      ),
    );
    dialog.addEventListener("click", (e) => {
      const button = e.target.closest("[data-choice]");
      if (!button) return;
      e.preventDefault();
      this.chosen(button.dataset.choice, reason.value.trim());
    });
    document.body.append(dialog);
    this.dialog = dialog;
    return dialog;
  }

  open(user, seq, opener) {
    if (!user) return;
    const dialog = this.dialog ?? this.build();
    this.target = { user, seq, opener };
    dialog.querySelector("#mod-title").textContent = `Moderate ${user}`;
    dialog.querySelector(".mod-delete").hidden = !seq;
    dialog.querySelector("input[name=reason]").value = "";
    dialog.showModal();
    dialog.querySelector("input[name=reason]").focus();
  }

  async chosen(choice, reason) {
    const { user, seq, opener } = this.target ?? {};
    this.dialog.close();
    opener?.focus();
    if (choice === "delete") {
      if (seq) this.hooks.deleteMessage(seq);
      return;
    }
    const payload = { ...JSON.parse(choice), user, reason };
    const answer = await this.post(payload);
    if (!answer) return;
    const done = {
      mute: `${user} is muted for ${remaining(payload.minutes * 60).replace(" more", "")}.`,
      kick: `${user} was kicked.`,
      ban: `${user} is banned from this room.`,
    }[payload.action];
    this.hooks.toast(done ?? "Done.");
  }

  /** One moderation request; the answer, or null after a toast saying why not. */
  async post(payload) {
    const room = this.hooks.room();
    if (!room) return null;
    const { ok, data } = await api(`/api/rooms/${room.slug}/moderation/`, { method: "POST", body: payload });
    if (!ok) {
      this.hooks.toast(data?.error?.detail ?? "That did not work; try again.");
      return null;
    }
    return data;
  }
}

export class ComposerGate {
  /** composer: the Composer (setEnabled, hold); placeholder() -> its usual text. */
  constructor(root, composer, placeholder) {
    this.composer = composer;
    this.placeholder = placeholder;
    this.notice = el("div", { id: "mod-notice", class: "mod-notice", role: "alert", hidden: true });
    const form = root.querySelector("#composer");
    form?.before(this.notice);
    this.muteTimer = null;
    this.slowTimer = null;
    this.denied = false;
  }

  reset() {
    clearInterval(this.muteTimer);
    clearInterval(this.slowTimer);
    this.muteTimer = this.slowTimer = null;
    this.denied = false;
    this.notice.hidden = true;
    this.notice.classList.remove("muted", "denied");
    this.composer.hold(null);
  }

  get muted() {
    return this.muteTimer !== null;
  }

  /** A write refused for a mute: the notice and no composer until `seconds` have passed. */
  mute(seconds) {
    clearInterval(this.muteTimer);
    const until = Date.now() + Math.max(1, Number(seconds) || 1) * 1000;
    const tick = () => {
      const left = (until - Date.now()) / 1000;
      if (left <= 0) {
        clearInterval(this.muteTimer);
        this.muteTimer = null;
        this.notice.hidden = true;
        this.notice.classList.remove("muted");
        if (!this.denied) this.composer.setEnabled(true, this.placeholder());
        return;
      }
      this.notice.textContent = mutedText(left);
      this.notice.hidden = false;
    };
    this.notice.classList.add("muted");
    this.composer.setEnabled(false);
    this.muteTimer = setInterval(tick, 1000);
    tick();
  }

  /** Slow mode: after a send, the next waits `seconds` (a countdown on the button). */
  slow(seconds) {
    clearInterval(this.slowTimer);
    const until = Date.now() + seconds * 1000;
    const tick = () => {
      const left = Math.ceil((until - Date.now()) / 1000);
      if (left <= 0) {
        clearInterval(this.slowTimer);
        this.slowTimer = null;
        this.composer.hold(null);
        return;
      }
      this.composer.hold(`Slow mode: ${left} s`);
    };
    this.slowTimer = setInterval(tick, 250);
    tick();
  }

  /** Access ended (close 4403): kicked, banned or removed. No reconnecting on our own. */
  lost() {
    this.denied = true;
    clearInterval(this.muteTimer);
    this.muteTimer = null;
    this.notice.classList.remove("muted");
    this.notice.classList.add("denied");
    this.notice.replaceChildren(
      "You no longer have access to this room: a moderator kicked or banned you, or you were removed. ",
      el("a", { href: location.pathname }, "Reload"),
      " to try again.",
    );
    this.notice.hidden = false;
    this.composer.setEnabled(false);
  }
}
