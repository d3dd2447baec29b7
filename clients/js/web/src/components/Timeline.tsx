import { isTerminal, type MessageItem, type RunItem, type ThinkingItem, type TimelineItem, type ToolItem } from "@runwire/client";
import { useEffect, useLayoutEffect, useMemo, useRef, useState, type MouseEvent, type ReactNode } from "react";
import { copyText, renderInline, renderMarkdown } from "../markdown.ts";
import { Approval, type OnApprove } from "./Approval.tsx";

const MAX_SHOWN = 20_000; // characters of a tool's args/result shown inline

function pretty(value: unknown): string {
  const text = typeof value === "string" ? value : JSON.stringify(value, null, 2) ?? String(value);
  return text.length > MAX_SHOWN ? `${text.slice(0, MAX_SHOWN)}\n… (${text.length - MAX_SHOWN} more characters)` : text;
}

/** "Copy" → "Copied" for a moment: says the click did something. */
function flash(button: HTMLElement, ok: boolean): void {
  const was = button.textContent;
  button.textContent = ok ? "Copied" : "Copy failed";
  button.dataset.copied = String(ok);
  setTimeout(() => { button.textContent = was; delete button.dataset.copied; }, 1500);
}

function Markdown({ text }: { text: string }): ReactNode {
  const html = useMemo(() => renderMarkdown(text), [text]);
  // Copy buttons of code blocks live in the rendered HTML: one delegated listener.
  const onClick = (e: MouseEvent<HTMLDivElement>): void => {
    const button = (e.target as HTMLElement).closest("button.copy-code");
    const code = button?.parentElement?.querySelector("pre code");
    if (!(button instanceof HTMLElement) || !code) return;
    void copyText(code.textContent ?? "").then((ok) => flash(button, ok));
  };
  return <div className="body markdown" onClick={onClick} dangerouslySetInnerHTML={{ __html: html }} />;
}

function CopyButton({ text }: { text: string }): ReactNode {
  return (
    <button type="button" data-testid="copy-message" aria-label="Copy message"
            onClick={(e) => { const b = e.currentTarget; void copyText(text).then((ok) => flash(b, ok)); }}>
      Copy
    </button>
  );
}

interface Actions {
  onRetry: (id: string) => void;
  onDiscard: (id: string) => void;
  /** Asks a failed run's question again (a new run on the thread). */
  onRetryRun: (runId: string) => void;
  /** false while not connected: a streaming answer is paused, not "working". */
  live: boolean;
  /** Run ids whose Stop waits for the connection. */
  queuedStops: readonly string[];
  /** Ask again (a new run with the same question); shown on the last answer. */
  onRegenerate: (runId: string) => void;
  /** Put a sent question back in the composer to edit and send as a new run. */
  onEdit: (text: string) => void;
  /** The last answer's message id when no run is active (it gets "Regenerate"). */
  lastAnswerId: string | null;
  /** Decides a tool call waiting for approval. */
  onApprove: OnApprove;
}

function Message({ item, onRetry, onDiscard, live, onRegenerate, onEdit, lastAnswerId }: { item: MessageItem } & Actions): ReactNode {
  const state = item.outbox && item.outbox !== "acked" ? item.outbox
    : item.streaming ? (live ? "streaming" : "paused") : undefined;
  return (
    <div className="msg" data-testid="message" data-role={item.role} data-state={state} data-message-id={item.id}>
      <span className="who">{item.role === "user" ? "you" : (item.agentName ?? "assistant")}</span>
      {item.role === "user" ? <div className="body plain">{item.content}</div> : <Markdown text={item.content} />}
      {state === "paused" && <span className="tag" data-testid="paused">paused: waiting for the connection…</span>}
      {item.outbox === "queued" && <span className="tag">waiting for the connection…</span>}
      {item.outbox === "sent" && <span className="tag">sending…</span>}
      {!item.streaming && item.outbox === null && item.content && (
        <span className="actions" data-testid="message-actions">
          <CopyButton text={item.content} />
          {item.role === "user" && (
            <button type="button" data-testid="edit-message" aria-label="Edit and send again"
                    onClick={() => onEdit(item.content)}>Edit</button>
          )}
          {item.id === lastAnswerId && item.runId && (
            <button type="button" data-testid="regenerate" aria-label="Regenerate this answer"
                    onClick={() => item.runId && onRegenerate(item.runId)}>Regenerate</button>
          )}
        </span>
      )}
      {item.outbox === "failed" && (
        <span className="tag error">
          not sent{" "}
          <button type="button" data-testid="retry-message" onClick={() => onRetry(item.id)}>Retry</button>{" "}
          <button type="button" data-testid="discard-message" onClick={() => onDiscard(item.id)}>Dismiss</button>
        </span>
      )}
    </div>
  );
}

function Thinking({ item }: { item: ThinkingItem }): ReactNode {
  const html = useMemo(() => renderInline(item.thought), [item.thought]);
  return (
    <div className="note thinking" data-testid="thinking">
      <span className="who">{item.agentName || "agent"} thinks</span>
      <span className="sep" aria-hidden="true"> · </span>
      <span className="thought" dangerouslySetInnerHTML={{ __html: html }} />
    </div>
  );
}

function Tool({ item }: { item: ToolItem }): ReactNode {
  const mark = item.status === "running" ? "…" : item.status === "ok" ? "✓" : "✗";
  return (
    <details className="tool" data-testid="tool-call" data-outcome={item.status}>
      <summary>
        <span className="gear" aria-hidden="true">⚙</span> {item.agentName} → <b>{item.toolName}</b>{" "}
        <span className={`mark ${item.status}`}>{mark}</span>
        {item.durationMs !== null && <span className="ms"> ({item.durationMs} ms)</span>}
      </summary>
      <div className="io">
        <div className="label">arguments</div>
        <pre>{pretty(item.args)}</pre>
        {item.status === "ok" && (<><div className="label">result</div><pre>{pretty(item.result)}</pre></>)}
        {item.status === "error" && (<><div className="label">error</div><pre className="error">{item.error}</pre></>)}
      </div>
    </details>
  );
}

function seconds(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** "1,234 tokens (1,000 in · 234 out) · 2 model calls", from what the provider reported. */
export function usageText(usage: Record<string, number> | null): string | null {
  if (!usage) return null;
  const n = (v: number): string => v.toLocaleString("en-US");
  const parts: string[] = [];
  const inTok = usage.input_tokens ?? 0;
  const outTok = usage.output_tokens ?? 0;
  if (inTok || outTok) parts.push(`${n(inTok + outTok)} tokens (${n(inTok)} in · ${n(outTok)} out)`);
  if (usage.requests) parts.push(`${n(usage.requests)} model call${usage.requests === 1 ? "" : "s"}`);
  if (usage.tool_calls) parts.push(`${n(usage.tool_calls)} tool call${usage.tool_calls === 1 ? "" : "s"}`);
  return parts.length ? parts.join(" · ") : null;
}

function runText(item: RunItem, live: boolean): string {
  switch (item.status) {
    case "queued":
      return item.queuePosition ? `Queued (position ${item.queuePosition})` : (item.progress ?? "Queued");
    case "running":
      if (!live) return "Paused here: the run goes on on the server; waiting for the connection…";
      return item.progress ?? `${item.agentName ?? "agent"} is working…`;
    case "waiting":
      return "Waiting for your approval.";
    case "completed":
      return item.durationMs !== null ? `Done in ${seconds(item.durationMs)}` : "Done";
    case "cancelled":
      return "Stopped.";
    case "timed_out":
    case "failed": {
      const e = item.error;
      if (!e) return "The run failed.";
      return `Error (${e.code}): ${e.message}${e.retryable ? " — this may work if you retry." : ""}`;
    }
  }
}

function Run({ item, live, queuedStops, onRetryRun }: { item: RunItem } & Actions): ReactNode {
  const failed = item.status === "failed" || item.status === "timed_out";
  const stopQueued = !isTerminal(item.status) && queuedStops.includes(item.runId);
  return (
    <div className={`note run ${failed ? "error" : ""}`} data-testid="run-status" data-status={item.status}
         role={failed ? "alert" : undefined}>
      {item.status === "queued" && item.queuePosition !== null
        ? <span data-testid="queue-position">{runText(item, live)}</span>
        : runText(item, live)}
      {isTerminal(item.status) && usageText(item.usage) && (
        <span className="usage" data-testid="run-usage"> · {usageText(item.usage)}</span>
      )}
      {stopQueued && <span className="tag" data-testid="stop-queued"> Stop requested: sent when the connection is back.</span>}
      {failed && item.error?.retryable && (
        <button type="button" className="inline" data-testid="retry-run" onClick={() => onRetryRun(item.runId)}>Retry</button>
      )}
    </div>
  );
}

function Item({ item, ...actions }: { item: TimelineItem } & Actions): ReactNode {
  switch (item.kind) {
    case "message": return <Message item={item} {...actions} />;
    case "thinking": return <Thinking item={item} />;
    case "tool": return <Tool item={item} />;
    case "run": return <Run item={item} {...actions} />;
    case "approval": return <Approval item={item} onApprove={actions.onApprove} live={actions.live} />;
  }
}

/** A run's status line goes after the run's last item: "working…" at the bottom while it
 *  runs, "Done" under the answer (the reducer keeps it where the run began). */
function displayOrder(items: readonly TimelineItem[]): TimelineItem[] {
  const lastOfRun = new Map<string, number>();
  items.forEach((item, i) => { if (item.kind !== "run" && item.runId) lastOfRun.set(item.runId, i); });
  const after = new Map<number, TimelineItem[]>();
  const out: TimelineItem[] = [];
  items.forEach((item, i) => {
    const at = item.kind === "run" ? lastOfRun.get(item.runId) : undefined;
    if (at !== undefined && at > i) after.set(at, [...(after.get(at) ?? []), item]);
    else out.push(item);
    for (const moved of after.get(i) ?? []) out.push(moved);
  });
  return out;
}

/** What a screen reader hears when a run ends. The log is `aria-busy` while an answer streams,
 *  so its text is read once, whole, when the run ends, not token by token. */
function announcement(run: RunItem): string {
  if (run.status === "completed") return `${run.agentName ?? "The assistant"} finished answering.`;
  if (run.status === "cancelled") return "The answer was stopped.";
  return `The run failed: ${run.error?.message ?? run.status}.`;
}

/**
 * The thread as it happens (`role=log`, `aria-busy` while a run streams, each finished answer
 * announced once). Follows the bottom unless the reader scrolled up; then new content shows a
 * "Jump to latest" button instead of moving the page. `followKey` changing (the user sent a
 * message) goes back to the bottom.
 */
export function Timeline({ items, empty, followKey, busy, ...actions }: {
  items: readonly TimelineItem[]; empty: ReactNode; followKey: number; busy: boolean;
} & Actions): ReactNode {
  const ref = useRef<HTMLElement>(null);
  const stick = useRef(true);
  const [away, setAway] = useState(false);
  const [unseen, setUnseen] = useState(false);
  const [said, setSaid] = useState("");
  const ended = useRef<Set<string> | null>(null);
  const toBottom = (): void => {
    const el = ref.current;
    if (!el) return;
    el.scrollTop = el.scrollHeight;
    stick.current = true;
    setAway(false);
    setUnseen(false);
  };
  useLayoutEffect(() => {
    if (stick.current) {
      const el = ref.current;
      if (el) el.scrollTop = el.scrollHeight;
    } else {
      setUnseen(true);
    }
  }, [items]);
  useLayoutEffect(() => { toBottom(); }, [followKey]);
  useEffect(() => {
    const runs = items.filter((i): i is RunItem => i.kind === "run" && isTerminal(i.status));
    if (ended.current === null) { // what was over when the thread showed up is not news
      if (items.length > 0) ended.current = new Set(runs.map((r) => r.runId));
      return;
    }
    const fresh = runs.filter((r) => !ended.current?.has(r.runId));
    for (const r of fresh) ended.current.add(r.runId);
    const last = fresh.at(-1);
    if (last) setSaid(announcement(last));
  }, [items]);
  const shown = items.length === 0 ? empty
    : displayOrder(items).map((item) => <Item key={`${item.kind}:${item.id}`} item={item} {...actions} />);
  return (
    <div className="timeline-wrap">
      <section className="timeline" data-testid="timeline" ref={ref} role="log" aria-label="Conversation"
               aria-busy={busy}
               onScroll={(e) => {
                 const el = e.currentTarget;
                 const atEnd = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
                 stick.current = atEnd;
                 setAway(!atEnd);
                 if (atEnd) setUnseen(false);
               }}>
        {shown}
      </section>
      {away && (
        <button type="button" className={`jump ${unseen ? "unseen" : ""}`} data-testid="jump-latest" onClick={toBottom}>
          ↓ {unseen ? "New messages" : "Jump to latest"}
        </button>
      )}
      <div className="sr-only" role="status" aria-live="polite" data-testid="announce">{said}</div>
    </div>
  );
}
