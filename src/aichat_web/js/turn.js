// One answer on the page and the turn events that write it.
//
// AnswerView is an assistant message (tool calls, the Markdown answer, approval cards,
// its status line, its actions). runTurn() reads one SSE response (StreamChat or
// ResolveToolCalls) into a view, so an approved turn continues in the same message.
//
// Two hooks for what the resumable-turns work will add, each in one place:
//   - resume: onStreamDropped() below is the only code that runs when a stream ends
//     without its turnEnded event; it would re-attach by the last `sequence` seen
//     (runTurn keeps it in `lastSequence`) instead of saying the stream was lost.
//   - feedback: AnswerView.renderActions() draws the row under a finished answer;
//     thumbs up/down go there, next to Copy.

import { ApiError } from "./api.js";
import { el, icon, shortName } from "./dom.js";
import { renderMarkdown } from "./markdown.js";
import { sseEvents } from "./sse.js";
import { toastError } from "./toast.js";
import { approvalCards } from "./approvals.js";

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
    this.tools = el("div", { class: "tool-calls" });
    this.body = el("div", { class: "markdown" });
    this.approvals = el("div", { class: "approvals" });
    this.status = el("div", { class: "answer-status", hidden: true });
    this.actions = el("footer", { class: "message-actions" });
    this.node = el(
      "article",
      { class: "message assistant", "data-role": "assistant" },
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

  appendText(text) {
    this.text += text;
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

  // The row under a finished answer. Feedback (thumbs) will join Copy here.
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
    this.actions.replaceChildren(copy);
    this.grew();
  }

  finishFromMessage(message) {
    if (message?.state === "MESSAGE_STATE_INCOMPLETE") {
      this.setStatus("Incomplete: the answer was cut off before it finished.", "incomplete");
    } else if (message?.state === "MESSAGE_STATE_INTERRUPTED") {
      this.setStatus("Interrupted: the server stopped while answering.", "incomplete");
    }
    this.renderActions();
  }
}

// Reads one turn's events into `view`. `start` makes the request (a Promise<Response>);
// `hooks.resolve(decisions)` continues a turn waiting for approval; `hooks.done(outcome)`
// is told how the stream ended: a TurnOutcome name, "STOPPED", "DROPPED", or "REFUSED"
// (the request itself was answered with an error).
export async function runTurn(view, start, hooks) {
  let ended = null;
  let lastSequence = 0;
  view.setThinking(true);
  try {
    const response = await start();
    for await (const event of sseEvents(response)) {
      lastSequence = Number(event.sequence || lastSequence);
      ended = handle(view, event, hooks) || ended;
    }
  } catch (error) {
    if (error.name === "AbortError") {
      view.setStatus("Stopped: the answer above is incomplete (saved as such).", "incomplete");
      view.renderActions();
      return hooks.done("STOPPED");
    }
    if (error instanceof ApiError) {
      view.setStatus(`Not sent: ${error.message}`, "failed");
      toastError(error);
      return hooks.done("REFUSED");
    }
    // A read error mid-stream: the connection broke. Fall through to "dropped".
  }
  if (!ended) return onStreamDropped(view, lastSequence, hooks);
  return hooks.done(ended);
}

// The one place a stream that ended without turnEnded is handled (see the top).
function onStreamDropped(view, _lastSequence, hooks) {
  view.setStatus(
    "Connection lost before the answer finished. What arrived is shown above; the server " +
      "keeps what it produced as incomplete. Reopen the chat to see the stored answer.",
    "incomplete",
  );
  view.renderActions();
  return hooks.done("DROPPED");
}

function handle(view, event, hooks) {
  if (event.turnStarted) {
    view.node.dataset.message = event.turnStarted.answerMessage || "";
  } else if (event.textDelta) {
    view.appendText(event.textDelta.text || "");
  } else if (event.heartbeat) {
    view.setThinking(true, event.heartbeat.elapsed);
  } else if (event.toolCall) {
    view.upsertToolCall(event.toolCall);
  } else if (event.approvalRequired) {
    const calls = event.approvalRequired.toolCalls || [];
    for (const call of calls) view.upsertToolCall(call);
    view.approvals.append(approvalCards(calls, hooks.resolve));
    view.grew();
  } else if (event.turnEnded) {
    return ended(view, event.turnEnded);
  }
  return null;
}

function ended(view, turnEnded) {
  const outcome = turnEnded.outcome || "TURN_OUTCOME_UNSPECIFIED";
  view.setThinking(false);
  view.render();
  if (outcome === "TURN_OUTCOME_AWAITING_APPROVAL") {
    view.setStatus("Waiting for your decision on the tool call above.", "awaiting");
  } else if (outcome === "TURN_OUTCOME_CANCELLED") {
    view.setStatus("Cancelled: the answer above is incomplete.", "incomplete");
  } else if (outcome === "TURN_OUTCOME_FAILED") {
    const message = turnEnded.error?.message || "the turn failed";
    view.setStatus(`Failed: ${message}`, view.text ? "incomplete" : "failed");
    toastError({ message, reason: reasonOf(turnEnded.error) }, "The answer failed");
  } else {
    view.finishFromMessage(turnEnded.message);
  }
  if (outcome !== "TURN_OUTCOME_AWAITING_APPROVAL") view.renderActions();
  return outcome;
}

function reasonOf(status) {
  return (status?.details || []).find((d) => String(d["@type"]).endsWith("ErrorInfo"))?.reason;
}
