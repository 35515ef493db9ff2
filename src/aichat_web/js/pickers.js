// The model picker (ListModels, for a new session) and the tool picker (ListTools: the
// session's tool_names, locked by the server after the first message and shown as such).

import { $, el, icon } from "./dom.js";

export class ModelPicker {
  constructor() {
    this.select = $("model-select");
    this.models = [];
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
    this.button.addEventListener("click", () => {
      this.panel.hidden = !this.panel.hidden;
      this.button.setAttribute("aria-expanded", String(!this.panel.hidden));
    });
  }

  setTools(tools) {
    this.tools = tools;
    this.render();
  }

  // Empty tool_names means every tool is offered; the picker shows that as all ticked.
  show(session) {
    const names = session?.toolNames || [];
    this.selected = new Set(names.length ? names : this.tools.map((t) => t.modelName));
    this.locked = Boolean(session && (session.toolsLocked || session.messageCount > 0));
    this.render();
  }

  lock() {
    this.locked = true;
    this.render();
  }

  // What to store as the session's tool_names: [] when every tool is ticked.
  value() {
    const all = this.tools.every((t) => this.selected.has(t.modelName));
    return all ? [] : this.tools.filter((t) => this.selected.has(t.modelName)).map((t) => t.modelName);
  }

  render() {
    const count = this.tools.filter((t) => this.selected.has(t.modelName)).length;
    const label = !this.tools.length
      ? "No tools"
      : count === this.tools.length
        ? `Tools: all ${count}`
        : `Tools: ${count} of ${this.tools.length}`;
    this.button.replaceChildren(icon(this.locked ? "lock" : "tool"), label);
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
      : el("p", { class: "hint", text: "None ticked means every tool is offered." });
    this.panel.replaceChildren(note, ...rows);
  }
}
