// The page's start: the token, the settings (config.json), then the sidebar and the chat.

import { api, setUnauthenticatedHandler } from "./api.js";
import { forgetToken, showSignIn, takeTokenFromFragment, token } from "./auth.js";
import { Attachments } from "./attachments.js";
import { ChatView } from "./chat.js";
import { $ } from "./dom.js";
import { ModelPicker, ToolPicker } from "./pickers.js";
import { SessionList } from "./sessions.js";
import { toastError } from "./toast.js";
import { mountMyUsage } from "./usage.js";

const DEFAULT_CONFIG = {
  appName: "Galaxy Chat",
  maxAttachmentBytes: 10 * 1024 * 1024,
  maxAttachmentsPerMessage: 10,
};

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

async function start() {
  takeTokenFromFragment();
  const config = await loadConfig();
  document.title = config.appName;
  for (const node of document.querySelectorAll("[data-app-name]")) node.textContent = config.appName;
  // Without a token the API is still asked: a deployment whose auth server reads a
  // cookie (ext_authz) lets the page in; with jwt_authn the 401 leads to the sign-in message.
  let refused = false;
  setUnauthenticatedHandler((error) => {
    if (refused) return; // calls made together all get the 401: say it once
    refused = true;
    const had = Boolean(token());
    forgetToken();
    showSignIn(
      had
        ? `The server did not accept your sign-in: ${error.message}`
        : "No sign-in token was given to this page.",
    );
  });

  let models;
  let tools;
  try {
    [models, tools] = await Promise.all([
      api.listModels(),
      api.listTools().catch((error) => {
        toastError(error, "Tools are not available");
        return { tools: [] };
      }),
    ]);
  } catch (error) {
    if (error.status !== 401) {
      showSignIn("");
      $("signin-title").textContent = "The chat service is not reachable";
      $("signin-reason").textContent = `${error.message}. Try again in a moment.`;
    }
    return;
  }
  $("signin").hidden = true;
  $("app").hidden = false;

  const modelPicker = new ModelPicker();
  modelPicker.setModels(models.models || []);
  const toolPicker = new ToolPicker({ onChange: () => {} });
  toolPicker.setTools(tools.tools || []);
  const attachments = new Attachments(config);
  let chat;
  const sessions = new SessionList({
    onSelect: (session) => {
      document.body.classList.remove("sidebar-open");
      chat.open(session);
    },
  });
  chat = new ChatView({
    appName: config.appName,
    sessions,
    models: modelPicker,
    tools: toolPicker,
    attachments,
  });

  $("new-chat").addEventListener("click", () => {
    document.body.classList.remove("sidebar-open");
    chat.openDraft();
  });
  $("rename-button").addEventListener("click", () => chat.rename());
  $("delete-button").addEventListener("click", () => chat.remove());
  $("export-select").addEventListener("change", (event) => {
    const extension = event.target.value;
    event.target.value = "";
    if (extension) chat.export(extension);
  });
  $("toggle-sidebar").addEventListener("click", () => document.body.classList.toggle("sidebar-open"));
  $("scrim").addEventListener("click", () => document.body.classList.remove("sidebar-open"));
  mountMyUsage(document.querySelector(".sidebar-footer"));
  $("sign-out").addEventListener("click", () => {
    forgetToken();
    showSignIn("You signed out.");
  });

  await sessions.loadFirst();
  const wanted = sessionFromHash();
  if (wanted) await chat.open(wanted);
  else chat.openDraft();
  window.addEventListener("hashchange", () => {
    const id = sessionFromHash();
    if (id && (!chat.session || !chat.session.name.endsWith(`/${id}`))) chat.open(id);
  });
}

start().catch((error) => {
  showSignIn("");
  $("signin-title").textContent = "The page failed to start";
  $("signin-reason").textContent = String(error?.message || error);
});
