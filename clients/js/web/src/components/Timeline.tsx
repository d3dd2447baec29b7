import type { MessageItem, RunItem, ThinkingItem, TimelineItem, ToolItem } from "@runwire/client";
import { useEffect, useMemo, useRef, type ReactNode } from "react";
import { renderMarkdown } from "../markdown.ts";

const MAX_SHOWN = 20_000; // characters of a tool's args/result shown inline

function pretty(value: unknown): string {
  const text = typeof value === "string" ? value : JSON.stringify(value, null, 2) ?? String(value);
  return text.length > MAX_SHOWN ? `${text.slice(0, MAX_SHOWN)}\n… (${text.length - MAX_SHOWN} more characters)` : text;
}

function Markdown({ text }: { text: string }): ReactNode {
  const html = useMemo(() => renderMarkdown(text), [text]);
  return <div className="body markdown" dangerouslySetInnerHTML={{ __html: html }} />;
}

interface Actions {
  onRetry: (id: string) => void;
  onDiscard: (id: string) => void;
}

function Message({ item, onRetry, onDiscard }: { item: MessageItem } & Actions): ReactNode {
  const state = item.outbox && item.outbox !== "acked" ? item.outbox : item.streaming ? "streaming" : undefined;
  return (
    <div className="msg" data-testid="message" data-role={item.role} data-state={state} data-message-id={item.id}>
      <span className="who">{item.role === "user" ? "you" : (item.agentName ?? "assistant")}</span>
      {item.role === "user" ? <div className="body plain">{item.content}</div> : <Markdown text={item.content} />}
      {item.outbox === "queued" && <span className="tag">waiting for the connection…</span>}
      {item.outbox === "sent" && <span className="tag">sending…</span>}
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
  return (
    <div className="note thinking" data-testid="thinking">
      <span className="who">{item.agentName} thinks</span> {item.thought}
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

function runText(item: RunItem): string {
  switch (item.status) {
    case "queued":
      return item.queuePosition ? `Queued (position ${item.queuePosition})` : (item.progress ?? "Queued");
    case "running":
      return item.progress ?? `${item.agentName ?? "agent"} is working…`;
    case "completed":
      return item.durationMs !== null ? `Done in ${item.durationMs} ms.` : "Done.";
    case "cancelled":
      return "Stopped.";
    case "timed_out":
    case "failed": {
      const e = item.error;
      if (!e) return "The run failed.";
      return `Error (${e.code}): ${e.message}${e.retryable ? " — you can retry." : ""}`;
    }
  }
}

function Run({ item }: { item: RunItem }): ReactNode {
  const failed = item.status === "failed" || item.status === "timed_out";
  return (
    <div className={`note run ${failed ? "error" : ""}`} data-testid="run-status" data-status={item.status}
         role={failed ? "alert" : undefined}>
      {item.status === "queued" && item.queuePosition !== null
        ? <span data-testid="queue-position">{runText(item)}</span>
        : runText(item)}
    </div>
  );
}

function Item({ item, ...actions }: { item: TimelineItem } & Actions): ReactNode {
  switch (item.kind) {
    case "message": return <Message item={item} {...actions} />;
    case "thinking": return <Thinking item={item} />;
    case "tool": return <Tool item={item} />;
    case "run": return <Run item={item} />;
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

/** The thread as it happens; follows the bottom unless the reader scrolled up. */
export function Timeline({ items, empty, ...actions }: {
  items: readonly TimelineItem[]; empty: ReactNode;
} & Actions): ReactNode {
  const ref = useRef<HTMLElement>(null);
  const stick = useRef(true);
  useEffect(() => {
    const el = ref.current;
    if (el && stick.current) el.scrollTop = el.scrollHeight;
  });
  return (
    <section className="timeline" data-testid="timeline" ref={ref} aria-live="polite"
             onScroll={(e) => {
               const el = e.currentTarget;
               stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
             }}>
      {items.length === 0 ? empty : displayOrder(items).map((item) => <Item key={`${item.kind}:${item.id}`} item={item} {...actions} />)}
    </section>
  );
}
