// Answers are Markdown from a model: rendered with marked, then sanitised with DOMPurify
// (no scripts, no event handlers, no javascript: links) before they touch the DOM. Fenced
// code is highlighted by highlight.js (core + the languages below, ~40 KB; a fence naming
// another language, or none, stays plain) and gets a Copy button (see Timeline's Markdown).
import DOMPurify from "dompurify";
import hljs from "highlight.js/lib/core";
import bash from "highlight.js/lib/languages/bash";
import css from "highlight.js/lib/languages/css";
import diff from "highlight.js/lib/languages/diff";
import javascript from "highlight.js/lib/languages/javascript";
import json from "highlight.js/lib/languages/json";
import python from "highlight.js/lib/languages/python";
import shell from "highlight.js/lib/languages/shell";
import sql from "highlight.js/lib/languages/sql";
import typescript from "highlight.js/lib/languages/typescript";
import xml from "highlight.js/lib/languages/xml";
import yaml from "highlight.js/lib/languages/yaml";
import { Marked, type Tokens } from "marked";

const LANGUAGES = { bash, css, diff, javascript, json, python, shell, sql, typescript, xml, yaml };
for (const [name, lang] of Object.entries(LANGUAGES)) hljs.registerLanguage(name, lang);
for (const [alias, name] of [["sh", "bash"], ["zsh", "bash"], ["js", "javascript"], ["ts", "typescript"],
  ["py", "python"], ["html", "xml"], ["yml", "yaml"], ["console", "shell"]] as const) {
  hljs.registerAliases(alias, { languageName: name });
}

function escapeHtml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

const marked = new Marked({ gfm: true, breaks: true });
marked.use({
  renderer: {
    code({ text, lang }: Tokens.Code): string {
      const name = (lang ?? "").trim().split(/\s+/)[0]?.toLowerCase() ?? "";
      const known = name !== "" && hljs.getLanguage(name) !== undefined;
      const body = known ? hljs.highlight(text, { language: name, ignoreIllegals: true }).value : escapeHtml(text);
      const label = name ? `<span class="lang">${escapeHtml(name)}</span>` : "";
      return `<div class="code-block">${label}<button type="button" class="copy-code" data-testid="copy-code">Copy</button>`
        + `<pre tabindex="0"><code class="hljs${known ? ` language-${name}` : ""}">${body}</code></pre></div>\n`;
    },
  },
});

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer nofollow");
  }
});

const PURIFY = { USE_PROFILES: { html: true }, ADD_ATTR: ["data-testid"] };

export function renderMarkdown(text: string): string {
  const html = marked.parse(text, { async: false });
  return DOMPurify.sanitize(html, PURIFY);
}

/** One line of Markdown (code spans, emphasis; no blocks), sanitised. */
export function renderInline(text: string): string {
  const html = marked.parseInline(text, { async: false });
  return DOMPurify.sanitize(html, PURIFY);
}

/** Copies `text` to the clipboard: the async Clipboard API where the page may use it
 *  (https, localhost), else a hidden textarea and execCommand (plain-http LAN servers). */
export async function copyText(text: string): Promise<boolean> {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    /* fall back below */
  }
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.style.position = "fixed";
  area.style.opacity = "0";
  document.body.appendChild(area);
  area.select();
  try {
    return document.execCommand("copy");
  } finally {
    area.remove();
  }
}
