// The page's start: the token, the settings (config.json), then the sidebar and the chat;
// and the keys that work everywhere (Escape closes what is open).

import { api, setUnauthenticatedHandler } from "./api.js";
import { forgetToken, showSignIn, takeTokenFromFragment, token } from "./auth.js";
import { Attachments } from "./attachments.js";
import { installBranches } from "./branches.js";
import { ChatView, HISTORY_HOOKS } from "./chat.js";
import { setModels, showHistoryContext } from "./context_gauge.js";
import { Composer } from "./composer.js";
import { $ } from "./dom.js";
import { menuButton } from "./menu.js";
import { ModelPicker, ToolPicker } from "./pickers.js";
import { SessionList } from "./sessions.js";
import { toastError } from "./toast.js";
import { wireMyUsage } from "./usage.js";

const DEFAULT_CONFIG = {
  appName: "Galaxy Chat",
  maxAttachmentBytes: 10 * 1024 * 1024,
  maxAttachmentsPerMessage: 10,
};
const PHONE = window.matchMedia("(max-width: 760px)");

async function loadConfig() {
  try {
    const response = await fetch("/web/config.json", { cache: "no-store" });
    if (response.ok) return { ...DEFAULT_CONFIG, ...(await response.json()) };
  } catch {
    // The defaults keep the page usable; the server still enforces its own limits.
  }
  return DEFAULT_CONFIG;
}

function sessionFromHash() {
  return new URLSearchParams(location.hash.slice(1)).get("session");
}

// The sidebar at phone width is a drawer: out of the way (and out of the Tab order)
// until opened.
function sidebarDrawer() {
  const sidebar = $("sidebar");
  const toggle = $("toggle-sidebar");
  const set = (open) => {
    document.body.classList.toggle("sidebar-open", open);
    toggle.setAttribute("aria-expanded", String(open));
    sidebar.inert = PHONE.matches && !open;
    if (open) sidebar.querySelector(".session-item.current, #new-chat")?.focus();
  };
  toggle.addEventListener("click", () => set(!document.body.classList.contains("sidebar-open")));
  $("scrim").addEventListener("click", () => set(false));
  PHONE.addEventListener("change", () => set(false));
  set(false);
  return {
    isOpen: () => document.body.classList.contains("sidebar-open"),
    close: (refocus = false) => {
      set(false);
      if (refocus && PHONE.matches) toggle.focus();
    },
  };
}

async function start() {
  takeTokenFromFragment();
  const config = await loadConfig();
  document.title = config.appName;
  for (const node of document.querySelectorAll("[data-app-name]")) node.textContent = config.appName;
  $("signin-retry").addEventListener("click", () => location.reload());
  // Without a token the API is still asked: a deployment whose auth server reads a
  // cookie (ext_authz) lets the page in; with jwt_authn the 401 leads to the sign-in message.
  let refused = false;
  setUnauthenticatedHandler((error) => {
    if (refused) return; // calls made together all get the 401: say it once
    refused = true;
    const had = Boolean(token());
    forgetToken();
    showSignIn(
      had ? `The server did not accept your sign-in: ${error.message}` : "No sign-in token was given to this page.",
    );
  });

  let models;
  let tools;
  try {
    [models, tools] = await Promise.all([
      api.listModels(),
      api.listTools().catch((error) => {
        if (error.status !== 401) toastError(error, "Tools are not available");
        return { tools: [] };
      }),
    ]);
  } catch (error) {
    if (error.status !== 401) {
      showSignIn(`${error.message}.`, { title: "The chat service is not reachable", retry: true });
    }
    return;
  }
  const modelPicker = new ModelPicker();
  modelPicker.setModels(models.models || []);
  const toolPicker = new ToolPicker({ onChange: () => {} });
  toolPicker.setTools(tools.tools || []);
  const attachments = new Attachments(config);
  const drawer = sidebarDrawer();
  let chat;
  const sessions = new SessionList({
    onSelect: (session) => {
      drawer.close();
      chat.open(session);
    },
  });
  chat = new ChatView({ appName: config.appName, sessions, models: modelPicker, tools: toolPicker, attachments });
  installBranches(chat);
  setModels(models.models);
  HISTORY_HOOKS.push(showHistoryContext);
  new Composer({ chat, attachments, models: modelPicker, tools: toolPicker, sessions });
  const menu = menuButton($("chat-menu-button"), $("chat-menu"), (action) => chat.action(action));

  $("new-chat").addEventListener("click", () => {
    drawer.close();
    chat.openDraft();
  });
  wireMyUsage($("my-usage"));
  $("sign-out").addEventListener("click", () => {
    forgetToken();
    showSignIn("You signed out.");
  });
  // Escape closes the innermost thing open: the menu (menu.js), the tools panel, the drawer.
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape" || event.defaultPrevented || document.querySelector("dialog[open]")) return;
    if (!$("tools-panel").hidden) {
      toolPicker.toggle(false);
      $("tools-button").focus();
    } else if (drawer.isOpen()) {
      drawer.close(true);
    } else {
      menu.close(false);
    }
  });

  // The chat is set (a draft, or the one asked for, loading) before the page shows.
  const wanted = sessionFromHash();
  const opened = wanted ? chat.open(wanted) : chat.openDraft();
  $("signin").hidden = true;
  $("app").hidden = false;
  if (!wanted) $("message-input").focus();
  await Promise.all([sessions.loadFirst(), opened]);
  window.addEventListener("hashchange", () => {
    const id = sessionFromHash();
    if (id && (!chat.session || !chat.session.name.endsWith(`/${id}`))) chat.open(id);
  });
}

// A sign-in link pasted into this tab (only the fragment changes, so nothing reloads):
// the token is taken at once, wiped from the address bar, and the page starts again.
window.addEventListener("hashchange", () => {
  if (takeTokenFromFragment()) location.reload();
});

start().catch((error) => {
  showSignIn(String(error?.message || error), { title: "The page failed to start", retry: true });
});
