// The chat view: the current session's messages, the composer, sending and stopping a
// turn, and the session actions (rename, delete, export). A "draft" (no session yet)
// becomes a session with the chosen model and tools when its first message is sent.

import { api, ApiError, sessionName } from "./api.js";
import { $, confirmDialog, el, formatBytes, icon, promptDialog, sessionId } from "./dom.js";
import { exportSession } from "./exporter.js";
import { toast, toastError } from "./toast.js";
import { AnswerView } from "./answer.js";
import { runTurn } from "./turn.js";
import { approvalCards } from "./approvals.js";

export class ChatView {
  constructor({ appName, sessions, models, tools, attachments }) {
    Object.assign(this, { appName, sessions, models, tools, attachments });
    this.session = null;
    this.turn = null; // the AbortController of the running turn
    this.list = $("messages");
    this.input = $("message-input");
    this.sendButton = $("send-button");
    this.stopButton = $("stop-button");
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
    this.stopButton.addEventListener("click", () => this.turn?.abort());
    this.pinned = true;
    this.list.addEventListener("scroll", () => {
      this.pinned = this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 80;
    });
    this.list.addEventListener("answer-grew", () => this.follow());
    tools.onChange = (names) => this.toolsChanged(names);
  }

  openDraft() {
    this.session = null;
    this.sessions.setCurrent(null);
    this.setHash("");
    $("chat-title").textContent = "New chat";
    document.title = this.appName;
    this.setSessionActions(false);
    this.models.show(null);
    this.tools.show(null);
    this.list.replaceChildren(
      el("div", { class: "welcome" },
        el("h2", { text: `Welcome to ${this.appName}` }),
        el("p", { text: "Choose a model and the tools it may use above, then write your first message. " +
          "Tools are fixed once the chat has started." }),
        el("p", { class: "hint", text: `Attach text, images or PDFs (up to ${formatBytes(this.attachments.maxBytes)} each).` }),
      ),
    );
    this.input.focus();
  }

  // `which` is a session or a session id from the address bar.
  async open(which) {
    if (this.turn) this.turn.abort();
    const name = typeof which === "string" ? sessionName(which) : which.name;
    let session;
    let messages;
    try {
      [session, messages] = await Promise.all([api.getSession(name), api.listMessages(name)]);
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        toast("That chat does not exist, or it is not yours.", "error");
      } else {
        toastError(error, "Could not open the chat");
      }
      this.openDraft();
      return;
    }
    this.show(session);
    this.list.replaceChildren();
    this.renderHistory(messages);
    this.follow(true);
  }

  show(session) {
    this.session = session;
    this.sessions.setCurrent(session.name);
    this.setHash(`session=${encodeURIComponent(sessionId(session.name))}`);
    $("chat-title").textContent = session.displayName || "Untitled chat";
    document.title = `${session.displayName || "Chat"} · ${this.appName}`;
    this.setSessionActions(true);
    this.models.show(session);
    this.tools.show(session);
  }

  renderHistory(messages) {
    let lastAnswer = null;
    for (const message of messages) {
      if (message.role === "ROLE_USER") this.userBubble(message.text, message.attachments);
      else if (message.role === "ROLE_ASSISTANT") {
        lastAnswer = new AnswerView(this.list, message);
        lastAnswer.finishFromMessage(message);
      }
    }
    // A turn left waiting for approval shows its cards again, ready to decide.
    const pending = (lastAnswer?.message?.toolCalls || []).filter(
      (c) => c.state === "TOOL_CALL_STATE_PENDING_APPROVAL",
    );
    if (pending.length) {
      lastAnswer.approvals.append(approvalCards(pending, (d) => this.resolve(lastAnswer, d)));
      lastAnswer.setStatus("Waiting for your decision on the tool call above.", "awaiting");
    }
  }

  userBubble(text, attachments = []) {
    const files = (attachments || []).map((a) =>
      el("span", { class: "chip" }, icon("clip"), `${a.filename}${a.sizeBytes ? ` (${formatBytes(Number(a.sizeBytes))})` : ""}`),
    );
    this.list.append(
      el("article", { class: "message user", "data-role": "user" },
        el("div", { class: "user-text", text }),
        files.length ? el("div", { class: "chips" }, files) : null),
    );
  }

  async send() {
    const text = this.input.value.trim();
    if (this.turn || this.sending || (!text && !this.attachments.files.length)) return;
    if (!text) return toast("Write a message to go with the files", "error");
    // Reading files and creating the session take a moment: one Enter, one message.
    this.sending = true;
    try {
      await this.sendNow(text);
    } finally {
      this.sending = false;
    }
  }

  async sendNow(text) {
    this.list.querySelector(".welcome")?.remove();
    let attachments;
    try {
      attachments = await this.attachments.encode();
    } catch (error) {
      return toastError(error, "Could not read the file");
    }
    if (!this.session) {
      try {
        const created = await api.createSession({
          displayName: text.split("\n")[0].slice(0, 60),
          model: this.models.value(),
          toolNames: this.tools.value(),
        });
        this.show(created);
        this.sessions.upsert(created);
      } catch (error) {
        return toastError(error, "Could not start the chat");
      }
    }
    const described = this.attachments.describe();
    this.input.value = "";
    this.grow();
    this.attachments.clear();
    this.userBubble(text, described);
    const view = new AnswerView(this.list);
    this.follow(true);
    const requestId = crypto.randomUUID();
    const name = this.session.name;
    await this.run(view, (signal) => api.streamChat(name, { text, attachments, requestId }, signal));
  }

  async resolve(view, decisions) {
    const name = this.session.name;
    view.setStatus("");
    const outcome = await this.run(view, (signal) => api.resolveToolCalls(name, decisions, signal));
    return outcome !== "REFUSED";
  }

  // One turn's stream into `view`, with Stop wired to it; then the session is re-read
  // (message count, tools now locked).
  async run(view, start) {
    const controller = new AbortController();
    this.setBusy(controller);
    const session = this.session;
    const outcome = await runTurn(view, () => start(controller.signal), {
      resolve: (decisions) => this.resolve(view, decisions),
      signal: controller.signal,
      done: (result) => result,
    });
    if (this.turn === controller) this.setBusy(null);
    if (this.session === session && outcome !== "REFUSED") await this.refresh();
    return outcome;
  }

  async refresh() {
    try {
      const fresh = await api.getSession(this.session.name);
      this.session = fresh;
      this.tools.show(fresh);
      this.sessions.upsert(fresh);
    } catch (error) {
      toastError(error, "Could not refresh the chat");
    }
  }

  setBusy(controller) {
    this.turn = controller;
    this.stopButton.hidden = !controller;
    this.sendButton.hidden = Boolean(controller);
    $("composer").classList.toggle("busy", Boolean(controller));
  }

  async toolsChanged(names) {
    if (!this.session) return; // a draft's choice is sent with CreateSession
    try {
      this.session = await api.updateSession(this.session.name, { toolNames: names });
    } catch (error) {
      toastError(error, "Could not change the tools");
      this.tools.show(this.session);
    }
  }

  async rename() {
    if (!this.session) return;
    const value = await promptDialog("Rename chat", this.session.displayName);
    if (value === null || value === this.session.displayName) return;
    try {
      const renamed = await api.updateSession(this.session.name, { displayName: value });
      this.show(renamed);
      this.sessions.upsert(renamed, { toTop: false });
      toast("Renamed");
    } catch (error) {
      toastError(error, "Could not rename the chat");
    }
  }

  async remove() {
    if (!this.session) return;
    const title = this.session.displayName || "this chat";
    if (!(await confirmDialog(`Delete “${title}” and all its messages? This cannot be undone.`))) return;
    try {
      await api.deleteSession(this.session.name);
      this.sessions.remove(this.session.name);
      toast(`Deleted “${title}”`);
      this.openDraft();
    } catch (error) {
      toastError(error, "Could not delete the chat");
    }
  }

  export(extension) {
    if (this.session) exportSession(this.session, extension);
  }

  setSessionActions(enabled) {
    for (const id of ["rename-button", "delete-button", "export-select"]) $(id).disabled = !enabled;
  }

  setHash(hash) {
    history.replaceState(null, "", location.pathname + (hash ? `#${hash}` : ""));
  }

  grow() {
    this.input.style.height = "auto";
    this.input.style.height = `${Math.min(this.input.scrollHeight, window.innerHeight * 0.4)}px`;
  }

  // Keep the newest text in view unless the user scrolled up to read (`pinned` is
  // measured when the user scrolls, not after the content grew).
  follow(force = false) {
    if (force) this.pinned = true;
    if (this.pinned) this.list.scrollTop = this.list.scrollHeight;
  }
}
