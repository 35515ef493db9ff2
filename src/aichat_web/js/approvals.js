// A tool call waiting for approval, as a card: the tool, its server, its arguments, and
// Approve / Deny / Edit arguments. When every call of the group has a decision they go
// to ResolveToolCalls together (`resolve`), and the turn continues in the same answer.
//
// A card is live only while its call waits: a new message (which declines waiting
// calls), an update of the call from the server, or a refusal saying the call is no
// longer waiting settles it for good (LIVE holds the cards still waiting).

import { el, shortName } from "./dom.js";
import { toast } from "./toast.js";

const LIVE = new Map(); // tool call id → its card's settle(text, kind)
const SETTLED_BY_SERVER = new Set(["TOOL_CALL_NOT_PENDING", "TOOL_CALL_ALREADY_DECIDED", "TOOL_CALL_NOT_FOUND"]);

// `resolve(decisions)` resolves to null when sent, or the ApiError that refused them.
export function approvalCards(calls, resolve) {
  const decisions = new Map();
  const group = el("div", { class: "approval-group" });
  const submitIfComplete = async () => {
    if (decisions.size < calls.length) return;
    for (const node of group.querySelectorAll("button, textarea")) node.disabled = true;
    for (const call of calls) LIVE.delete(call.id);
    const error = await resolve([...decisions.values()]);
    if (!error) return;
    if (SETTLED_BY_SERVER.has(error.reason)) {
      for (const card of group.querySelectorAll(".approval-card")) {
        card.settle(`Not sent: ${error.message} (${error.reason})`, "settled");
      }
      return;
    }
    // Refused for a reason that may pass (the network, a busy server): decide again.
    decisions.clear();
    for (const card of group.querySelectorAll(".approval-card")) card.reopen(error);
    for (const call of calls) LIVE.set(call.id, group.querySelector(`[data-tool-call="${CSS.escape(call.id)}"]`).settle);
  };
  for (const call of calls) {
    const node = card(call, decisions, submitIfComplete);
    group.append(node);
    LIVE.set(call.id, node.settle);
  }
  return group;
}

// The server says how a call went (a tool call update): its card, if live, shows it.
export function settleApproval(call) {
  const settle = LIVE.get(call.id);
  if (!settle || call.state === "TOOL_CALL_STATE_PENDING_APPROVAL") return false;
  LIVE.delete(call.id);
  const denied = call.state === "TOOL_CALL_STATE_DENIED";
  settle(denied ? `Declined${call.resultText ? `: ${call.resultText}` : ""}` : "Approved", denied ? "denied" : "approved");
  return true;
}

// A new message declines every call still waiting: their cards stop offering a choice.
export function retireApprovals() {
  for (const [id, settle] of LIVE) {
    LIVE.delete(id);
    settle("Declined: you sent a new message instead.", "denied");
  }
}

function card(call, decisions, submitIfComplete) {
  const pretty = JSON.stringify(call.arguments || {}, null, 2);
  const args = el("pre", { class: "approval-args", text: pretty, tabindex: "0" });
  const editor = el("textarea", {
    class: "approval-editor",
    hidden: true,
    rows: Math.min(12, pretty.split("\n").length + 1),
    spellcheck: "false",
    "aria-label": "Arguments (JSON)",
  });
  editor.value = pretty;
  const verdict = el("p", { class: "approval-verdict", role: "status", hidden: true });
  const title = el("strong", { text: "Approval needed" });
  const decide = (decision, label) => {
    decisions.set(call.id, decision);
    title.textContent = "Tool call";
    node.dataset.decision = decision.approved ? "approved" : "denied";
    verdict.textContent = label;
    verdict.hidden = false;
    submitIfComplete();
  };
  const approve = el("button", {
    type: "button",
    class: "primary",
    text: "Approve",
    onclick: () => {
      if (editor.hidden) return decide({ toolCallId: call.id, approved: true }, "Approved");
      let edited;
      try {
        edited = JSON.parse(editor.value);
      } catch (error) {
        return toast(`The arguments are not valid JSON: ${error.message}`, "error");
      }
      if (!edited || typeof edited !== "object" || Array.isArray(edited)) {
        return toast("The arguments must be a JSON object", "error");
      }
      decide({ toolCallId: call.id, approved: true, editedArguments: edited }, "Approved with edited arguments");
    },
  });
  const deny = el("button", {
    type: "button",
    class: "danger",
    text: "Deny",
    onclick: () => decide({ toolCallId: call.id, approved: false, reason: "denied in the web chat" }, "Denied"),
  });
  const edit = el("button", {
    type: "button",
    text: "Edit arguments",
    onclick: () => {
      editor.hidden = !editor.hidden;
      args.hidden = !editor.hidden;
      edit.textContent = editor.hidden ? "Edit arguments" : "Cancel edit";
      approve.textContent = editor.hidden ? "Approve" : "Approve edited";
      if (!editor.hidden) editor.focus();
    },
  });
  const buttons = el("div", { class: "approval-buttons" }, approve, deny, edit);
  const node = el(
    "section",
    { class: "approval-card", "data-tool-call": call.id, "aria-label": `Approve ${shortName(call)}?` },
    el("header", {},
      title,
      el("span", { class: "approval-tool" }, "Tool ", el("code", { text: shortName(call) })),
      el("span", { class: "approval-server" }, "on server ", el("code", { text: call.server || "?" })),
    ),
    call.approvalReason ? el("p", { class: "hint", text: call.approvalReason }) : null,
    args,
    editor,
    buttons,
    verdict,
  );
  // Final: no choice is offered any more; `kind` is approved, denied or settled.
  node.settle = (text, kind) => {
    const answer = node.closest("article.assistant")?.view;
    if (answer?.status.dataset.kind === "awaiting") answer.setStatus("");
    title.textContent = "Tool call";
    node.dataset.decision = kind;
    verdict.textContent = text;
    verdict.hidden = false;
    buttons.remove();
    editor.remove();
  };
  node.reopen = (error) => {
    node.dataset.decision = "";
    title.textContent = "Approval needed";
    verdict.textContent = `Not sent: ${error.message}. Decide again to retry.`;
    verdict.hidden = false;
    for (const control of node.querySelectorAll("button, textarea")) control.disabled = false;
  };
  return node;
}
