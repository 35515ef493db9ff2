// A reasoning model's "Thinking" before its answer: a collapsible section at the top of
// the answer (a <details>), fed by reasoningDelta events as they stream and rebuilt from
// Message.reasoning when a chat is opened (so it stays after a reload).
//
// Live, the section is open so the thinking can be read as it comes; once the answer's
// text (or a tool call, or the turn's end) follows, it folds away, unless the reader
// opened or closed it meanwhile: their choice wins. Stored reasoning shows folded.
// The text is plain (textContent, appended in place): reasoning is a draft, not the
// answer, and never goes through the Markdown renderer.

import { el } from "./dom.js";

// The section the next reasoning of `view` goes into: the last part of the answer when
// it is a thinking section still being written, else a new one (a later round of a turn,
// after a tool call, thinks in a section of its own, below that call).
function liveSection(view) {
  const last = view.partsBox.lastElementChild;
  if (last?.classList.contains("thinking") && last.dataset.live === "true") return last;
  view.thinkingRounds = (view.thinkingRounds || 0) + 1;
  return view.part(`thinking:${view.thinkingRounds}`, () => section(true));
}

function section(live) {
  const label = el("span", { class: "thinking-label", text: live ? "Thinking…" : "Thinking" });
  const summary = el("summary", {}, label);
  const text = el("div", { class: "thinking-text" });
  const details = el("details", { class: "thinking", open: live }, summary, text);
  details.dataset.live = String(live);
  // A toggle made by the reader (not by settle()) pins the section as they left it.
  summary.addEventListener("click", () => {
    details.dataset.pinned = "true";
  });
  return details;
}

// reasoningDelta: more thinking, shown at once.
export function appendReasoning(view, text) {
  if (!text) return;
  const details = liveSection(view);
  const box = details.querySelector(".thinking-text");
  if (box.firstChild) box.firstChild.appendData(text);
  else box.append(document.createTextNode(text));
  view.setThinking(false); // the section says it (a heartbeat may say it again)
  view.grew();
}

// The thinking of `view` is over (its text began, a tool was called, the turn ended):
// the section says so and folds, unless the reader chose otherwise.
export function settleThinking(view) {
  for (const details of view.partsBox.querySelectorAll('.thinking[data-live="true"]')) {
    details.dataset.live = "false";
    details.querySelector(".thinking-label").textContent = "Thinking";
    if (details.dataset.pinned !== "true") details.open = false;
  }
}

// A stored answer's reasoning (Message.reasoning), folded.
export function showStoredReasoning(view, reasoning) {
  const redacted = Number(reasoning?.redactedBlocks || 0);
  if (!reasoning?.text && !redacted) return;
  view.thinkingRounds = (view.thinkingRounds || 0) + 1;
  view.part(`thinking:${view.thinkingRounds}`, () => {
    const details = section(false);
    details.querySelector(".thinking-text").textContent = reasoning.text || "";
    if (redacted) {
      details.append(el("p", {
        class: "thinking-note",
        text: `${redacted} encrypted block${redacted === 1 ? "" : "s"} of thinking not shown.`,
      }));
    }
    return details;
  });
}
