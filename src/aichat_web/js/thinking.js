// A reasoning model's "Thinking" above its answer: a collapsible section that fills as
// `reasoningDelta` events arrive and is rebuilt from `Message.reasoning` after a reload.
//
// It opens while the model thinks and folds once the answer's text begins, unless the
// reader opened or closed it meanwhile (then it stays as they left it). Plain text, never
// Markdown: reasoning is the model's scratch work, shown as written.

import { el } from "./dom.js";

export class ThinkingSection {
  // `reasoning` is a stored Message.reasoning ({text, redactedBlocks}) or undefined.
  constructor(reasoning) {
    this.text = reasoning?.text || "";
    this.redacted = Number(reasoning?.redactedBlocks || 0);
    this.streaming = false;
    this.chosen = false; // the reader toggled it: no more automatic folding
    this.label = el("span", { class: "thinking-label" });
    this.body = el("div", { class: "thinking-text" });
    this.note = el("p", { class: "thinking-note hint" });
    this.node = el(
      "details",
      { class: "thinking", "data-state": "done" },
      el("summary", {}, this.label),
      this.body,
      this.note,
    );
    this.node.addEventListener("toggle", () => {
      if (!this.folding) this.chosen = true;
    });
    this.paint();
  }

  // More reasoning as it streams (the text is set once per frame, however many arrive).
  append(text) {
    this.text += text;
    if (!this.streaming) {
      this.streaming = true;
      this.node.dataset.state = "streaming";
      this.setOpen(true);
    }
    if (!this.pending) {
      this.pending = true;
      requestAnimationFrame(() => {
        this.pending = false;
        this.paint();
      });
    }
  }

  // The answer's text began, or the turn ended: the thinking is over.
  finish() {
    if (!this.streaming) return;
    this.streaming = false;
    this.node.dataset.state = "done";
    this.setOpen(false);
    this.paint();
  }

  // The stored reasoning replaces what streamed (a turn that ended says it whole).
  setStored(reasoning) {
    if (!reasoning) return;
    this.text = reasoning.text || this.text;
    this.redacted = Number(reasoning.redactedBlocks || 0);
    this.paint();
  }

  setOpen(open) {
    if (this.chosen || this.node.open === open) return;
    this.folding = true;
    this.node.open = open;
    // The toggle event fires after this task: only then is the change not the reader's.
    setTimeout(() => {
      this.folding = false;
    });
  }

  paint() {
    this.node.hidden = !this.text && !this.redacted;
    this.label.textContent = this.streaming ? "Thinking…" : "Thinking";
    this.body.textContent = this.text;
    this.body.hidden = !this.text;
    const plural = this.redacted === 1 ? "part" : "parts";
    this.note.textContent = this.redacted
      ? `${this.redacted} ${plural} of the reasoning the provider keeps encrypted (not shown).`
      : "";
    this.note.hidden = !this.redacted;
  }
}
