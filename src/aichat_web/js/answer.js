// One answer on the page: an assistant message's tool calls, its Markdown text, approval
// cards, its status line and its actions (Copy and the thumbs). turn.js writes into it
// from a turn's events; chat.js makes one per stored answer when a chat is opened.

import { el, icon, shortName } from "./dom.js";
import { renderMarkdown } from "./markdown.js";
import { feedbackControls } from "./feedback.js";
import { ThinkingSection } from "./thinking.js";
import { usageToggle } from "./usage.js";

const STATE_LABEL = {
  TOOL_CALL_STATE_PENDING_APPROVAL: "waiting for approval",
  TOOL_CALL_STATE_APPROVED: "approved",
  TOOL_CALL_STATE_DENIED: "denied",
  TOOL_CALL_STATE_RUNNING: "running…",
  TOOL_CALL_STATE_SUCCEEDED: "done",
  TOOL_CALL_STATE_FAILED: "failed",
};

export class AnswerView {
  constructor(container, message = null) {
    this.text = message?.text || "";
    this.message = message;
    this.calls = new Map();
    this.thinking = new ThinkingSection(message?.reasoning);
    this.usage = message?.usage; // the turn's, once a streamed turn ended
    this.tools = el("div", { class: "tool-calls" });
    this.body = el("div", { class: "markdown" });
    this.approvals = el("div", { class: "approvals" });
    this.status = el("div", { class: "answer-status", hidden: true });
    this.actions = el("footer", { class: "message-actions" });
    this.node = el(
      "article",
      { class: "message assistant", "data-role": "assistant" },
      this.thinking.node,
      this.tools,
      this.approvals,
      this.body,
      this.status,
      this.actions,
    );
    container.append(this.node);
    this.pending = false;
    for (const call of message?.toolCalls || []) this.upsertToolCall(call);
    this.render();
  }

  appendReasoning(text) {
    this.thinking.append(text);
    this.setThinking(false); // the reasoning itself shows the model at work
    this.grew();
  }

  appendText(text) {
    this.text += text;
    this.thinking.finish();
    this.setThinking(false);
    // One Markdown render per frame however many deltas arrive in it.
    if (!this.pending) {
      this.pending = true;
      requestAnimationFrame(() => {
        this.pending = false;
        this.render();
      });
    }
  }

  render() {
    renderMarkdown(this.body, this.text);
    this.body.hidden = !this.text;
    this.grew();
  }

  // Tells the chat view to keep the newest part in sight.
  grew() {
    this.node.dispatchEvent(new CustomEvent("answer-grew", { bubbles: true }));
  }

  setThinking(on, elapsed) {
    const seconds = Math.round(parseFloat(elapsed || "0"));
    if (on) this.setStatus(seconds ? `thinking… (${seconds} s)` : "thinking…", "thinking");
    else if (this.status.dataset.kind === "thinking") this.setStatus("");
  }

  setStatus(text, kind = "") {
    this.status.textContent = text;
    this.status.dataset.kind = kind;
    this.status.hidden = !text;
    this.node.classList.toggle("incomplete", kind === "incomplete");
    this.grew();
  }

  upsertToolCall(call) {
    let row = this.calls.get(call.id);
    if (!row) {
      row = el("details", { class: "tool-call" });
      this.calls.set(call.id, row);
      this.tools.append(row);
    }
    const state = STATE_LABEL[call.state] || "";
    const args = JSON.stringify(call.arguments || {});
    row.className = `tool-call ${String(call.state || "").toLowerCase()}${call.isError ? " error" : ""}`;
    row.replaceChildren(
      el("summary", {}, icon("tool"), el("strong", { text: shortName(call) }),
        el("code", { text: args.length > 80 ? args.slice(0, 77) + "…" : args }),
        el("span", { class: "tool-state", text: state })),
      call.resultText ? el("pre", { class: "tool-result", text: call.resultText }) : null,
    );
    this.grew();
  }

  // The row under a finished answer: Copy, and the thumbs once the stored message is known.
  renderActions() {
    if (!this.text) return this.actions.replaceChildren();
    const copy = el("button", {
      type: "button",
      class: "link-button",
      text: "Copy",
      onclick: async () => {
        await navigator.clipboard?.writeText(this.text);
        copy.textContent = "Copied";
      },
    });
    const thumbs = this.message?.name ? [feedbackControls(this.message)] : [];
    const usage = this.usage ? usageToggle(() => this.usage) : null;
    this.actions.replaceChildren(copy, ...thumbs, ...(usage ? [usage.button] : []));
    this.usageDetails?.remove();
    this.usageDetails = usage?.details;
    if (usage) this.actions.after(usage.details);
    this.grew();
  }

  finishFromMessage(message) {
    if (message?.name) this.message = message;
    this.thinking.finish();
    this.thinking.setStored(message?.reasoning);
    if (message?.state === "MESSAGE_STATE_INCOMPLETE") {
      this.setStatus("Incomplete: the answer was cut off before it finished.", "incomplete");
    } else if (message?.state === "MESSAGE_STATE_INTERRUPTED") {
      this.setStatus("Interrupted: the server stopped while answering.", "incomplete");
    }
    this.renderActions();
  }
}
