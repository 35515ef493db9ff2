// Code blocks in answers: a bar with the language and a Copy button, and syntax
// highlighting by highlight.js (from npm), loaded the first time an answer has code
// and applied when the browser is idle, one block at a time, so streaming stays smooth.

let highlighter = null;

function loadHighlighter() {
  highlighter ??= import("../vendor/highlight.min.js").then((m) => m.default);
  return highlighter;
}

const idle = window.requestIdleCallback || ((fn) => setTimeout(fn, 1));

export function enhanceCode(root) {
  for (const code of root.querySelectorAll("pre > code")) {
    const pre = code.parentElement;
    if (pre.parentElement?.classList.contains("code-block")) continue;
    const language = (/\blanguage-([\w+#.-]+)/.exec(code.className) || [])[1] || "";
    const frame = document.createElement("div");
    frame.className = "code-block";
    const bar = document.createElement("div");
    bar.className = "code-bar";
    const label = document.createElement("span");
    label.textContent = language || "code";
    const copy = document.createElement("button");
    copy.type = "button";
    copy.className = "code-copy";
    copy.textContent = "Copy";
    copy.setAttribute("aria-label", `Copy ${language || "code"}`);
    copy.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(code.textContent);
        copy.textContent = "Copied";
      } catch {
        copy.textContent = "Copy failed";
      }
      setTimeout(() => (copy.textContent = "Copy"), 2000);
    });
    bar.append(label, copy);
    pre.replaceWith(frame);
    frame.append(bar, pre);
    pre.tabIndex = 0; // a wide block scrolls sideways: reachable by keyboard
    pre.setAttribute("aria-label", `${language || "Code"} block`);
    highlight(code, language);
  }
}

function highlight(code, language) {
  loadHighlighter().then((hljs) =>
    idle(() => {
      if (!code.isConnected || code.dataset.highlighted) return;
      if (language && !hljs.getLanguage(language)) return;
      hljs.highlightElement(code);
    }),
  ).catch(() => {}); // no highlighting is still a readable answer
}
