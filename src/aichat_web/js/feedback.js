// Thumbs up / down (and an optional comment) under a finished answer, through
// SetMessageFeedback. Clicking the active thumb again clears the rating. The buttons
// show what the server answered, not what was clicked: a rating that failed to save
// never looks saved.

import { api } from "./api.js";
import { el, icon, promptDialog } from "./dom.js";
import { toastError } from "./toast.js";

const NONE = "FEEDBACK_RATING_UNSPECIFIED";
const UP = "FEEDBACK_RATING_THUMBS_UP";
const DOWN = "FEEDBACK_RATING_THUMBS_DOWN";

// `message` is an assistant Message (its `name` and any `feedback` it carries).
export function feedbackControls(message) {
  let feedback = message.feedback || {};
  const group = el("span", { class: "feedback", role: "group", "aria-label": "Rate this answer" });
  const thumb = (rating, label, glyph) =>
    el("button", {
      type: "button",
      class: "icon-button thumb",
      title: label,
      "aria-label": label,
      "data-rating": rating,
      onclick: () => save(feedback.rating === rating ? NONE : rating, ""),
    }, icon(glyph));
  const up = thumb(UP, "Good answer", "thumbUp");
  const down = thumb(DOWN, "Bad answer", "thumbDown");
  const comment = el("button", {
    type: "button",
    class: "link-button feedback-comment",
    onclick: async () => {
      const text = await promptDialog("Why? (optional comment)", feedback.comment || "");
      if (text !== null && text !== (feedback.comment || "")) await save(feedback.rating, text);
    },
  });

  function paint() {
    const rating = feedback.rating || NONE;
    group.dataset.rating = rating;
    up.setAttribute("aria-pressed", String(rating === UP));
    down.setAttribute("aria-pressed", String(rating === DOWN));
    comment.hidden = rating === NONE;
    comment.textContent = feedback.comment ? "Edit comment" : "Add a comment";
    comment.title = feedback.comment || "";
  }

  async function save(rating, text) {
    group.dataset.saving = "true";
    for (const button of [up, down, comment]) button.disabled = true;
    try {
      const saved = await api.setFeedback(message.name, rating, rating === NONE ? "" : text);
      feedback = saved.feedback || {};
      message.feedback = saved.feedback;
    } catch (error) {
      toastError(error, "Could not save your rating");
    } finally {
      for (const button of [up, down, comment]) button.disabled = false;
      delete group.dataset.saving;
      paint();
    }
  }

  group.append(up, down, comment);
  paint();
  return group;
}
