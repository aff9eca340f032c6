/*
 * Attachments being prepared in the composer (PROTOCOL.md "Attachments"): files picked
 * with the attach button, dropped on the room or pasted into the box are uploaded at
 * once, each to POST /api/rooms/<slug>/uploads/ with XMLHttpRequest (fetch reports no
 * upload progress), and shown as chips above the box: name, size, a progress bar, and a
 * button that cancels the upload or removes the file. A send carries the ids of the
 * finished ones; the server refuses anything else it is given.
 */

import { csrfToken, el } from "./dom.js";

export const MAX_FILES = 10; // PROTOCOL.md: at most 10 attachments per message

/** "2.4 MB" for a size in bytes. */
export function formatSize(bytes) {
  if (!Number.isFinite(bytes) || bytes < 0) return "";
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KB", "MB", "GB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value < 10 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
}

export class Uploads {
  /**
   * list: the <ul> of chips; url(): the upload URL of the room shown (null: none);
   * changed(): told whenever the set or a state changes.
   */
  constructor(list, { url, changed }) {
    this.list = list;
    this.url = url;
    this.changed = changed;
    this.items = [];
  }

  /** Upload these files (a FileList or array); over MAX_FILES they are refused. */
  add(files) {
    for (const file of Array.from(files ?? [])) {
      if (this.items.length >= MAX_FILES) {
        this.notice(`At most ${MAX_FILES} files per message.`);
        break;
      }
      this.start(file);
    }
    this.changed();
  }

  start(file) {
    const url = this.url();
    if (!url) return;
    const item = { file, state: "uploading", upload: null, xhr: new XMLHttpRequest() };
    item.chip = this.chip(item);
    this.items.push(item);
    this.list.append(item.chip);
    this.list.hidden = false;
    const { xhr } = item;
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) item.bar.value = e.loaded / e.total;
    });
    xhr.addEventListener("load", () => {
      let data = null;
      try {
        data = JSON.parse(xhr.responseText);
      } catch {
        data = null;
      }
      if (xhr.status === 201 && data?.upload?.id) this.finished(item, data.upload);
      else this.failed(item, data?.error?.detail ?? `The upload failed (${xhr.status}).`);
    });
    xhr.addEventListener("error", () => this.failed(item, "The upload failed: network error."));
    xhr.open("POST", url);
    xhr.setRequestHeader("X-CSRFToken", csrfToken());
    const form = new FormData();
    form.append("file", file, file.name || "pasted");
    xhr.send(form);
  }

  chip(item) {
    item.bar = el("progress", { class: "upload-progress", max: "1", value: "0", "aria-label": `Uploading ${item.file.name}` });
    item.status = el("span", { class: "upload-status" }, formatSize(item.file.size));
    const remove = el("button", { type: "button", class: "upload-remove", "aria-label": `Cancel ${item.file.name}`, title: "Cancel" }, "×");
    remove.addEventListener("click", () => this.remove(item));
    return el(
      "li",
      { class: "upload-chip uploading" },
      el("span", { class: "upload-thumb", "aria-hidden": "true" }, "⬆"),
      el("span", { class: "upload-info" }, el("span", { class: "upload-name", title: item.file.name }, item.file.name || "pasted"), item.status, item.bar),
      remove,
    );
  }

  finished(item, upload) {
    item.state = "done";
    item.upload = upload;
    item.chip.classList.replace("uploading", "done");
    item.bar.hidden = true;
    item.status.textContent = formatSize(upload.size);
    const thumb = item.chip.querySelector(".upload-thumb");
    if (upload.thumbnail_url?.startsWith("/uploads/")) {
      thumb.replaceChildren(el("img", { src: upload.thumbnail_url, alt: "" }));
    } else {
      thumb.textContent = "📄";
    }
    const remove = item.chip.querySelector(".upload-remove");
    remove.setAttribute("aria-label", `Remove ${upload.name}`);
    remove.title = "Remove";
    this.changed();
  }

  failed(item, detail) {
    if (item.state === "cancelled") return;
    item.state = "failed";
    item.chip.classList.replace("uploading", "failed");
    item.bar.hidden = true;
    item.status.textContent = detail;
    item.chip.querySelector(".upload-thumb").textContent = "⚠";
    item.chip.querySelector(".upload-remove").title = "Remove";
    this.changed();
  }

  remove(item) {
    if (item.state === "uploading") {
      item.state = "cancelled";
      item.xhr.abort();
    }
    item.chip.remove();
    this.items = this.items.filter((i) => i !== item);
    this.list.hidden = this.items.length === 0;
    this.changed();
  }

  notice(text) {
    const last = this.list.querySelector(".upload-notice");
    last?.remove();
    this.list.append(el("li", { class: "upload-notice", role: "status" }, text));
    this.list.hidden = false;
  }

  /** The ids of the finished uploads, in the order they were added. */
  ids() {
    return this.items.filter((i) => i.state === "done").map((i) => i.upload.id);
  }

  get busy() {
    return this.items.some((i) => i.state === "uploading");
  }

  get ready() {
    return !this.busy && this.ids().length > 0;
  }

  /** Forget every chip; uploads still running are cancelled (a room switch, a send). */
  clear() {
    for (const item of this.items) {
      if (item.state === "uploading") {
        item.state = "cancelled";
        item.xhr.abort();
      }
    }
    this.items = [];
    this.list.replaceChildren();
    this.list.hidden = true;
    this.changed();
  }
}

/** Files dropped anywhere on `target` go to `uploads` (while `enabled()`). */
export function acceptDrops(target, uploads, enabled) {
  const hasFiles = (e) => Array.from(e.dataTransfer?.types ?? []).includes("Files");
  let depth = 0;
  target.addEventListener("dragenter", (e) => {
    if (!hasFiles(e) || !enabled()) return;
    depth += 1;
    target.classList.add("drop-active");
  });
  target.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (!depth) target.classList.remove("drop-active");
  });
  target.addEventListener("dragover", (e) => {
    if (!hasFiles(e) || !enabled()) return;
    e.preventDefault(); // allows the drop
    e.dataTransfer.dropEffect = "copy";
  });
  target.addEventListener("drop", (e) => {
    depth = 0;
    target.classList.remove("drop-active");
    if (!hasFiles(e) || !enabled()) return;
    e.preventDefault(); // the browser would open the file instead
    uploads.add(e.dataTransfer.files);
  });
}
