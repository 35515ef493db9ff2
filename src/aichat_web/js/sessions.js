// The sessions sidebar: ListSessions page by page (newest activity first), the current
// one highlighted, kept in step with what the chat view creates, renames and deletes.
// A chat whose answer is still being written (Session.activeTurn) is marked, and looked
// at again every few seconds until it is done.

import { api } from "./api.js";
import { $, el, sessionId } from "./dom.js";
import { toastError } from "./toast.js";

const WATCH_MS = 3000;

export class SessionList {
  constructor({ onSelect }) {
    this.onSelect = onSelect;
    this.sessions = [];
    this.nextPageToken = "";
    this.current = null;
    this.loading = false;
    this.watching = null;
    this.list = $("session-list");
    this.more = $("more-sessions");
    this.more.addEventListener("click", () => this.loadMore());
    // Scrolling to the end of the list loads the next page too.
    // (Observed only while there is a next page: an observer costs a check every frame.)
    this.observer = new IntersectionObserver((entries) => {
      // Scrolled into view: read on quietly; a failure leaves the "More" button to retry
      // (a toast for a read the person did not ask for would cover what they are doing).
      if (entries.some((e) => e.isIntersecting) && this.nextPageToken) {
        this.loadMore(false, { quiet: true });
      }
    });
  }

  async loadFirst() {
    this.sessions = [];
    this.nextPageToken = "";
    return this.loadMore(true);
  }

  // True when the page was read.
  async loadMore(first = false, { quiet = false } = {}) {
    if (this.loading || (!first && !this.nextPageToken)) return false;
    this.loading = true;
    this.list.setAttribute("aria-busy", "true"); // (tests wait on it too)
    try {
      const page = await api.listSessions(first ? "" : this.nextPageToken);
      const known = new Set(this.sessions.map((s) => s.name));
      this.sessions.push(...(page.sessions || []).filter((s) => !known.has(s.name)));
      this.nextPageToken = page.nextPageToken || "";
      this.render();
      return true;
    } catch (error) {
      if (!quiet) toastError(error, "Could not load your chats");
      return false;
    } finally {
      this.loading = false;
      this.list.setAttribute("aria-busy", "false");
    }
  }

  // A session made or changed here goes (back) to the top: it is the newest activity.
  upsert(session, { toTop = true } = {}) {
    const index = this.sessions.findIndex((s) => s.name === session.name);
    if (index >= 0 && !toTop) this.sessions[index] = session;
    else {
      if (index >= 0) this.sessions.splice(index, 1);
      this.sessions.unshift(session);
    }
    this.render();
  }

  // What this page knows before the server says it: a turn began or ended here.
  setActiveTurn(name, turn) {
    const session = this.sessions.find((s) => s.name === name);
    if (!session || (session.activeTurn || "") === turn) return;
    session.activeTurn = turn;
    this.render();
  }

  remove(name) {
    this.sessions = this.sessions.filter((s) => s.name !== name);
    this.render();
  }

  setCurrent(name) {
    this.current = name;
    this.render();
  }

  render() {
    const items = this.sessions.map((session) => {
      const current = session.name === this.current;
      const answering = Boolean(session.activeTurn);
      const title = session.displayName || "Untitled chat";
      const button = el(
        "button",
        {
          type: "button",
          class: "session-item" + (current ? " current" : "") + (answering ? " answering" : ""),
          "aria-current": current ? "page" : null,
          "data-session": sessionId(session.name),
          title,
          onclick: () => this.onSelect(session),
        },
        el("span", { class: "session-title", text: title }),
        el("span", { class: "session-meta" },
          answering ? el("span", { class: "answering-mark", text: "answering… · " }) : null,
          describe(session)),
      );
      return el("li", {}, button);
    });
    this.list.replaceChildren(...items);
    if (!items.length) {
      this.list.append(el("li", { class: "session-empty", text: "No chats yet." }));
    }
    this.more.hidden = !this.nextPageToken;
    if (this.nextPageToken) this.observer.observe(this.more);
    else this.observer.disconnect();
    this.watch();
  }

  // While some chat is answering (in another tab, or left running here), ask again.
  watch() {
    if (this.watching || !this.sessions.some((s) => s.activeTurn)) return;
    this.watching = setTimeout(async () => {
      this.watching = null;
      const busy = this.sessions.filter((s) => s.activeTurn && s.name !== this.current);
      for (const session of busy) {
        try {
          const fresh = await api.getSession(session.name);
          if (!fresh.activeTurn) this.upsert(fresh, { toTop: false });
        } catch {
          // Deleted meanwhile, or the server is away: the next load says which.
        }
      }
      this.watch();
    }, WATCH_MS);
  }
}

function describe(session) {
  const when = session.updateTime ? new Date(session.updateTime) : null;
  const count = session.messageCount || 0;
  const messages = `${count} message${count === 1 ? "" : "s"}`;
  if (!when) return messages;
  const today = new Date().toDateString() === when.toDateString();
  const stamp = today
    ? when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : when.toLocaleDateString();
  return `${stamp} · ${messages}`;
}
