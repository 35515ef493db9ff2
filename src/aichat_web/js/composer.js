// The message box: Enter sends, Shift+Enter is a new line. Sending makes the session of a
// draft first (with the chosen model and tools), then starts the turn. A message the
// server did not take stays on the page, marked "Not sent", with Retry (the same
// request ids, so a retry never doubles it) and Edit (back into the box).

import { api } from "./api.js";
import { $, el } from "./dom.js";
import { toast, toastError } from "./toast.js";
import { AnswerView } from "./answer.js";
import { TurnControl } from "./turn.js";
import { retireApprovals } from "./approvals.js";
import { firstMessageTitle } from "./titles.js";

export class Composer {
  constructor({ chat, attachments, models, tools, sessions }) {
    Object.assign(this, { chat, attachments, models, tools, sessions });
    this.input = $("message-input");
    this.sending = false;
    $("composer").addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.send();
      }
    });
    this.input.addEventListener("input", () => this.grow());
  }

  async send() {
    const text = this.input.value.trim();
    if (this.chat.control || this.chat.loading || this.sending) return;
    if (!text && !this.attachments.files.length) return;
    if (!text) return toast("Write a message to go with the files", "error");
    // Reading files and creating the session take a moment: one Enter, one message.
    this.sending = true;
    try {
      let files;
      try {
        files = await this.attachments.encode();
      } catch (error) {
        return toastError(error, "Could not read the file");
      }
      const message = {
        text,
        files,
        described: this.attachments.describe(),
        entries: [...this.attachments.files],
        requestId: crypto.randomUUID(),
        createRequestId: crypto.randomUUID(),
      };
      this.input.value = "";
      this.grow();
      this.attachments.clear();
      await this.deliver(message);
    } finally {
      this.sending = false;
    }
  }

  async deliver(message) {
    this.chat.list.querySelector(".welcome")?.remove();
    retireApprovals(); // the server declines calls still waiting when a message comes
    const bubble = this.chat.userBubble(message.text, message.described);
    this.chat.follower.followSoon(true);
    const control = new TurnControl();
    control.bubble = bubble;
    this.chat.setBusy(control); // from the moment the message shows: one turn at a time
    if (!this.chat.session) {
      try {
        // No name: the server titles the chat (its first line, then a title model's
        // words when one is configured: titles.js); a named chat is never retitled.
        const created = await api.createSession(
          { model: this.models.value(), ...this.tools.value() },
          message.createRequestId,
        );
        // Until the server's title is read back, its first line stands in for it.
        const shown = { ...created, displayName: created.displayName || firstMessageTitle(message.text) };
        this.chat.show(shown);
        this.sessions.upsert(shown);
      } catch (error) {
        this.chat.setBusy(null);
        return this.notSent(bubble, message, error);
      }
    }
    const name = this.chat.session.name;
    control.view = new AnswerView(this.chat.list);
    control.view.retry = () => {
      control.view.node.remove();
      bubble.remove();
      this.deliver(message);
    };
    const body = { text: message.text, attachments: message.files, requestId: message.requestId };
    const result = await this.chat.run(control, () => api.streamChat(name, body, control.signal));
    if (result.outcome === "REFUSED") {
      control.view.node.remove();
      this.notSent(bubble, message, result.error);
    }
  }

  // The message stays where it was written, with what the server said and two ways on
  // (said there, not in a toast: a toast would cover it).
  notSent(bubble, message, error) {
    if (error.status === 401) return; // the sign-in card says it
    bubble.classList.add("not-sent");
    const retry = el("button", {
      type: "button",
      class: "link-button",
      text: "Retry",
      onclick: () => {
        bubble.remove();
        this.deliver(message);
      },
    });
    const edit = el("button", {
      type: "button",
      class: "link-button",
      text: "Edit",
      onclick: () => {
        bubble.remove();
        this.input.value = message.text;
        this.attachments.files = [...message.entries];
        this.attachments.render();
        this.grow();
        this.input.focus();
      },
    });
    bubble.append(
      el("p", { class: "not-sent-note", role: "alert" },
        `Not sent: ${error.message.replace(/\.$/, "")}${error.reason ? ` (${error.reason})` : ""}. `,
        retry, " ", edit),
    );
    retry.focus();
  }

  grow() {
    if (!this.input.value) {
      this.input.style.height = ""; // empty: its own height, no need to measure the text
      return;
    }
    this.input.style.height = "auto";
    this.input.style.height = `${Math.min(this.input.scrollHeight, window.innerHeight * 0.4)}px`;
  }
}
