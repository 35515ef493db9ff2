// A tool call waiting for approval, as a card: the tool, its server, its arguments, and
// Approve / Deny / Edit arguments. When every call of the group has a decision they go
// to ResolveToolCalls together (`resolve`), and the turn continues in the same answer.

import { el, shortName } from "./dom.js";
import { toast } from "./toast.js";

export function approvalCards(calls, resolve) {
  const decisions = new Map();
  const group = el("div", { class: "approval-group" });
  const submitIfComplete = async () => {
    if (decisions.size < calls.length) return;
    for (const button of group.querySelectorAll("button, textarea")) button.disabled = true;
    const ok = await resolve([...decisions.values()]);
    if (!ok) {
      // Refused (e.g. expired): let the user decide again.
      decisions.clear();
      for (const node of group.querySelectorAll("button, textarea")) node.disabled = false;
      for (const card of group.querySelectorAll(".approval-card")) card.dataset.decision = "";
      for (const heading of group.querySelectorAll(".approval-card strong")) {
        heading.textContent = "Approval needed";
      }
    }
  };
  for (const call of calls) group.append(card(call, decisions, submitIfComplete));
  return group;
}

function card(call, decisions, submitIfComplete) {
  const pretty = JSON.stringify(call.arguments || {}, null, 2);
  const args = el("pre", { class: "approval-args", text: pretty });
  const editor = el("textarea", {
    class: "approval-editor",
    hidden: true,
    rows: Math.min(12, pretty.split("\n").length + 1),
    spellcheck: "false",
    "aria-label": "Arguments (JSON)",
  });
  editor.value = pretty;
  const verdict = el("p", { class: "approval-verdict", hidden: true });
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
    el("div", { class: "approval-buttons" }, approve, deny, edit),
    verdict,
  );
  return node;
}
