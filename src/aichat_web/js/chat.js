// The chat view: the current session's messages, its running turn, and the session
// actions (rename, delete, export). A "draft" (no session yet) becomes a session with the
// chosen model and tools when its first message is sent (composer.js).
//
// Turns are detached: leaving a chat (another chat, a reload, a closed tab) only stops
// reading its answer. Coming back to a chat whose Session.activeTurn is set reads that
// turn again from its first event into the place its answer belongs.

import { api, ApiError, sessionName } from "./api.js";
import { $, el, formatBytes, icon, sessionId } from "./dom.js";
import { chatAction } from "./chat_actions.js";
import { toast, toastError } from "./toast.js";
import { AnswerView } from "./answer.js";
import { TurnControl, readTurn, showDropped } from "./turn.js";
import { approvalCards, settleApproval } from "./approvals.js";
import { Follower } from "./follow.js";
import { followTitle, showTitle } from "./titles.js";

// (bubble, message or null) => an element for the row under a user message, or null
// (branches.js adds Edit and the versions).
export const USER_ACTIONS = [];

// (chat, messages) => void, after a chat's messages are shown (an empty list for a new
// chat): context_gauge.js marks summaries and sets its gauge.
export const HISTORY_HOOKS = [];

export class ChatView {
  constructor({ appName, sessions, models, tools, attachments }) {
    Object.assign(this, { appName, sessions, models, tools, attachments });
    this.session = null;
    this.control = null; // the TurnControl of the turn being read
    this.opening = 0; // which open() is the latest
    this.list = $("messages");
    this.follower = new Follower(this.list, $("jump-latest"));
    $("stop-button").addEventListener("click", () => this.control?.stop());
    tools.onChange = (value) => this.toolsChanged(value);
  }

  // Stop reading the running turn (it runs on): another chat is about to show.
  leave() {
    if (!this.control) return;
    if (this.session && this.control.turn) this.sessions.setActiveTurn(this.session.name, this.control.turn);
    this.control.leave();
    this.setBusy(null);
  }

  openDraft() {
    this.leave();
    this.opening += 1;
    this.loading = false;
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
    for (const hook of HISTORY_HOOKS) hook(this, []);
    $("message-input").focus();
  }

  // `which` is a session or a session id from the address bar.
  async open(which) {
    this.leave();
    const ticket = ++this.opening;
    const name = typeof which === "string" ? sessionName(which) : which.name;
    this.sessions.setCurrent(name);
    this.setHash(`session=${encodeURIComponent(sessionId(name))}`);
    // Until it is read nothing can be sent: a message would land in the chat left behind.
    this.loading = true;
    this.session = null;
    this.list.replaceChildren(el("p", { class: "hint loading", text: "Loading the chat…" }));
    let session;
    let messages;
    try {
      [session, messages] = await Promise.all([api.getSession(name), api.listMessages(name)]);
    } catch (error) {
      if (ticket !== this.opening) return;
      this.loading = false;
      if (error instanceof ApiError && error.status === 404) {
        toast("That chat does not exist, or it is not yours.", "error");
        this.openDraft();
      } else {
        this.showOpenFailure(which, error);
      }
      return;
    }
    if (ticket !== this.opening) return; // another chat was opened meanwhile
    this.loading = false;
    this.show(session);
    this.list.replaceChildren();
    this.renderHistory(messages);
    this.follower.follow(true);
    if (session.activeTurn) this.follow(session.activeTurn);
  }

  // The chat could not be read (the server is away): say so here, with a Retry, rather
  // than falling back to an empty new chat.
  showOpenFailure(which, error) {
    this.session = null;
    this.setSessionActions(false);
    $("chat-title").textContent = "Chat not loaded";
    this.list.replaceChildren(
      el("div", { class: "welcome open-failed", role: "alert" },
        el("h2", { text: "This chat could not be opened" }),
        el("p", { text: `${error.message}.` }),
        el("p", {}, el("button", { type: "button", class: "primary", text: "Retry", onclick: () => this.open(which) })),
      ),
    );
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
      if (message.role === "ROLE_USER") this.userBubble(message.text, message.attachments, message.name, message);
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
    for (const hook of HISTORY_HOOKS) hook(this, messages);
  }

  userBubble(text, attachments = [], name = "", message = null) {
    const files = (attachments || []).map((a) =>
      el("span", { class: "chip" }, icon("clip"), `${a.filename}${a.sizeBytes ? ` (${formatBytes(Number(a.sizeBytes))})` : ""}`),
    );
    const bubble = el("article", { class: "message user", "data-role": "user", "data-message": name },
      el("div", { class: "user-text", text }),
      files.length ? el("div", { class: "chips" }, files) : null);
    const actions = USER_ACTIONS.map((make) => make(bubble, message)).filter(Boolean);
    if (actions.length) bubble.append(el("footer", { class: "bubble-actions" }, actions));
    this.list.append(bubble);
    return bubble;
  }

  // Read the running `turn` from its first event (the page came back to it).
  follow(turn, seen = undefined) {
    const control = new TurnControl();
    control.named(turn);
    control.view = seen?.view || null;
    this.sessions.setActiveTurn(this.session.name, turn);
    return this.run(control, () => api.streamTurnEvents(turn, seen?.lastSequence || 0, control.signal), seen);
  }

  // The answer a turn the page came back to belongs in: the answer it continues (after
  // approval), or a new one after its user message, in place of what was stored of it.
  pick(started) {
    const byName = (name) => name && this.list.querySelector(`[data-message="${CSS.escape(name)}"]`);
    const continued = started.continuesAnswer && byName(started.answerMessage);
    const anchor = continued || byName(started.userMessage);
    while (anchor?.nextElementSibling) anchor.nextElementSibling.remove();
    if (continued?.view) return continued.view;
    return new AnswerView(this.list);
  }

  async resolve(view, decisions) {
    const name = this.session.name;
    view.setStatus("");
    const control = new TurnControl();
    control.view = view;
    const result = await this.run(control, () => api.resolveToolCalls(name, decisions, control.signal));
    return result.outcome === "REFUSED" ? result.error : null;
  }

  // One turn's stream into its view, with Stop wired to it; then the session is re-read
  // (message count, tools now locked, no turn running).
  async run(control, start, seen = undefined) {
    this.setBusy(control);
    const session = this.session;
    control.onNamed = (turn) => this.sessions.setActiveTurn(session.name, turn);
    const hooks = {
      pick: (started) => this.pick(started),
      resolve: (decisions) => this.resolve(control.view, decisions),
      toolCall: (call, view) => this.routeToolCall(call, view),
    };
    const state = seen || { lastSequence: 0, ended: null };
    const result = await readTurn(control, start, hooks, state);
    state.view = control.view;
    if (this.control === control) this.setBusy(null);
    if (result.outcome === "LEFT") return result;
    if (result.outcome === "DROPPED" && control.view) {
      showDropped(control.view, result.failure, () => control.turn
        ? this.follow(control.turn, state)
        : control.view.retry?.());
    }
    if (result.outcome.startsWith("TURN_OUTCOME_")) {
      this.sessions.setActiveTurn(session.name, ""); // it ended: no need to wait for the server
      if (this.session === session) await this.refresh(control.turn);
      if (control.titlePending) followTitle(this, session.name, this.session?.displayName || "");
    }
    return result;
  }

  // A tool call update: its approval card settles; a call another answer shows goes there.
  routeToolCall(call, view) {
    settleApproval(call);
    if (view.hasToolCall(call.id)) return false;
    const owner = [...this.list.querySelectorAll("article.assistant")]
      .map((node) => node.view)
      .find((other) => other && other !== view && other.hasToolCall(call.id));
    owner?.upsertToolCall(call);
    return Boolean(owner);
  }

  // `ended`: the turn that just ended here (its claim may be released a moment after).
  async refresh(ended = "") {
    try {
      const fresh = await api.getSession(this.session.name);
      if (this.session?.name !== fresh.name) return;
      if (fresh.activeTurn === ended) fresh.activeTurn = "";
      this.session = fresh;
      this.tools.show(fresh);
      this.sessions.upsert(fresh);
      showTitle(this, fresh); // the server titles a chat created without a name
    } catch (error) {
      toastError(error, "Could not refresh the chat");
    }
  }

  setBusy(control) {
    this.control = control;
    $("stop-button").hidden = !control;
    $("send-button").hidden = Boolean(control);
    $("composer").classList.toggle("busy", Boolean(control));
  }

  async toolsChanged(value) {
    if (!this.session) return; // a draft's choice is sent with CreateSession
    try {
      this.session = await api.updateSession(this.session.name, value);
    } catch (error) {
      toastError(error, "Could not change the tools");
      this.tools.show(this.session);
    }
  }

  // The ⋯ menu's actions (chat_actions.js).
  action(name) {
    if (this.session) return chatAction(this, name);
  }

  setSessionActions(enabled) {
    for (const item of $("chat-menu").querySelectorAll('[role="menuitem"]')) item.disabled = !enabled;
    $("chat-menu-button").disabled = !enabled;
  }

  setHash(hash) {
    history.replaceState(null, "", location.pathname + (hash ? `#${hash}` : ""));
  }
}
