// What answers used and cost: an answer's tokens and cost on demand (a "Usage" toggle in
// its actions), and the user's own usage today and this month with their daily budgets
// (GetMyUsage, from the sidebar).
//
// Money is google.type.Money (units as a string, nanos); amounts are shown with up to six
// decimals, so a fraction of a cent still reads as what it is.

import { api } from "./api.js";
import { el } from "./dom.js";
import { toastError } from "./toast.js";

const tokens = new Intl.NumberFormat(undefined);

function amountOf(money) {
  return Number(money?.units || 0) + Number(money?.nanos || 0) / 1e9;
}

function formatAmount(amount, currency) {
  return new Intl.NumberFormat(undefined, {
    style: "currency",
    currency,
    minimumFractionDigits: 2,
    maximumFractionDigits: 6,
  }).format(amount);
}

export function formatMoney(money) {
  return money?.currencyCode ? formatAmount(amountOf(money), money.currencyCode) : "";
}

function count(value) {
  return tokens.format(Number(value || 0));
}

// Rows of a usage (a Message's or a turn's): the parts of input and output, and the cost.
function usageRows(usage) {
  const input = [`${count(usage.inputTokens)}`];
  if (Number(usage.cachedInputTokens)) input.push(`${count(usage.cachedInputTokens)} cached`);
  if (Number(usage.cacheWriteTokens)) input.push(`${count(usage.cacheWriteTokens)} written to cache`);
  const output = [`${count(usage.outputTokens)}`];
  if (Number(usage.reasoningTokens)) output.push(`${count(usage.reasoningTokens)} reasoning`);
  return [
    ["Input tokens", input.join(" · ")],
    ["Output tokens", output.join(" · ")],
    ["Cost", usage.cost ? formatMoney(usage.cost) : "not priced"],
  ];
}

function definitions(rows) {
  return el("dl", { class: "usage-list" }, rows.flatMap(([term, value]) => [
    el("dt", { text: term }),
    el("dd", { text: value }),
  ]));
}

// The "Usage" toggle of an answer and the details it shows; `getUsage()` is read when
// opened (the turn's usage once it ended, else the stored message's).
export function usageToggle(getUsage) {
  const details = el("div", { class: "answer-usage", hidden: true });
  const button = el("button", {
    type: "button",
    class: "link-button usage-toggle",
    text: "Usage",
    "aria-expanded": "false",
    onclick: () => {
      const open = details.hidden;
      if (open) {
        const usage = getUsage() || {};
        const model = usage.model ? [["Model", usage.model]] : [];
        details.replaceChildren(definitions([...model, ...usageRows(usage)]));
      }
      details.hidden = !open;
      button.setAttribute("aria-expanded", String(open));
    },
  });
  return { button, details };
}

// --- the user's own usage ---------------------------------------------------------------

function totalsBlock(title, totals) {
  const calls = Number(totals?.modelCalls || 0);
  return el("section", { class: "usage-period" },
    el("h3", { text: title }),
    definitions([
      ["Model calls", count(calls)],
      ...usageRows(totals || {}),
    ]),
  );
}

function budgetLine(label, used, limit, format) {
  const share = limit > 0 ? Math.min(1, used / limit) : 0;
  return el("div", { class: "budget" },
    el("span", { text: `${label}: ${format(used)} of ${format(limit)} today` }),
    el("progress", { max: "1", value: String(share), "aria-label": `${label} used today` }),
  );
}

function budgets(mine) {
  const lines = [];
  const tokenBudget = Number(mine.dailyTokenBudget || 0);
  if (tokenBudget) {
    const used = Number(mine.today?.inputTokens || 0) + Number(mine.today?.outputTokens || 0);
    lines.push(budgetLine("Tokens", used, tokenBudget, count));
  }
  const costBudget = mine.dailyCostBudget;
  if (costBudget?.currencyCode) {
    const money = (value) => formatAmount(value, costBudget.currencyCode);
    lines.push(budgetLine("Spending", amountOf(mine.today?.cost), amountOf(costBudget), money));
  }
  return lines.length
    ? el("section", { class: "usage-budgets" }, el("h3", { text: "Daily budgets" }), lines)
    : el("p", { class: "hint", text: "No daily budget limits your usage." });
}

// The sidebar's "My usage" button and its dialog (made here: one place owns both).
export function mountMyUsage(container) {
  const content = el("div", { class: "usage-content" });
  const dialog = el("dialog", { id: "usage-dialog", "aria-labelledby": "usage-title" },
    el("h2", { id: "usage-title", text: "Your usage" }),
    content,
    el("form", { method: "dialog" }, el("menu", {}, el("button", { class: "primary", text: "Close" }))),
  );
  const button = el("button", {
    type: "button",
    id: "my-usage",
    class: "link-button",
    text: "My usage",
    onclick: async () => {
      button.disabled = true;
      try {
        const mine = await api.myUsage();
        content.replaceChildren(
          totalsBlock(`Today (${mine.today?.endDay || ""}, UTC)`, mine.today),
          totalsBlock("This month", mine.thisMonth),
          budgets(mine),
        );
        dialog.showModal();
      } catch (error) {
        toastError(error, "Could not read your usage");
      } finally {
        button.disabled = false;
      }
    },
  });
  container.prepend(button);
  document.body.append(dialog);
}
