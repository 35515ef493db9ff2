// A chat's title as the server writes it, shown without a reload.
//
// A new chat is created without a name (composer.js), so the server titles it: first
// with the first line of its first message, then, when a title model is configured,
// with a few words the model writes in the background after the first answer
// (TurnEnded.titlePending says one is coming). The page reads the session again a few
// times, further apart each time, until the title changes or it gives up (the title
// then stays the first line, as it does when the model fails). A chat its user named
// is never retitled by the server, so nothing is awaited for it.

import { api } from "./api.js";
import { $ } from "./dom.js";

// About 25 s in all: longer than the server lets a title model take (20 s by default).
const WAITS_MS = [300, 600, 1200, 2400, 4800, 8000, 8000];

// The title the server gives a chat from its first message (engine/sessions.py
// title_from_message: the text on one line, cut at a word before 60 characters), shown
// until the server's own is read back.
export function firstMessageTitle(text) {
  const line = text.trim().split(/\s+/).join(" ");
  if (line.length <= 60) return line;
  return (line.slice(0, 60).replace(/\s+\S*$/, "") || line.slice(0, 60)) + "…";
}

// After a turn whose TurnEnded said titlePending: `before` is the title shown then.
export async function followTitle(chat, name, before) {
  for (const wait of WAITS_MS) {
    await new Promise((resolve) => setTimeout(resolve, wait));
    let fresh;
    try {
      fresh = await api.getSession(name);
    } catch {
      return; // deleted meanwhile, or the server away: the title stays as it is
    }
    if ((fresh.displayName || "") !== before) return showTitle(chat, fresh);
  }
}

// The header, the tab and the sidebar say the session's title (only the header and the
// tab when it is the chat open).
export function showTitle(chat, session) {
  const known = chat.sessions.sessions.find((s) => s.name === session.name);
  if (known) known.displayName = session.displayName;
  chat.sessions.render();
  if (chat.session?.name !== session.name) return;
  chat.session.displayName = session.displayName;
  $("chat-title").textContent = session.displayName || "Untitled chat";
  document.title = `${session.displayName || "Chat"} · ${chat.appName}`;
}
