/*
 * The room header: name, privacy and archive marks, description, and the Join / Leave
 * buttons of a public room (POST /api/rooms/<slug>/join/ and /leave/).
 */

import { api } from "./dom.js";

export class RoomHeader {
  /** hooks: changed(room fields) after a join or leave; toast(text). */
  constructor(root, config, hooks) {
    this.config = config;
    this.hooks = hooks;
    this.name = root.querySelector("#room-name");
    this.lock = root.querySelector("#room-lock");
    this.archived = root.querySelector("#room-archived");
    this.description = root.querySelector("#room-description");
    this.join = root.querySelector("#join-button");
    this.leave = root.querySelector("#leave-button");
    this.room = null;
    this.join?.addEventListener("click", () => this.membership("join"));
    this.leave?.addEventListener("click", () => this.membership("leave"));
  }

  show(room) {
    this.room = room;
    this.name.textContent = room.name ?? room.slug;
    if (this.lock) this.lock.hidden = room.is_public !== false;
    if (this.archived) this.archived.hidden = !room.is_archived;
    if (this.description) {
      this.description.textContent = room.description ?? "";
      this.description.hidden = !room.description;
    }
    this.renderButtons();
  }

  renderButtons() {
    const room = this.room;
    // Only public rooms are joined and left by their readers; private memberships are
    // the admins' and moderators' to give.
    const open = Boolean(this.config.me) && room.is_public !== false && room.kind !== "direct";
    if (this.join) this.join.hidden = !open || room.is_member !== false || room.is_archived;
    if (this.leave) this.leave.hidden = !open || room.is_member !== true;
  }

  async membership(action) {
    const room = this.room;
    const button = action === "join" ? this.join : this.leave;
    button.disabled = true;
    const { ok, data } = await api(`/api/rooms/${room.slug}/${action}/`, { method: "POST" });
    button.disabled = false;
    if (this.room !== room) return; // switched away meanwhile
    if (!ok) {
      this.hooks.toast(data?.error?.detail ?? `Could not ${action} the room.`);
      return;
    }
    const fields = data?.slug ? data : { is_member: action === "join" };
    // The answer is the room object; whichever shape, membership is what just changed.
    Object.assign(room, fields, { is_member: action === "join" });
    this.renderButtons();
    this.hooks.changed(room);
    (action === "join" ? this.leave : this.join)?.focus();
  }
}
