// One answer on the page: its parts (tool calls so far; more kinds can register), its
// Markdown text, approval cards, a status line and a row of actions. turn.js writes into
// it from a turn's events; chat.js makes one per stored answer when a chat is opened.
//
// The text streams through MarkdownStream (markdown.js): one render per frame, of the
// last block only. Actions under a finished answer come from ACTIONS, a list any module
// can add to (Copy and the thumbs are the first two).

import { el, icon, shortName } from "./dom.js";
import { MarkdownStream } from "./markdown.js";
import { feedbackControls } from "./feedback.js";
import { showStoredReasoning } from "./thinking.js";
import { usageAction } from "./usage.js";

const RENDER_EVERY_MS = 100;

const STATE_LABEL = {
  TOOL_CALL_STATE_PENDING_APPROVAL: "waiting for approval",
  TOOL_CALL_STATE_APPROVED: "approved",
  TOOL_CALL_STATE_DENIED: "denied",
  TOOL_CALL_STATE_RUNNING: "running…",
  TOOL_CALL_STATE_SUCCEEDED: "done",
  TOOL_CALL_STATE_FAILED: "failed",
  TOOL_CALL_STATE_RETURNED: "handed to the caller",
};

// (view) => an element, or null when it has nothing to offer for this answer.
export const ACTIONS = [
  (view) => {
    if (!view.text) return null;
    const copy = el("button", {
      type: "button",
      class: "link-button",
      text: "Copy",
      onclick: async () => {
        await navigator.clipboard?.writeText(view.text);
        copy.textContent = "Copied";
      },
    });
    return copy;
  },
  (view) => (view.message?.name && view.text ? feedbackControls(view.message) : null),
  usageAction,
];

export class AnswerView {
  constructor(container, message = null, { before = null } = {}) {
    this.text = message?.text || "";
    this.message = message;
    this.parts = new Map(); // key → element, in the order they came
    this.partsBox = el("div", { class: "answer-parts" });
    this.body = el("div", { class: "markdown" });
    this.approvals = el("div", { class: "approvals" });
    this.status = el("div", { class: "answer-status", hidden: true });
    this.actions = el("footer", { class: "message-actions" });
    this.node = el(
      "article",
      { class: "message assistant", "data-role": "assistant", "data-message": message?.name || "" },
      this.partsBox,
      this.approvals,
      this.body,
      this.status,
      this.actions,
    );
    this.node.view = this;
    container.insertBefore(this.node, before);
    this.markdown = new MarkdownStream(this.body);
    this.pending = false;
    showStoredReasoning(this, message?.reasoning);
    for (const call of message?.toolCalls || []) this.upsertToolCall(call);
    this.render(!message || message.state !== "MESSAGE_STATE_STREAMING");
  }

  appendText(text) {
    this.text += text;
    this.setThinking(false);
    // One render per RENDER_EVERY_MS however many deltas arrive meanwhile, in a frame:
    // text appears as fast as anyone reads, and a slow machine keeps its frames short.
    if (this.pending) return;
    this.pending = true;
    const wait = Math.max(0, RENDER_EVERY_MS - (performance.now() - (this.renderedAt || 0)));
    setTimeout(() => requestAnimationFrame(() => {
      this.pending = false;
      this.renderedAt = performance.now();
      this.render();
    }), wait);
  }

  // `final`: the text is complete (the last block is settled too).
  render(final = false) {
    const done = this.markdown.update(this.text, { final });
    this.body.hidden = !this.text;
    this.grew();
    if (!done && !this.pending) {
      this.pending = true; // more blocks to settle: the next frame goes on
      requestAnimationFrame(() => {
        this.pending = false;
        this.render();
      });
    }
  }

  // Tells the chat view to keep the newest part in sight (once a frame: follow.js).
  grew() {
    if (this.growing) return;
    this.growing = true;
    requestAnimationFrame(() => {
      this.growing = false;
      this.node.dispatchEvent(new CustomEvent("answer-grew", { bubbles: true }));
    });
  }

  setThinking(on, elapsed) {
    const seconds = Math.round(parseFloat(elapsed || "0"));
    if (on) this.setStatus(seconds ? `thinking… (${seconds} s)` : "thinking…", "thinking");
    else if (this.status.dataset.kind === "thinking") this.setStatus("");
  }

  // `extra`: elements after the text (a Retry button, say).
  setStatus(text, kind = "", ...extra) {
    this.status.replaceChildren(text, ...extra);
    this.status.dataset.kind = kind;
    this.status.hidden = !text;
    this.node.classList.toggle("incomplete", kind === "incomplete" || kind === "failed");
    this.grew();
  }

  // A part of the answer by key, made by `make` the first time, then given to `update`.
  part(key, make, update) {
    let node = this.parts.get(key);
    if (!node) {
      node = make();
      this.parts.set(key, node);
      this.partsBox.append(node);
    }
    update?.(node);
    this.grew();
    return node;
  }

  hasToolCall(id) {
    return this.parts.has(`tool:${id}`);
  }

  upsertToolCall(call) {
    this.part(
      `tool:${call.id}`,
      () => el("details", { class: "tool-call" }),
      (row) => {
        const state = STATE_LABEL[call.state] || "";
        const args = JSON.stringify(call.arguments || {});
        row.className = `tool-call ${String(call.state || "").toLowerCase()}${call.isError ? " error" : ""}`;
        row.replaceChildren(
          el("summary", {}, icon("tool"), el("strong", { text: shortName(call) }),
            el("code", { text: args.length > 80 ? args.slice(0, 77) + "…" : args }),
            el("span", { class: "tool-state", text: state })),
          call.resultText ? el("pre", { class: "tool-result", text: call.resultText }) : null,
        );
      },
    );
  }

  // The row under a finished answer.
  renderActions() {
    this.actions.replaceChildren(...ACTIONS.map((make) => make(this)).filter(Boolean));
    this.grew();
  }

  finishFromMessage(message) {
    if (message?.name) {
      this.message = message;
      this.node.dataset.message = message.name;
    }
    if (message?.state === "MESSAGE_STATE_INCOMPLETE") {
      this.setStatus("Incomplete: the answer was cut off before it finished.", "incomplete");
    } else if (message?.state === "MESSAGE_STATE_INTERRUPTED") {
      this.setStatus("Interrupted: the server stopped while answering; what it wrote is kept.", "incomplete");
    }
    this.renderActions();
  }
}
