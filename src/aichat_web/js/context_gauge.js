// How full the model's context window is (issue 26): a gauge in the chat's header, and a
// marker in the conversation where older messages were folded into a summary.
//
// The gauge's figures: TurnStarted.context (the server's estimate of what the turn
// sends), ContextCompacted (what is sent after a compaction), TurnEnded.context (the
// provider's count of the last model call). A chat just opened has none of those yet:
// it shows the last answer's input tokens against the model's window (ListModels).
// The marker: ContextCompacted live, Message.contextSummary when a chat is read (it is
// set on the last message folded; the marker goes after it).

import { $, el } from "./dom.js";

const COUNT = new Intl.NumberFormat("en");
const count = (n) => COUNT.format(Number(n || 0));

// The model catalogue (ListModels' models, from main.js): their context windows.
let models = [];
export function setModels(list) {
  models = list || [];
}

function gauge() {
  return $("context-gauge");
}

export function hideGauge() {
  gauge().hidden = true;
}

// `usage`: a ContextWindowUsage (or the same figures); `how`: words on where they come from.
export function showFill(usage, how) {
  const window = Number(usage?.windowTokens || 0);
  if (!window) return;
  const tokens = Number(usage.tokens || 0);
  const share = Math.min(1, tokens / window);
  const percent = Math.round(share * 100);
  const node = gauge();
  const meter = node.querySelector("meter");
  meter.value = share;
  // A big window barely used still says something is in it.
  node.querySelector(".context-percent").textContent = tokens && !percent ? "<1%" : `${percent}%`;
  const parts = [`${count(tokens)} of ${count(window)} tokens of the model's context (${percent}%), ${how}`];
  if (Number(usage.outputReserveTokens)) parts.push(`${count(usage.outputReserveTokens)} kept for the answer`);
  if (Number(usage.omittedMessages)) {
    parts.push(`${count(usage.omittedMessages)} earlier messages ${usage.summarized ? "summarized" : "left out"}`);
  }
  const words = parts.join("; ") + ".";
  node.title = words;
  meter.setAttribute("aria-valuetext", words);
  node.dataset.fill = share >= 0.9 ? "full" : share >= 0.7 ? "high" : "ok";
  node.hidden = false;
}

// A chat just read: its last answer's tokens against its model's window.
function estimateFromHistory(chat, messages) {
  const last = [...messages].reverse().find((m) => m.role === "ROLE_ASSISTANT" && m.usage);
  const model = models.find((m) => m.name === (last?.usage?.model || last?.model || chat.session?.model));
  if (!last || !model?.contextWindowTokens) return hideGauge();
  // The input of the last model call, as TurnEnded.context counts it: the same figure
  // the gauge showed when that turn ended.
  showFill({ tokens: last.usage.inputTokens, windowTokens: model.contextWindowTokens }, "at the last model call");
}

function marker(compaction) {
  const summary = compaction.summary || compaction;
  const folded = Number(compaction.foldedMessages || summary.foldedMessages || 0);
  const before = Number(compaction.tokensBefore || 0);
  const after = Number(compaction.tokensAfter || 0);
  const figures = before && after ? ` (${count(before)} → ${count(after)} tokens)` : "";
  const line = `${folded} earlier message${folded === 1 ? "" : "s"} summarized to fit the model's context${figures}. ` +
    "They stay here; the model reads the summary instead.";
  return el("div", { class: "compaction-marker", role: "note", "data-through": compaction.throughMessage || "" },
    el("p", { class: "compaction-line", text: line }),
    summary.text
      ? el("details", { class: "compaction-summary" },
          el("summary", { text: "Summary the model reads" }),
          el("div", { class: "compaction-text", text: summary.text }))
      : null);
}

// Where a marker goes: after the last message folded when it is shown, else before the
// question of the turn that folded it (`fallback`).
function place(list, node, through, fallback) {
  const at = through && list.querySelector(`article[data-message="${CSS.escape(through)}"]`);
  list.querySelector(`.compaction-marker[data-through="${CSS.escape(through || "")}"]`)?.remove();
  if (at) at.after(node);
  else if (fallback?.parentElement === list) fallback.before(node);
  else list.append(node);
}

// --- the hooks ------------------------------------------------------------------------

// turnStarted / turnEnded: the gauge.
export function noteContext(usage, ended) {
  if (usage) showFill(usage, ended ? "at the last model call" : "sent with this message (estimate)");
}

// contextCompacted: the marker, and the gauge after it.
export function showCompaction(view, compaction, control) {
  const list = view.node.parentElement;
  if (list) place(list, marker(compaction), compaction.throughMessage, control?.bubble || view.node);
  showFill({ tokens: compaction.tokensAfter, windowTokens: compaction.windowTokens, summarized: true },
    "after summarizing (estimate)");
  view.grew();
}

// A chat read (main.js puts this in chat.js's HISTORY_HOOKS): markers where summaries
// are, and the gauge.
export function showHistoryContext(chat, messages) {
  if (!chat.session) return hideGauge();
  for (const message of messages) {
    if (message.contextSummary) {
      place(chat.list, marker({ ...message.contextSummary, throughMessage: message.name }), message.name, null);
    }
  }
  estimateFromHistory(chat, messages);
}
