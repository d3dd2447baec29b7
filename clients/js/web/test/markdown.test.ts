// @vitest-environment jsdom
import { describe, expect, it } from "vitest";
import { renderMarkdown } from "../src/markdown.ts";

describe("renderMarkdown", () => {
  it("renders the Markdown a model writes", () => {
    const html = renderMarkdown("Using the calculator: 12*(3+4) = **84**.\n\n- a\n- `b`");
    expect(html).toContain("<strong>84</strong>");
    expect(html).toContain("<li><code>b</code></li>");
  });

  it("removes scripts, event handlers and javascript: links", () => {
    const html = renderMarkdown(
      'hi <img src=x onerror="alert(1)"> <script>alert(2)</script> [x](javascript:alert(3)) <a href="https://e.example" onclick="x()">e</a>');
    expect(html).not.toMatch(/onerror|onclick|<script|javascript:/i);
    expect(html).toContain('<img src="x">');
    expect(html).toContain('rel="noopener noreferrer nofollow"');
  });
});

describe("code blocks", () => {
  it("highlights a fence in a known language and gives it a Copy button", () => {
    const html = renderMarkdown("```python\ndef f(x):\n    return x < 1\n```");
    expect(html).toContain('class="hljs language-python"');
    expect(html).toContain('<span class="hljs-keyword">def</span>');
    expect(html).toContain("x &lt; <span class=\"hljs-number\">1</span>");
    expect(html).toContain('class="copy-code"');
  });

  it("leaves other fences plain (escaped) and labels the language", () => {
    const html = renderMarkdown("```cobol\n<b>DISPLAY</b>\n```");
    expect(html).toContain('<code class="hljs">&lt;b&gt;DISPLAY&lt;/b&gt;</code>');
    expect(html).toContain('<span class="lang">cobol</span>');
  });
});
