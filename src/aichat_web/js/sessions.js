// The sessions sidebar: ListSessions page by page (newest activity first), the current
// one highlighted, kept in step with what the chat view creates, renames and deletes.

import { api } from "./api.js";
import { $, el, sessionId } from "./dom.js";
import { toastError } from "./toast.js";

export class SessionList {
  constructor({ onSelect }) {
    this.onSelect = onSelect;
    this.sessions = [];
    this.nextPageToken = "";
    this.current = null;
    this.loading = false;
    this.list = $("session-list");
    this.more = $("more-sessions");
    this.more.addEventListener("click", () => this.loadMore());
    // Scrolling to the end of the list loads the next page too.
    this.observer = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting) && this.nextPageToken) this.loadMore();
    });
    this.observer.observe(this.more);
  }

  async loadFirst() {
    this.sessions = [];
    this.nextPageToken = "";
    await this.loadMore(true);
  }

  async loadMore(first = false) {
    if (this.loading || (!first && !this.nextPageToken)) return;
    this.loading = true;
    try {
      const page = await api.listSessions(first ? "" : this.nextPageToken);
      const known = new Set(this.sessions.map((s) => s.name));
      this.sessions.push(...(page.sessions || []).filter((s) => !known.has(s.name)));
      this.nextPageToken = page.nextPageToken || "";
      this.render();
    } catch (error) {
      toastError(error, "Could not load your sessions");
    } finally {
      this.loading = false;
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
      const button = el(
        "button",
        {
          type: "button",
          class: "session-item" + (current ? " current" : ""),
          "aria-current": current ? "page" : null,
          "data-session": sessionId(session.name),
          title: session.displayName || "Untitled chat",
          onclick: () => this.onSelect(session),
        },
        el("span", { class: "session-title", text: session.displayName || "Untitled chat" }),
        el("span", { class: "session-meta", text: describe(session) }),
      );
      return el("li", {}, button);
    });
    this.list.replaceChildren(...items);
    if (!items.length) {
      this.list.append(el("li", { class: "session-empty", text: "No chats yet." }));
    }
    this.more.hidden = !this.nextPageToken;
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
