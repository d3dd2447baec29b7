// Answers are Markdown from a model: rendered with marked, then sanitised with DOMPurify
// (no scripts, no event handlers, no javascript: links) before they touch the DOM.
import DOMPurify from "dompurify";
import { marked } from "marked";

marked.setOptions({ gfm: true, breaks: true });

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer nofollow");
  }
});

export function renderMarkdown(text: string): string {
  const html = marked.parse(text, { async: false });
  return DOMPurify.sanitize(html, { USE_PROFILES: { html: true } });
}

/** One line of Markdown (code spans, emphasis; no blocks), sanitised. */
export function renderInline(text: string): string {
  const html = marked.parseInline(text, { async: false });
  return DOMPurify.sanitize(html, { USE_PROFILES: { html: true } });
}
