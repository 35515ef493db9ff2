// Model output as Markdown (marked: GFM code blocks, lists, tables), then sanitized by
// DOMPurify before it touches the DOM: model text is untrusted (it can echo anything a
// tool or a document fed it). The page's CSP (envoy.yaml) is the second wall.

import { marked } from "/web/vendor/marked.esm.js";
import DOMPurify from "/web/vendor/purify.es.mjs";

marked.setOptions({ gfm: true, breaks: true });

// Links open in a new tab and tell the target nothing about us.
DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A" && node.hasAttribute("href")) {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer");
  }
});

export function renderMarkdown(target, text) {
  const html = marked.parse(text || "", { async: false });
  target.innerHTML = DOMPurify.sanitize(html, { USE_PROFILES: { html: true } });
}
