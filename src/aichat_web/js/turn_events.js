// What each kind of turn event does to an answer, and how an ended turn is told.
//
// EVENT_HANDLERS maps a StreamChatResponse field to a function (view, payload, hooks,
// control) → a TurnOutcome name when the turn ended, else nothing. A new kind of event
// (reasoning, a compaction notice) is one more entry here.

import { approvalCards } from "./approvals.js";
import { noteContext, showCompaction } from "./context_gauge.js";
import { appendReasoning, settleThinking } from "./thinking.js";
import { toastError } from "./toast.js";
import { noteTurnUsage } from "./usage.js";

export const EVENT_HANDLERS = {
  turnStarted(view, started, hooks, control) {
    if (control.bubble) control.bubble.dataset.message = started.userMessage || "";
    view.node.dataset.message = started.answerMessage || "";
    view.message = null; // a continuation (after approval) answers in messages of its own
    view.toolsSinceStart = false;
    noteContext(started.context);
  },
  contextCompacted(view, compaction, hooks, control) {
    showCompaction(view, compaction, control);
  },
  reasoningDelta(view, delta) {
    appendReasoning(view, delta.text || "");
  },
  textDelta(view, delta) {
    settleThinking(view);
    view.appendText(delta.text || "");
  },
  heartbeat(view, beat, hooks, control) {
    if (!control.stopping) view.setThinking(true, beat.elapsed);
  },
  toolCall(view, call, hooks) {
    // An update of a call another answer shows (denied by a new message, say) goes there.
    if (hooks.toolCall?.(call, view)) return;
    settleThinking(view);
    view.toolsSinceStart = true;
    view.upsertToolCall(call);
  },
  approvalRequired(view, required, hooks) {
    view.toolsSinceStart = true;
    const calls = required.toolCalls || [];
    for (const call of calls) view.upsertToolCall(call);
    view.approvals.append(approvalCards(calls, hooks.resolve));
    view.grew();
  },
  turnEnded(view, ended, hooks, control) {
    noteContext(ended.context, true);
    control.titlePending = Boolean(ended.titlePending); // a title model is naming the chat
    return showOutcome(view, ended);
  },
};

// Why a turn was cancelled or failed, in words (by its ErrorInfo reason).
const CANCELLED = {
  TURN_CANCELLED: "Stopped: the answer above is incomplete (saved as such).",
  TURN_DEADLINE_EXCEEDED: "Stopped: the answer took longer than the server allows; what it wrote is saved.",
  SERVER_SHUTTING_DOWN: "Stopped: the server restarted while answering; what it wrote is saved. Send your message again.",
};
const FAILED = {
  TURN_INTERRUPTED: "Interrupted: the server answering stopped unexpectedly; what it wrote is saved. Send your message again.",
};

export function showOutcome(view, turnEnded) {
  const outcome = turnEnded.outcome || "TURN_OUTCOME_UNSPECIFIED";
  const reason = reasonOf(turnEnded.error);
  nameCutOffAnswer(view, (turnEnded.answerMessages || []).at(-1));
  settleThinking(view);
  view.setThinking(false);
  view.render(true);
  if (outcome === "TURN_OUTCOME_AWAITING_APPROVAL") {
    view.setStatus("Waiting for your decision on the tool call above.", "awaiting");
    return outcome;
  }
  if (outcome === "TURN_OUTCOME_CANCELLED") {
    view.setStatus(CANCELLED[reason] || "Cancelled: the answer above is incomplete.", "incomplete");
  } else if (outcome === "TURN_OUTCOME_FAILED") {
    const message = turnEnded.error?.message || "the turn failed";
    view.setStatus(FAILED[reason] || `Failed: ${message}`, view.text ? "incomplete" : "failed");
    if (!FAILED[reason]) toastError({ message, reason }, "The answer failed");
  } else {
    noteTurnUsage(view, turnEnded);
    view.finishFromMessage(turnEnded.message);
  }
  view.renderActions();
  return outcome;
}

// A turn cut off (Stop, CANCELLED) ends without `message`; its text is still a stored
// message that can be rated: the last of answerMessages when sent, else turnStarted's
// answerMessage as long as no tool call began a further round since.
function nameCutOffAnswer(view, last) {
  if (view.message?.name) return;
  const name = last || (view.toolsSinceStart ? "" : view.node.dataset.message);
  if (name) view.message = { name };
}

function reasonOf(status) {
  return (status?.details || []).find((d) => String(d["@type"]).endsWith("ErrorInfo"))?.reason;
}
