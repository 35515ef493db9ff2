// What an answer used and cost, on demand; and the user's own usage (GetMyUsage) for
// today and this month, from the sidebar.
//
// Under a finished answer an (i) button opens a small panel (a disclosure, not a hover
// tooltip: it works by keyboard and touch) with the tokens of Message.usage (of which
// reasoning, cached and cache-written) and their cost. A turn that took several model
// rounds is shown live as one answer: its panel gives the turn's total (TurnEnded.usage),
// and after a reload each round's message carries its own.
//
// Money is a google.type.Money: {currencyCode, units (int64 as a string), nanos}.

import { api } from "./api.js";
import { $, el, icon } from "./dom.js";
import { toastError } from "./toast.js";

const COUNT = new Intl.NumberFormat("en");

export function moneyValue(money) {
  return Number(money?.units || 0) + Number(money?.nanos || 0) / 1e9;
}

// "€0.0105", "$12.50": cents at least, and the digits a small cost needs (up to 6).
export function formatMoney(money) {
  if (!money?.currencyCode) return "";
  const value = moneyValue(money);
  try {
    return new Intl.NumberFormat("en", {
      style: "currency",
      currency: money.currencyCode,
      minimumFractionDigits: 2,
      maximumFractionDigits: 6,
    }).format(value);
  } catch {
    return `${value} ${money.currencyCode}`; // a code Intl does not know
  }
}

const count = (value) => COUNT.format(Number(value || 0));

// The rows of one usage (Usage or UsageTotals: the same field names), as [label, value].
function usageRows(usage) {
  const rows = [["Input tokens", count(usage.inputTokens)]];
  if (Number(usage.cachedInputTokens)) rows.push(["of which cached", count(usage.cachedInputTokens)]);
  if (Number(usage.cacheWriteTokens)) rows.push(["of which written to cache", count(usage.cacheWriteTokens)]);
  rows.push(["Output tokens", count(usage.outputTokens)]);
  if (Number(usage.reasoningTokens)) rows.push(["of which thinking", count(usage.reasoningTokens)]);
  return rows;
}

function table(rows, caption) {
  return el("table", { class: "usage-table" },
    caption ? el("caption", { text: caption }) : null,
    el("tbody", {}, rows.map(([label, value]) =>
      el("tr", { class: label.startsWith("of which") ? "usage-sub" : "" },
        el("th", { scope: "row", text: label }), el("td", { text: value })))),
  );
}

let panels = 0;

// The (i) action under an answer (answer.js ACTIONS): null when nothing was counted.
export function usageAction(view) {
  const usage = view.turnUsage || view.message?.usage;
  if (!usage || !(Number(usage.inputTokens) || Number(usage.outputTokens))) return null;
  const id = `usage-panel-${++panels}`;
  const rows = usageRows(usage);
  rows.push(["Cost", usage.cost ? formatMoney(usage.cost) : "not priced"]);
  const model = usage.model || view.message?.model;
  const note = view.turnUsage ? `All ${view.turnRounds} model rounds of this answer` : "";
  const panel = el("div", { id, class: "usage-panel", hidden: true },
    table(rows, model ? `Model: ${model}` : ""),
    note ? el("p", { class: "hint", text: note }) : null);
  const button = el("button", {
    type: "button",
    class: "icon-button usage-button",
    title: "Tokens and cost",
    "aria-label": "Tokens and cost",
    "aria-expanded": "false",
    "aria-controls": id,
    onclick: () => {
      panel.hidden = !panel.hidden;
      button.setAttribute("aria-expanded", String(!panel.hidden));
      view.grew();
    },
  }, icon("info"));
  // The panel wraps to a line of its own under the row of actions (styles.css).
  return el("span", { class: "usage-action" }, button, panel);
}

// TurnEnded's usage, kept when the turn's answer spans several stored messages.
export function noteTurnUsage(view, turnEnded) {
  const rounds = (turnEnded.answerMessages || []).length;
  view.turnUsage = rounds > 1 ? turnEnded.usage : null;
  view.turnRounds = rounds;
}

// --- the user's own usage (sidebar) ---------------------------------------------------

function totalsSection(title, totals, budget) {
  const rows = usageRows(totals || {});
  rows.push(["Model calls", count(totals?.modelCalls)]);
  rows.push(["Cost", formatMoney(totals?.cost) || "—"]);
  const days = totals?.startDay && totals.startDay !== totals.endDay
    ? `${totals.startDay} to ${totals.endDay}` : totals?.endDay || "";
  return el("section", { class: "usage-period" },
    el("h3", {}, title, days ? el("span", { class: "usage-days", text: ` (${days}, UTC)` }) : null),
    table(rows),
    budget);
}

// Today's use against the daily budgets, as meters (absent when unlimited).
function budgets(usage) {
  const today = usage.today || {};
  const meters = [];
  const tokenBudget = Number(usage.dailyTokenBudget || 0);
  if (tokenBudget) {
    const used = Number(today.inputTokens || 0) + Number(today.outputTokens || 0);
    meters.push(meter("Daily token budget", used, tokenBudget, `${count(used)} of ${count(tokenBudget)}`));
  }
  if (usage.dailyCostBudget?.currencyCode) {
    const limit = moneyValue(usage.dailyCostBudget);
    const used = moneyValue(today.cost);
    meters.push(meter("Daily cost budget", used, limit,
      `${formatMoney(today.cost) || formatMoney({ ...usage.dailyCostBudget, units: "0", nanos: 0 })} of ${formatMoney(usage.dailyCostBudget)}`));
  }
  if (!meters.length) return el("p", { class: "hint", text: "No daily budget applies to you." });
  return el("div", { class: "usage-budgets" }, meters);
}

function meter(label, used, limit, words) {
  const id = `meter-${label.replace(/\W+/g, "-").toLowerCase()}`;
  return el("div", { class: "usage-meter" },
    el("label", { for: id, text: label }),
    el("span", { class: "usage-meter-words", text: words }),
    el("meter", { id, min: "0", max: String(limit), value: String(Math.min(used, limit)), low: String(limit * 0.7),
      high: String(limit * 0.9), optimum: "0" }));
}

function usageDialog() {
  let dialog = $("usage-dialog");
  if (dialog) return dialog;
  dialog = el("dialog", { id: "usage-dialog", class: "usage-dialog", "aria-labelledby": "usage-title" },
    el("h2", { id: "usage-title", text: "Your usage" }),
    el("div", { id: "usage-body" }),
    el("form", { method: "dialog" }, el("menu", {}, el("button", { value: "close", class: "primary", text: "Close" }))));
  document.body.append(dialog);
  return dialog;
}

// The sidebar's "Your usage": read afresh each time it opens.
export function wireMyUsage(button) {
  button.addEventListener("click", async () => {
    const dialog = usageDialog();
    const body = $("usage-body");
    body.replaceChildren(el("p", { class: "hint", text: "Loading…" }));
    dialog.showModal();
    try {
      const usage = await api.getMyUsage();
      body.replaceChildren(
        totalsSection("Today", usage.today, budgets(usage)),
        totalsSection("This month", usage.thisMonth),
      );
    } catch (error) {
      body.replaceChildren(el("p", { class: "usage-error", text: `Could not read your usage: ${error.message}.` }));
      if (error.status !== 401) toastError(error, "Could not read your usage");
    }
  });
}
