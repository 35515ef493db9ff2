// Files attached to the next message: text, images and PDFs, checked against the
// server's limits (config.json) before anything is uploaded, sent base64 in the JSON
// body as the API takes them (Attachment.content is bytes). They come from the attach
// button, from files dropped on the chat, or pasted into the message box.

import { $, el, formatBytes, icon } from "./dom.js";
import { toast } from "./toast.js";

const ACCEPT = [
  "text/*", ".md", ".markdown", ".csv", ".json", ".yaml", ".yml", ".log", ".py", ".js", ".ts",
  ".sql", ".go", ".rs", ".java", ".c", ".h", ".sh", ".toml", ".xml",
  "image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf",
];
const IMAGE_TYPES = new Set(["image/png", "image/jpeg", "image/gif", "image/webp"]);
const TEXT_TYPES = new Set(["application/json", "application/xml", "application/x-yaml", "application/yaml", "application/sql", "application/x-sh"]);

export class Attachments {
  constructor(limits) {
    this.maxBytes = limits.maxAttachmentBytes;
    this.maxCount = limits.maxAttachmentsPerMessage;
    this.files = [];
    this.input = $("file-input");
    this.list = $("attachment-list");
    this.input.accept = ACCEPT.join(",");
    this.input.addEventListener("change", () => {
      this.add([...this.input.files]);
      this.input.value = "";
    });
    const limit = `Text, images (PNG, JPEG, GIF, WebP) or PDF · up to ${this.maxCount} files of ${formatBytes(this.maxBytes)} each`;
    $("attach-limit").textContent = `${limit} · drop or paste files here`;
    const button = $("attach-button");
    button.title = `Attach files (${limit})`;
    button.hidden = this.maxCount === 0;
    button.addEventListener("click", () => this.input.click());
    this.acceptDrops($("chat"));
    $("message-input").addEventListener("paste", (event) => {
      const files = [...(event.clipboardData?.files || [])];
      if (!files.length) return; // text pastes as text
      event.preventDefault();
      this.add(files);
    });
  }

  // Files dragged over `area` show the drop zone; dropped, they are attached.
  acceptDrops(area) {
    const zone = $("drop-zone");
    let depth = 0;
    const carriesFiles = (event) => [...(event.dataTransfer?.types || [])].includes("Files");
    area.addEventListener("dragenter", (event) => {
      if (!carriesFiles(event) || this.maxCount === 0) return;
      depth += 1;
      zone.hidden = false;
    });
    area.addEventListener("dragleave", () => {
      depth = Math.max(0, depth - 1);
      if (!depth) zone.hidden = true;
    });
    area.addEventListener("dragover", (event) => {
      if (carriesFiles(event)) event.preventDefault(); // allows the drop
    });
    area.addEventListener("drop", (event) => {
      depth = 0;
      zone.hidden = true;
      if (!carriesFiles(event)) return;
      event.preventDefault();
      this.add([...event.dataTransfer.files]);
    });
  }

  add(files) {
    for (const file of files) {
      const type = mimeType(file);
      if (!type) {
        toast(`${file.name}: only text, images and PDFs can be attached`, "error");
      } else if (file.size > this.maxBytes) {
        toast(`${file.name} is ${formatBytes(file.size)}: the limit is ${formatBytes(this.maxBytes)} per file`, "error");
      } else if (this.files.length >= this.maxCount) {
        toast(`At most ${this.maxCount} files per message`, "error");
      } else {
        this.files.push({ file, type });
      }
    }
    this.render();
  }

  clear() {
    this.files = [];
    this.render();
  }

  render() {
    this.list.replaceChildren(
      ...this.files.map((entry, index) =>
        el(
          "span",
          { class: "chip" },
          icon("clip"), `${entry.file.name} (${formatBytes(entry.file.size)})`,
          el("button", {
            type: "button",
            class: "chip-remove",
            "aria-label": `Remove ${entry.file.name}`,
            text: "×",
            onclick: () => {
              this.files.splice(index, 1);
              this.render();
            },
          }),
        ),
      ),
    );
    this.list.hidden = !this.files.length;
  }

  // The request's `attachments` field.
  async encode() {
    return Promise.all(
      this.files.map(async ({ file, type }) => ({
        filename: file.name,
        mimeType: type,
        content: await base64(file),
      })),
    );
  }

  describe() {
    return this.files.map(({ file, type }) => ({ filename: file.name, mimeType: type, sizeBytes: file.size }));
  }
}

function mimeType(file) {
  const type = (file.type || "").toLowerCase();
  if (IMAGE_TYPES.has(type) || type === "application/pdf") return type;
  if (type.startsWith("text/") || TEXT_TYPES.has(type)) return type;
  const ext = file.name.toLowerCase().split(".").pop();
  if (ext === "pdf") return "application/pdf";
  if (ext === "json") return "application/json";
  if (ACCEPT.includes(`.${ext}`)) return ext === "md" || ext === "markdown" ? "text/markdown" : "text/plain";
  return null;
}

function base64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1] || "");
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}
