// The open chat's actions, from the ⋯ menu: rename, export, delete.

import { api } from "./api.js";
import { confirmDialog, promptDialog } from "./dom.js";
import { exportSession } from "./exporter.js";
import { toast, toastError } from "./toast.js";

export function chatAction(chat, name) {
  if (name === "rename") return rename(chat);
  if (name === "delete") return remove(chat);
  if (name.startsWith("export-")) return exportSession(chat.session, name.slice("export-".length));
}

async function rename(chat) {
  const value = await promptDialog("Rename chat", chat.session.displayName);
  if (value === null || value === chat.session.displayName) return;
  try {
    const renamed = await api.updateSession(chat.session.name, { displayName: value });
    chat.show(renamed);
    chat.sessions.upsert(renamed, { toTop: false });
    toast("Renamed");
  } catch (error) {
    toastError(error, "Could not rename the chat");
  }
}

async function remove(chat) {
  const title = chat.session.displayName || "this chat";
  if (!(await confirmDialog(`Delete “${title}” and all its messages? This cannot be undone.`))) return;
  try {
    await api.deleteSession(chat.session.name);
    chat.sessions.remove(chat.session.name);
    toast(`Deleted “${title}”`);
    chat.openDraft();
  } catch (error) {
    toastError(error, "Could not delete the chat");
  }
}
