// The model picker (ListModels, for a new session) and the tool picker (ListTools: the
// session's tool_names, locked by the server after the first message and shown as such).
// Nothing ticked is a real choice, "no tool" (Session.toolsDisabled), not "every tool".

import { $, el, icon } from "./dom.js";

// At phone width the header keeps one row: the model picker moves into the tools panel.
const PHONE = window.matchMedia("(max-width: 760px)");

export class ModelPicker {
  constructor() {
    this.select = $("model-select");
    this.models = [];
    const place = () => {
      const home = PHONE.matches ? $("panel-model") : $("tools-button").parentElement;
      if (this.select.parentElement === home) return;
      if (PHONE.matches) home.append(el("label", { for: "model-select", text: "Model" }), this.select);
      else {
        $("panel-model").replaceChildren();
        home.prepend(this.select);
      }
    };
    PHONE.addEventListener("change", place);
    place();
  }

  setModels(models) {
    this.models = models;
    const options = models.map((m) =>
      el("option", {
        value: m.name,
        selected: m.default,
        disabled: m.configured === false,
        text: m.configured === false ? `${m.name} (not configured)` : m.name,
      }),
    );
    this.select.replaceChildren(...options);
  }

  defaultModel() {
    return (this.models.find((m) => m.default) || this.models[0])?.name || "";
  }

  // A draft chooses its model; a session shows the one it has.
  show(session) {
    if (!session) {
      this.select.disabled = this.models.length < 2;
      this.select.value = this.defaultModel();
      this.select.title = "Model for this new chat";
      return;
    }
    const model = session.model || this.defaultModel();
    if (!this.models.some((m) => m.name === model)) {
      this.select.append(el("option", { value: model, text: model }));
    }
    this.select.value = model;
    this.select.disabled = true;
    this.select.title = "The model chosen when this chat started";
  }

  value() {
    return this.select.value;
  }
}

export class ToolPicker {
  constructor({ onChange }) {
    this.onChange = onChange;
    this.tools = [];
    this.selected = new Set();
    this.locked = false;
    this.button = $("tools-button");
    this.panel = $("tools-panel");
    this.list = $("tools-list");
    this.button.addEventListener("click", () => this.toggle());
  }

  toggle(open = this.panel.hidden) {
    this.panel.hidden = !open;
    this.button.setAttribute("aria-expanded", String(open));
    if (!open && this.panel.contains(document.activeElement)) this.button.focus();
  }

  setTools(tools) {
    this.tools = tools;
    this.render();
  }

  // Empty tool_names means every tool (shown all ticked); toolsDisabled means none.
  show(session) {
    const names = session?.toolNames || [];
    const all = this.tools.map((t) => t.modelName);
    this.selected = new Set(session?.toolsDisabled ? [] : names.length ? names : all);
    this.locked = Boolean(session && (session.toolsLocked || session.messageCount > 0));
    this.render();
  }

  // The session's fields for what is ticked: every tool, none, or some by name.
  value() {
    const ticked = this.tools.filter((t) => this.selected.has(t.modelName)).map((t) => t.modelName);
    if (ticked.length === this.tools.length) return { toolNames: [], toolsDisabled: false };
    if (!ticked.length) return { toolNames: [], toolsDisabled: true };
    return { toolNames: ticked, toolsDisabled: false };
  }

  render() {
    const count = this.tools.filter((t) => this.selected.has(t.modelName)).length;
    const label = !this.tools.length
      ? "No tools"
      : count === this.tools.length
        ? `Tools: all ${count}`
        : count === 0
          ? "Tools: none"
          : `Tools: ${count} of ${this.tools.length}`;
    this.button.replaceChildren(icon(this.locked ? "lock" : "tool"), el("span", { class: "tools-label", text: label }));
    this.button.dataset.locked = String(this.locked);
    this.button.classList.toggle("locked", this.locked);
    this.button.title = this.locked
      ? "Tools are locked after the first message of a chat"
      : "Choose the tools the model may use in this chat";
    const rows = this.tools.map((tool) => {
      const box = el("input", {
        type: "checkbox",
        value: tool.modelName,
        checked: this.selected.has(tool.modelName),
        disabled: this.locked,
        onchange: (event) => {
          if (event.target.checked) this.selected.add(tool.modelName);
          else this.selected.delete(tool.modelName);
          this.render();
          this.panel.querySelector(`input[value="${CSS.escape(tool.modelName)}"]`)?.focus();
          this.onChange(this.value());
        },
      });
      return el(
        "label",
        { class: "tool-row" },
        box,
        el("span", { class: "tool-name", text: tool.tool }),
        el("span", { class: "tool-server", text: tool.server }),
        el("span", { class: "tool-description", text: tool.description || "" }),
      );
    });
    const note = this.locked
      ? el("p", { class: "hint" }, icon("lock"), " Locked: the tools of a chat are fixed by its first message.")
      : el("p", { class: "hint", text: "Untick a tool to keep the model from using it; none ticked means no tools." });
    this.list.replaceChildren(note, ...rows);
  }
}
