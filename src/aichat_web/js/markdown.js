// Model output as Markdown (marked: GFM code blocks, lists, tables), then sanitized by
// DOMPurify before it touches the DOM: model text is untrusted (it can echo anything a
// tool or a document fed it). The page's CSP (envoy.yaml) is the second wall.
//
// A streaming answer is rendered block by block (MarkdownStream): the blocks a later
// one has followed are final and are never rendered again; only the last block, which
// the next text may still change, is. So a long answer costs the same per frame as a
// short one, and text selected in it survives the stream.

import { marked } from "../vendor/marked.esm.js";
import DOMPurify from "../vendor/purify.es.mjs";
import { enhanceCode } from "./code_blocks.js";

marked.setOptions({ gfm: true, breaks: true });

// Links open in a new tab and tell the target nothing about us.
DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A" && node.hasAttribute("href")) {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer");
  }
});

// Set once: a config given to each sanitize() call is parsed again on every call.
// IN_PLACE: the HTML is parsed once, in a document of its own with no window (nothing in
// it runs or loads), cleaned there, and only then moved into the page.
DOMPurify.setConfig({ USE_PROFILES: { html: true }, IN_PLACE: true });
const INERT = document.implementation.createHTMLDocument("");

// Blocks settled per call stop after this long; the rest wait for the next frame.
const BUDGET_MS = 8;

function toNodes(tokens, links) {
  const list = [...tokens];
  list.links = links || {};
  const box = INERT.createElement("div");
  box.innerHTML = marked.parser(list);
  DOMPurify.sanitize(box);
  return document.adoptNode(box).childNodes;
}

// The whole text at once (a stored answer).
export function renderMarkdown(target, text) {
  const stream = new MarkdownStream(target);
  stream.update(text || "", { final: true });
  return stream;
}

export class MarkdownStream {
  constructor(target) {
    this.target = target;
    this.target.replaceChildren();
    this.done = 0; // characters of the text already in final blocks
    this.links = {};
    this.tail = null; // the block still being written
    this.text = "";
  }

  // `text` is the whole answer so far (it only ever grows while streaming). Returns false
  // when blocks are left to settle (call again next frame); the last call is `final`.
  update(text, { final = false } = {}) {
    if (!text.startsWith(this.text.slice(0, this.done))) {
      this.target.replaceChildren(); // not a continuation: start over
      Object.assign(this, { done: 0, links: {}, tail: null });
    }
    this.text = text;
    const started = performance.now();
    const tokens = marked.lexer(text.slice(this.done));
    Object.assign(this.links, tokens.links || {});
    // Every block that another (non-blank) block follows is final; so is the last at the end.
    let last = tokens.length - 1;
    while (last >= 0 && tokens[last].type === "space") last--;
    const settled = final ? tokens.length : Math.max(last, 0);
    for (let i = 0; i < settled; i++) {
      if (!final && i > 0 && performance.now() - started > BUDGET_MS) return false;
      this.done += tokens[i].raw.length;
      if (tokens[i].type === "space") continue;
      this.tail?.remove(); // what it showed is this block, now final
      this.tail = null;
      this.append(tokens[i]);
    }
    this.tail?.remove();
    this.tail = null;
    if (!final && last >= 0) {
      this.tail = this.block(tokens.slice(last));
      this.target.append(this.tail);
    }
    return true;
  }

  append(token) {
    const node = this.block([token]);
    this.target.append(node);
    enhanceCode(node);
  }

  block(tokens) {
    const node = document.createElement("div");
    node.className = "md-block";
    node.append(...toNodes(tokens, this.links));
    return node;
  }
}
