// The conversation tree (issue 25): edit your own message, answer a question again,
// step between the versions of a message ("‹ 2 / 3 ›") and fork the chat into a new one.
//
// The server keeps every version: an edited question is a sibling of the first (the
// same `parent`), a regenerated answer a sibling of the earlier answers; ListMessages
// gives the active path, each message with its place among its siblings. So the page
// only ever shows that path: Edit and Regenerate stream their turn like a new message
// (the same events, detached, resumable), and once it has ended, or after a switch,
// the path is read again to show the new counts. Nothing here runs while a turn does:
// one turn at a time, as the composer.

import { api } from "./api.js";
import { el, icon } from "./dom.js";
import { toast, toastError } from "./toast.js";
import { ACTIONS, AnswerView } from "./answer.js";
import { USER_ACTIONS } from "./chat.js";
import { TurnControl } from "./turn.js";
import { retireApprovals } from "./approvals.js";

export function installBranches(chat) {
  const tree = new Branches(chat);
  ACTIONS.unshift((view) => tree.siblingNav(view.message));
  ACTIONS.push((view) => tree.answerButtons(view));
  USER_ACTIONS.push(
    (bubble, message) => tree.siblingNav(message),
    (bubble) => tree.editButton(bubble),
  );
  return tree;
}

class Branches {
  constructor(chat) {
    this.chat = chat;
  }

  // False (and says why) while something else runs.
  idle() {
    if (!this.chat.control && !this.chat.loading && this.chat.session) return true;
    toast("Wait until the answer has finished (or stop it) first.", "error");
    return false;
  }

  // "‹ 2 / 3 ›" on a message that has other versions.
  siblingNav(message) {
    const count = Number(message?.siblingCount || 0);
    if (count < 2) return null;
    const index = Number(message.siblingIndex || 0);
    const step = (target, label, glyph) =>
      el("button", {
        type: "button",
        class: "icon-button sibling-step",
        "aria-label": label,
        title: label,
        disabled: !target,
        onclick: () => this.switchTo(target, label),
      }, glyph);
    return el("span", { class: "siblings", role: "group", "aria-label": "Versions" },
      step(message.previousSibling, "Previous version", "‹"),
      el("span", { class: "sibling-position", text: `${index + 1} / ${count}` }),
      step(message.nextSibling, "Next version", "›"));
  }

  // On answers with text, as Copy and the thumbs: a round that only called a tool is
  // followed by the answer that offers them.
  answerButtons(view) {
    if (!view.message?.name || !view.text) return null;
    return el("span", { class: "branch-actions" },
      el("button", {
        type: "button", class: "icon-button", title: "Regenerate", "aria-label": "Regenerate",
        onclick: () => this.regenerate(view),
      }, icon("regenerate")),
      el("button", {
        type: "button", class: "icon-button", title: "Fork into a new chat", "aria-label": "Fork into a new chat",
        onclick: () => this.fork(view.message.name),
      }, icon("fork")));
  }

  editButton(bubble) {
    return el("button", {
      type: "button", class: "icon-button", title: "Edit", "aria-label": "Edit",
      onclick: () => this.edit(bubble),
    }, icon("edit"));
  }

  // `label`: the arrow used, focused again on the version shown (or the other arrow,
  // at the end of the versions), so the keyboard stays where it was.
  async switchTo(target, label) {
    if (!target || !this.idle()) return;
    try {
      await api.switchBranch(target);
    } catch (error) {
      return toastError(error, "Could not switch to that version");
    }
    await this.reread(target);
    const steps = [...(this.chat.list.querySelector(`[data-message="${CSS.escape(target)}"]`)
      ?.querySelectorAll(".sibling-step") || [])];
    (steps.find((b) => b.getAttribute("aria-label") === label && !b.disabled) ||
      steps.find((b) => !b.disabled))?.focus();
  }

  // The active path again, the message `keep` (if given) where it was on the screen.
  async reread(keep = "") {
    const chat = this.chat;
    const session = chat.session;
    const list = chat.list;
    const anchor = keep && list.querySelector(`[data-message="${CSS.escape(keep)}"]`);
    const offset = anchor ? anchor.getBoundingClientRect().top : null;
    let messages;
    try {
      messages = await api.listMessages(session.name);
    } catch (error) {
      return toastError(error, "Could not read the conversation");
    }
    if (chat.session !== session || chat.control) return; // moved on meanwhile
    list.replaceChildren();
    chat.renderHistory(messages);
    const again = keep && list.querySelector(`[data-message="${CSS.escape(keep)}"]`);
    if (again && offset !== null) list.scrollTop += again.getBoundingClientRect().top - offset;
  }

  // Edit in place: the bubble becomes a box with Send and Cancel.
  edit(bubble) {
    const name = bubble.dataset.message;
    if (!name || !this.idle() || bubble.classList.contains("editing")) return;
    const textNode = bubble.querySelector(".user-text");
    const box = el("textarea", { class: "edit-box", "aria-label": "Edit your message", rows: "3" });
    box.value = textNode.textContent;
    const cancel = () => {
      form.remove();
      bubble.classList.remove("editing");
      textNode.hidden = false;
      bubble.querySelector(".bubble-actions")?.removeAttribute("hidden");
      bubble.querySelector(".bubble-actions button")?.focus();
    };
    const form = el("form", { class: "edit-form" }, box,
      el("div", { class: "edit-buttons" },
        el("button", { type: "submit", class: "primary", text: "Send" }),
        el("button", { type: "button", text: "Cancel", onclick: cancel })));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const text = box.value.trim();
      if (!text) return toast("Write something to send", "error");
      if (text === textNode.textContent.trim()) return cancel();
      this.sendEdit(bubble, name, text);
    });
    box.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      } else if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation();
        cancel();
      }
    });
    bubble.classList.add("editing");
    textNode.hidden = true;
    bubble.querySelector(".bubble-actions")?.setAttribute("hidden", "");
    bubble.append(form);
    box.focus();
  }

  // The edited question and all after it give way to the new version and its answer.
  async sendEdit(bubble, name, text) {
    if (!this.idle()) return;
    const chat = this.chat;
    retireApprovals();
    while (bubble.nextElementSibling) bubble.nextElementSibling.remove();
    const fresh = chat.userBubble(text, [], "");
    bubble.replaceWith(fresh);
    await this.stream(fresh, (control) =>
      api.editMessage(name, { text, requestId: crypto.randomUUID() }, control.signal), name);
  }

  // A new answer to the question above `view`, in place of that answer and all after it.
  async regenerate(view) {
    if (!this.idle()) return;
    const question = previousUser(view.node);
    if (!question) return toast("There is no question above this answer to answer again.", "error");
    retireApprovals();
    while (question.nextElementSibling) question.nextElementSibling.remove();
    await this.stream(question, (control) =>
      api.regenerateAnswer(view.message.name, { requestId: crypto.randomUUID() }, control.signal),
      question.dataset.message);
  }

  // One turn, read like a new message's (chat.run), then the path read again.
  async stream(bubble, start, keep) {
    const chat = this.chat;
    const control = new TurnControl();
    control.bubble = bubble;
    control.view = new AnswerView(chat.list);
    chat.follower.follow(true);
    const result = await chat.run(control, () => start(control));
    if (result.outcome === "REFUSED") {
      toastError(result.error, "Could not send that");
      await this.reread(keep);
    } else if (result.outcome.startsWith("TURN_OUTCOME_")) {
      await this.reread(bubble.dataset.message || keep);
    }
  }

  async fork(message) {
    if (!this.idle()) return;
    try {
      const forked = await api.forkSession(message, crypto.randomUUID());
      this.chat.sessions.upsert(forked);
      await this.chat.open(forked);
      toast(`Forked into “${forked.displayName || "a new chat"}”`);
    } catch (error) {
      toastError(error, "Could not fork the chat");
    }
  }
}

function previousUser(node) {
  let at = node.previousElementSibling;
  while (at && at.dataset.role !== "user") at = at.previousElementSibling;
  return at;
}
